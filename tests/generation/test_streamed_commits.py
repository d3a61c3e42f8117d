"""A backend that hands over each request as it finishes (`streams_results`, as vLLM does): bigger
chunks, and what finished is in the cache even when the call in flight fails or is interrupted."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftevals.backends.base import BackendDefaults, Generation
from ftevals.cache import GenerationCache
from ftevals.data import Example, Message
from ftevals.errors import BackendError
from ftevals.generate import STREAMED_CHUNK, Plan, run_generation
from ftevals.models import unverified_models
from ftevals.progress import GenerationProgress
from ftevals.specs import ModelSpec, SamplingSpec


class Streaming(BackendDefaults):
    """Answers every request with its prompt reversed, handing each over as it finishes; with
    `fail_after` set, the call that reaches that many answers in the run raises `failure` instead."""

    name = "streaming"
    streams_results = True

    def __init__(self, fail_after: int | None = None, failure: BaseException | None = None) -> None:
        self.calls: list[int] = []
        self.answered = 0
        self.fail_after, self.failure = fail_after, failure

    def identity(self):
        return {"backend": "streaming"}

    def render(self, model, messages):
        return messages[-1].content

    def generate(self, requests):
        self.calls.append(len(requests))
        out = []
        for i, r in enumerate(requests):
            if self.fail_after is not None and self.answered == self.fail_after:
                raise self.failure  # type: ignore[misc]
            g = Generation(r.prompt[::-1], 3, 2)
            self.answered += 1
            assert self.result_hook is not None, "generate.py sets the hook around each call"
            self.result_hook(i, g)
            out.append(g)
        return out


def plan_for(backend: BackendDefaults, n: int, models: tuple[str, ...] = ("base",)) -> Plan:
    resolved = unverified_models([ModelSpec(m) if m == "base" else ModelSpec(m, adapter=m) for m in models])
    plan = Plan()
    for i in range(n):
        ex = Example(f"e{i:04d}", (Message("user", f"question {i}"),), "r")
        for m in resolved.values():
            plan.add("s", m, ex, ex.messages, SamplingSpec(), backend)
    return plan


def run(plan: Plan, backend: BackendDefaults, cache_dir: Path, **kw) -> tuple[object, list[str]]:
    lines: list[str] = []
    cache = GenerationCache(cache_dir, "use")
    try:
        progress = GenerationProgress(lambda text, transient: lines.append(text), display="plain", interval_s=0)
        return run_generation(plan, backend, cache, progress=progress, **kw), lines
    finally:
        cache.close()


def cached(cache_dir: Path) -> int:
    cache = GenerationCache(cache_dir, "use")
    try:
        return cache.count()
    finally:
        cache.close()


def test_after_its_first_chunk_a_model_goes_in_chunks_of_up_to_streamed_chunk(tmp_path: Path) -> None:
    n = STREAMED_CHUNK + 40
    backend = Streaming()
    outcome, _ = run(plan_for(backend, n, ("base", "tuned")), backend, tmp_path / "cache", chunk_size=16,
                     model_order=["base", "tuned"])
    # Per model: the first chunk measures the rate for the ETA, then as few calls as the cap allows.
    per_model = [16, STREAMED_CHUNK, n - 16 - STREAMED_CHUNK]
    assert backend.calls == per_model + per_model
    assert outcome.generated == 2 * n and cached(tmp_path / "cache") == 2 * n  # type: ignore[attr-defined]
    assert backend.result_hook is None


def test_a_backend_that_does_not_stream_keeps_chunks_of_chunk_size(tmp_path: Path) -> None:
    class Plain(Streaming):
        streams_results = False

        def generate(self, requests):
            self.calls.append(len(requests))
            assert self.result_hook is None
            return [Generation(r.prompt[::-1], 3, 2) for r in requests]

    backend = Plain()
    run(plan_for(backend, 40), backend, tmp_path / "cache", chunk_size=16)
    assert backend.calls == [16, 16, 8]


def test_a_failed_call_keeps_what_it_handed_over_and_says_so(tmp_path: Path) -> None:
    backend = Streaming(fail_after=16 + 25, failure=BackendError("the engine died"))
    plan = plan_for(backend, 100)
    failed, _ = run(plan, backend, tmp_path / "cache", chunk_size=16)
    # The first chunk (16) and the 25 answers the failed call handed over before it failed.
    assert cached(tmp_path / "cache") == 41
    (model,) = failed.failures  # the model fails alone, with the cause and what was kept
    assert failed.failures[model] == (
        f"the engine died; the 41 generations finished before the failure are kept in the cache "
        f"{tmp_path / 'cache' / 'generations.sqlite'}; a re-run generates only the rest")
    # A re-run asks only for the rest, and gets the same answers as a run that was never interrupted.
    again = Streaming()
    outcome, _ = run(plan, again, tmp_path / "cache", chunk_size=16)
    assert sum(again.calls) == 59
    whole, _ = run(plan_for(Streaming(), 100), Streaming(), tmp_path / "fresh", chunk_size=16)
    assert {k: g.text for k, g in outcome.generations.items()} == {k: g.text for k, g in whole.generations.items()}  # type: ignore[attr-defined]


def test_ctrl_c_keeps_what_finished_in_the_chunk_in_flight_and_the_note_counts_it(tmp_path: Path) -> None:
    lines: list[str] = []
    cache = GenerationCache(tmp_path / "cache", "use")
    progress = GenerationProgress(lambda text, transient: lines.append(text), display="plain", interval_s=0)
    # The display hears of finished requests from the backend's progress hook, as from vLLM.
    class Reporting(Streaming):
        def generate(self, requests):
            hook = self.result_hook

            def report(i, g):
                self._report_done(1)
                hook(i, g)  # type: ignore[misc]

            self.result_hook = report
            try:
                return super().generate(requests)
            finally:
                self.result_hook = hook

    backend = Reporting(fail_after=16 + 30, failure=KeyboardInterrupt())
    try:
        with pytest.raises(KeyboardInterrupt):
            run_generation(plan_for(backend, 100), backend, cache, chunk_size=16, progress=progress)
    finally:
        cache.close()
    assert cached(tmp_path / "cache") == 46
    assert lines[-1] == (f"ftevals: interrupted; the 46 generations finished (of 100) are kept in the cache "
                         f"{tmp_path / 'cache' / 'generations.sqlite'}; a re-run generates only the 54 left")
