"""The generation progress display: counts, ETA, ticker, and what each display mode prints."""

from __future__ import annotations

import threading
import time

import pytest

from ftevals.backends.base import BackendDefaults, Generation
from ftevals.progress import GenerationProgress, HookBar, duration


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def recorder():
    lines: list[tuple[str, bool]] = []
    return lines, lambda text, transient: lines.append((text, transient))


def test_durations_read_short():
    assert [duration(s) for s in (0, 45.4, 185, 3725)] == ["0s", "45s", "3m05s", "1h02m"]


def test_eta_uses_each_models_measured_rate_and_the_slowest_for_unmeasured_ones():
    clock = Clock()
    lines, sink = recorder()
    p = GenerationProgress(sink, display="plain", interval_s=0, clock=clock)
    p.begin({"base": 100, "lora": 50}, cached=7, backend="vllm")
    assert lines[0] == ("ftevals: 7 generations from the cache, 150 to generate with vllm (base 100, lora 50)", False)
    assert p.eta() is None and "ETA after the first chunk" in p.status()

    p.chunk_started("base", 10)
    clock.t += 5
    p.chunk_done("base", 10, 10, 400, 5.0, "10 generated in 5.0 s")
    # base: 90 left at 0.5 s; lora not measured yet: borrows the slowest measured rate (0.5 s).
    assert p.eta() == pytest.approx(90 * 0.5 + 50 * 0.5)
    assert lines[-1] == ("ftevals: [10/150] base: 10 generated in 5.0 s, 80 tok/s, ETA 1m10s", False)

    p.chunk_started("lora", 50)
    p.requests_done(3)
    clock.t += 10
    assert "lora 3/50 | chunk 3/50, 10s in" in p.status()
    assert p.status().startswith("ftevals: [13/150]")
    # The chunk in flight counts as partly done (10 s of its 25 s estimate).
    assert p.eta() == pytest.approx(90 * 0.5 + 50 * 0.5 - 10)
    # Past its estimate, the chunk in flight raises the model's rate: the ETA grows, it does not stall.
    clock.t += 30  # 40 s into a chunk estimated at 25 s: 0.8 s per request
    assert p.eta() == pytest.approx(90 * 0.5 + 50 * 0.8 - 40)
    p.chunk_done("lora", 50, 50, 1000, 40.0, "50 generated in 40.0 s")
    assert p.eta() == pytest.approx(90 * 0.5)


def test_eta_takes_the_rate_of_a_long_chunk_in_flight_once_a_tenth_of_it_has_finished():
    """A model's first chunk includes the engine's start-up; its next chunk may be 2,048 requests
    long (a streaming backend): the first chunk's rate must not decide the ETA for all of it."""
    clock = Clock()
    p = GenerationProgress(recorder()[1], display="plain", interval_s=0, clock=clock)
    p.begin({"base": 530, "tuned": 100}, cached=0, backend="vllm")
    p.chunk_started("base", 128)
    clock.t += 38.4
    p.chunk_done("base", 128, 128, 500, 38.4, "128 generated in 38.4 s")  # 0.3 s a request, start-up included
    assert p.eta() == pytest.approx(402 * 0.3 + 100 * 0.3)

    p.chunk_started("base", 402)
    p.requests_done(39)
    clock.t += 3.0
    # Under a tenth finished: still the measured rate (the chunk counts as partly done).
    assert p.eta() == pytest.approx(402 * 0.3 - 3.0 + 100 * 0.3)
    p.requests_done(41)  # 80 of 402 in 8 s: 0.1 s a request
    clock.t += 5.0
    assert p.eta() == pytest.approx((402 - 80) * 0.1 + 100 * 0.3)


def test_plain_display_prints_heartbeats_live_display_overwrites_and_quiet_stays_quiet():
    for display, expect_transient in (("plain", False), ("live", True)):
        lines, sink = recorder()
        p = GenerationProgress(sink, display=display, interval_s=0.02)
        p.begin({"base": 4}, cached=0, backend="replay")
        p.chunk_started("base", 4)
        time.sleep(0.2)
        p.finish(generated=4, seconds=0.2)
        ticks = lines[1:-1]
        assert ticks and all(transient == expect_transient for _, transient in ticks), lines
        if display == "plain":
            assert all(text.startswith("ftevals: still generating [0/4] | base 0/4 | chunk 0/4") for text, _ in ticks)
        assert lines[-1] == ("ftevals: generated 4 in 0s", False)
        count = len(lines)
        time.sleep(0.1)
        assert len(lines) == count  # the ticker stopped with finish()

    lines, sink = recorder()
    p = GenerationProgress(sink, display="quiet", interval_s=0.02)
    p.begin({"base": 4}, cached=0, backend="replay")
    p.chunk_started("base", 4)
    time.sleep(0.1)
    p.chunk_done("base", 4, 4, 8, 0.1, "4 generated in 0.1 s")
    p.finish(generated=4, seconds=0.1)
    assert [t for t, _ in lines] == ["ftevals: 0 generations from the cache, 4 to generate with replay",
                                     "ftevals: generated 4 in 0s"]


