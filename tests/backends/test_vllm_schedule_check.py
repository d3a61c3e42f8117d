"""The vLLM backend's batch-invariance check (`verify_schedule`) with a stand-in engine: after the
base's engine served adapters as LoRA requests, a few base requests are run again in it and must
give the outputs the run kept; a base disturbed by the LoRA requests stops the run, and where
nothing was re-run the recorded words say "not checked" instead of claiming a check.

The real engine runs the check in tests/integration/test_flagship_e2e.py (merged adapters swapped
out) and tests/backends/test_vllm_multilora_check.py (LoRA requests).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ftevals.backends.base import BackendDefaults, Generation, GenerationRequest
from ftevals.backends.vllm import VLLMBackend, VLLMSettings
from ftevals.data import Message
from ftevals.integrity import IntegrityError
from ftevals.models import AdapterInfo, ModelFolder, ResolvedModel
from ftevals.specs import ModelSpec, SamplingSpec

#: What the stand-in base answers once the engine has served a LoRA request, when told to be disturbed.
DISTURBED = "base, with a LoRA applied"


def _models(tmp_path: Path) -> dict[str, ResolvedModel]:
    base = ModelFolder(tmp_path / "base", "sha256:base")
    info = AdapterInfo(tmp_path / "tuned", 8, 16.0, ("q_proj",), str(tmp_path / "base"), "sha256:tuned")
    return {"base": ResolvedModel(ModelSpec("base"), base, None),
            "tuned": ResolvedModel(ModelSpec("tuned", adapter=str(tmp_path / "tuned")), base, info)}


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """Engines that start instantly; base requests answer "base <prompt>" (or DISTURBED once a
    LoRA request was served, when `disturb` is set), adapter requests "<model> <prompt>". `calls`
    lists each generation: (model, lora, prompts)."""
    from ftevals.backends import vllm as vllm_backend

    monkeypatch.setenv("FTEVALS_CACHE_DIR", str(tmp_path / "cache"))
    state: dict[str, Any] = {"disturb": False, "calls": []}

    def start(self: Any) -> None:
        self.llm = self.llm or object()

    def generate(self: Any, batch: list[GenerationRequest], ids: Any, *, lora: bool, on_result: Any = None
                 ) -> list[Generation]:
        state["calls"].append((batch[0].model.name, lora, [r.prompt for r in batch]))
        served_lora = any(m == "tuned" and used for m, used, _ in state["calls"])
        texts = [f"{r.model.name} {r.prompt}" if r.model.adapter is not None
                 else DISTURBED if state["disturb"] and served_lora else f"base {r.prompt}" for r in batch]
        return [Generation(text=t, tokens_in=1, tokens_out=1, finish_reason="stop") for t in texts]

    def close(self: Any) -> None:
        self.llm = None

    monkeypatch.setattr(vllm_backend._Engine, "start", start)
    monkeypatch.setattr(vllm_backend._Engine, "generate", generate)
    monkeypatch.setattr(vllm_backend._Engine, "close", close)
    return state


def _requests(backend: VLLMBackend, name: str, n: int) -> list[GenerationRequest]:
    spec = backend.models[name].spec
    return [GenerationRequest(f"{name}-{i}", spec, (Message("user", f"q{i}"),), f"q{i}", SamplingSpec(max_tokens=4),
                              f"ex{i}") for i in range(n)]


def _run(tmp_path: Path, names: tuple[str, ...] = ("base", "tuned")) -> tuple[VLLMBackend, list[tuple[GenerationRequest, str]]]:
    """A multi-lora run of 6 requests per model, one engine call per model as the pipeline makes
    them; returns the backend and 4 of the base's requests with the outputs the run kept."""
    backend = VLLMBackend(_models(tmp_path), VLLMSettings(strategy="multi-lora"))
    backend._token_ids = lambda batch: [[1] for _ in batch]  # type: ignore[method-assign]
    kept: list[tuple[GenerationRequest, str]] = []
    for name in backend.model_order(list(names)):
        requests = _requests(backend, name, 6)
        outputs = backend.generate(requests)
        if name == "base":
            kept = [(r, g.text) for r, g in zip(requests, outputs)][:4]
    return backend, kept


def test_the_base_is_re_run_after_the_lora_requests_and_must_give_the_kept_outputs(tmp_path, engine) -> None:
    backend, samples = _run(tmp_path)
    said = backend.verify_schedule(samples)
    # The re-run happened, in the same engine, after the adapter's LoRA requests, without a LoRA.
    assert engine["calls"][-1] == ("base", False, ["q0", "q1", "q2", "q3"])
    assert [c[:2] for c in engine["calls"][:-1]] == [("base", False), ("tuned", True)]
    assert said == ("one model per engine call; adapters served as LoRA requests in the base's engine; base requests "
                    "re-run after them give the run's greedy outputs (4/4)")
    assert backend.verify_schedule(samples[:2]).endswith("(2/2)")  # counts what it re-ran


def test_a_base_disturbed_by_the_lora_requests_stops_the_run(tmp_path, engine) -> None:
    engine["disturb"] = True  # the base's answers change once the engine has served a LoRA request
    backend, samples = _run(tmp_path)
    assert [text for _, text in samples] == ["base q0", "base q1", "base q2", "base q3"]  # before the adapter
    with pytest.raises(IntegrityError) as info:
        backend.verify_schedule(samples)
    message = str(info.value)
    assert message.startswith(f"engine integrity: after the engine for {tmp_path / 'base'} served its adapters "
                              "(served as LoRA requests in the base's engine), the base model's greedy outputs "
                              "changed on 4 of 4 prompts (ex0, ex1, ex2): the LoRA requests it served disturbed "
                              "requests without a LoRA"), message
    assert "--ftevals-backend-option strategy=merged" in message


def test_where_nothing_was_re_run_the_record_says_not_checked(tmp_path, engine) -> None:
    # The base's engine served no adapter (the adapter's outputs came from the cache, say).
    backend, samples = _run(tmp_path, names=("base",))
    said = backend.verify_schedule(samples)
    assert "not checked" in said and "re-run after" not in said
    assert engine["calls"] == [("base", False, [f"q{i}" for i in range(6)])]  # nothing ran again
    # No greedy base request to re-run.
    assert "not checked" in backend.verify_schedule([])
    # An engine closed before the check cannot re-run anything.
    backend, samples = _run(tmp_path / "closed")
    backend.close()
    said = backend.verify_schedule(samples)
    assert said.endswith("base outputs not checked after them (the engine was closed before the check)"), said
    assert "served as LoRA requests" in said


def test_a_backend_that_cannot_re_check_says_so() -> None:
    said = BackendDefaults().verify_schedule([])
    assert "not checked" in said