def test_hook_bar_is_what_vllm_needs_from_a_tqdm_factory():
    got: list[int] = []
    bar = HookBar(got.append, total=3, desc="Processed prompts", dynamic_ncols=True, postfix="x")
    assert bar.format_dict["elapsed"] > 0  # vLLM divides by it
    bar.update(2)
    bar.postfix = "speed"
    bar.update(1)
    bar.refresh()
    bar.close()
    assert got == [2, 1] and bar.n == 3 == bar.total
    # vLLM also wraps the prompts it renders: they pass through, and nothing is reported.
    assert list(HookBar(got.append, ["p1", "p2"], desc="Rendering prompts")) == ["p1", "p2"] and got == [2, 1]


class SlowCountingBackend(BackendDefaults):
    """Reports each request as it finishes, from another thread, as engines do."""

    name = "slow"

    def identity(self):
        return {"backend": "slow"}

    def render(self, model, messages):
        return messages[-1].content

    def generate(self, requests):
        def work():
            for _ in requests:
                time.sleep(0.01)
                self._report_done(1)

        t = threading.Thread(target=work)
        t.start()
        t.join()
        return [Generation("ok", 3, 2) for _ in requests]


def test_run_generation_feeds_the_display_chunk_by_chunk_and_detaches_the_hook(tmp_path):
    from ftevals.cache import GenerationCache
    from ftevals.data import Example, Message
    from ftevals.generate import Plan, run_generation
    from ftevals.models import unverified_models
    from ftevals.specs import ModelSpec, SamplingSpec

    models = unverified_models([ModelSpec("base"), ModelSpec("tuned", adapter="a")])
    backend = SlowCountingBackend()
    plan = Plan()
    for i in range(5):
        ex = Example(f"e{i}", (Message("user", f"q{i}"),), "r")
        for m in models.values():
            plan.add("s", m, ex, ex.messages, SamplingSpec(), backend)
    lines, sink = recorder()
    seen: list[int] = []
    progress = GenerationProgress(sink, display="plain", interval_s=0)
    original = progress.requests_done
    progress.requests_done = lambda n: (seen.append(n), original(n))  # type: ignore[method-assign]
    cache = GenerationCache(tmp_path / "cache", "use")
    try:
        out = run_generation(plan, backend, cache, chunk_size=3, progress=progress, model_order=["base", "tuned"])
    finally:
        cache.close()
    assert out.generated == 10 and sum(seen) == 10
    texts = [t for t, _ in lines]
    assert texts[0] == "ftevals: 0 generations from the cache, 10 to generate with slow (base 5, tuned 5)"
    assert [t.split(":")[1].strip() for t in texts[1:-1]] == ["[3/10] base", "[5/10] base", "[8/10] tuned", "[10/10] tuned"]
    assert "tok/s" in texts[1] and "ETA" in texts[1] and "ETA" not in texts[-2]
    assert texts[-1].startswith("ftevals: generated 10 in ")
    assert backend.progress_hook is None  # nothing keeps calling a finished run's display


def test_an_engine_start_inside_a_chunk_is_left_out_of_the_rate_and_named(tmp_path):
    """A model's first chunk includes the engine's start-up (25 s on a CPU): paid once, it must not
    make every later request look slow, nor the ETA minutes too long."""
    from ftevals.cache import GenerationCache
    from ftevals.data import Example, Message
    from ftevals.generate import Plan, run_generation
    from ftevals.models import unverified_models
    from ftevals.specs import ModelSpec, SamplingSpec

    class StartsAnEngine(SlowCountingBackend):
        def generate(self, requests):
            if not self.engine_start_seconds:
                time.sleep(0.6)  # the engine's start-up, in the first call only
                self.engine_start_seconds = 0.6
            return [Generation("ok", 3, 2) for _ in requests]

    models = unverified_models([ModelSpec("base")])
    backend = StartsAnEngine()
    plan = Plan()
    for i in range(6):
        ex = Example(f"e{i}", (Message("user", f"q{i}"),), "r")
        plan.add("s", models["base"], ex, ex.messages, SamplingSpec(), backend)
    lines, sink = recorder()
    progress = GenerationProgress(sink, display="plain", interval_s=0)
    cache = GenerationCache(tmp_path / "cache", "use")
    try:
        run_generation(plan, backend, cache, chunk_size=3, progress=progress)
    finally:
        cache.close()
    texts = [t for t, _ in lines]
    assert " (engine start-up and merging 0.6 s)" in texts[1] and "engine start-up" not in texts[2]
    # Both chunks' rate is the generation's alone: well under the 0.2 s a request the start-up implies.
    assert progress.models["base"].measured_seconds < 0.3
