"""LoRA adapters on non-Llama architectures, through the real vLLM CPU engine and transformers+peft.

For each architecture a tiny random model and a PEFT adapter on its natural target modules are
built in the test (tests/support/tinymodels.py; nothing from a hub). ftevals must accept the
adapter (its shapes are checked against the base's own weights), vLLM must serve it (one engine
per architecture, base and adapter in it) with outputs that differ from the base's, and vLLM's
greedy outputs must equal transformers+peft's up to near-ties (tests/support/parity.py).

GPT-2 has no LoRA in vLLM 0.32: ftevals refuses it as a LoRA before the engine starts, with the
way out it names (merged serving), and that way out is what runs here. So is an lm_head LoRA on
Qwen2, whose vLLM class takes no LoRA on its embeddings.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from support.parity import (ADAPTER_EFFECT_LOGIT_GAP, ENGINE, MAX_TOKENS, MIN_IDENTICAL, QUESTIONS, adapter_effect_gaps,
                            assert_parity)
from support.tinymodels import ARCHS, Arch, build_adapter, build_model

from ftevals.backends.base import GenerationRequest
from ftevals.backends.vllm import VLLMBackend, VLLMSettings
from ftevals.data import Message
from ftevals.errors import ModelSpecError
from ftevals.models import ResolvedModel, resolve_models
from ftevals.specs import ModelSpec, SamplingSpec

pytestmark = pytest.mark.vllm



@dataclass
class Run:
    arch: Arch
    models: dict[str, ResolvedModel]
    requests: list[GenerationRequest]
    vllm: dict[str, str]
    hf: dict[str, str]
    #: The base's outputs again after the engine swapped the merged adapter out (must equal "base").
    base_after_swap: dict[str, str]
    hf_backend: Any

    def of(self, model: str) -> list[GenerationRequest]:
        return [r for r in self.requests if r.model.name == model]


def _build(arch: Arch, root: Path, tokenizer_dir: Path) -> dict[str, ResolvedModel]:
    base = build_model(arch, tokenizer_dir, root / "base")
    adapter = build_adapter(arch, base, root / "adapter")
    return resolve_models([ModelSpec("base", base=str(base)),
                           ModelSpec("tuned", base=str(base), adapter=str(adapter))], pull=False)


def _requests(backend: Any, models: dict[str, ResolvedModel], questions: Sequence[str] = QUESTIONS
              ) -> list[GenerationRequest]:
    sampling = SamplingSpec(max_tokens=MAX_TOKENS)
    out = []
    for name in ("base", "tuned"):
        spec = models[name].spec
        for i, q in enumerate(questions):
            messages = (Message("user", q),)
            out.append(GenerationRequest(f"{name}:{i}", spec, messages, backend.render(spec, messages), sampling, str(i)))
    return out


#: One engine each (30-60 s on 2 cores). The other architectures of tinymodels.ARCHS (Mistral,
#: GPT-NeoX, Falcon, Bloom) are served through the default strategy, against transformers+peft too,
#: by tests/backends/test_default_strategy.py.
MATRIX = ("qwen2", "phi3", "gemma2", "granite", "gpt2")


@pytest.fixture(scope="module", params=MATRIX, ids=MATRIX)
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, default_model) -> Iterator[Run]:
    from ftevals.backends.hf import HFBackend

    arch = ARCHS[request.param]
    root = tmp_path_factory.mktemp(arch.name)
    with pytest.MonkeyPatch.context() as mp:
        # Merged copies and fingerprint memos of these throwaway models stay out of the user's cache.
        mp.setenv("FTEVALS_CACHE_DIR", str(root / "cache"))
        models = _build(arch, root, default_model.path)
        # "auto" starts one engine that serves the adapter both ways: as a LoRA request and merged
        # into the engine's weights (the default strategy), so both are checked against peft.
        settings = VLLMSettings(strategy="auto" if arch.vllm_lora else "merged", **ENGINE)
        vllm = VLLMBackend(models, settings)
        try:
            requests = _requests(vllm, models)
            vllm_out, base_again = _generate_every_way(vllm, models, requests, lora=arch.vllm_lora)
        finally:
            vllm.close()
        hf = HFBackend(models)
        hf_out = {r.key: g.text for r, g in zip(requests, hf.generate(requests))}
        hf_out.update({f"merged-{k}": v for k, v in hf_out.items() if k.startswith("tuned:")})
        yield Run(arch, models, requests, vllm_out, hf_out, base_again, hf)
        hf.close()


def _generate_every_way(backend: VLLMBackend, models: dict[str, ResolvedModel], requests: list[GenerationRequest],
                        *, lora: bool) -> tuple[dict[str, str], dict[str, str]]:
    """Outputs keyed "base:i", "tuned:i" (as a LoRA request, when vLLM has LoRA for the
    architecture) and "merged-tuned:i" (merged weights swapped in), and the base's again after."""
    # Starts the engine and checks, before it generates, that the adapter's merged weights map onto
    # the served layers (the check the default strategy runs; see test_default_strategy.py).
    backend._settle("base")
    engine = backend._engine_for("base")
    assert engine.can_swap and engine.checked and backend.unmapped == {}

    def run(model: str, *, as_lora: bool = False) -> dict[str, str]:
        batch = [r for r in requests if r.model.name == model]
        ids = backend._token_ids(batch)
        return {r.key: g.text for r, g in zip(batch, engine.generate(batch, ids, lora=as_lora))}

    out = run("base")
    if lora:
        out.update(run("tuned", as_lora=True))
    engine.use_weights(models["tuned"])
    out.update({f"merged-{k}": v for k, v in run("tuned").items()})
    engine.use_weights(None)
    return out, run("base")


def test_adapter_is_accepted_with_its_natural_targets(run: Run) -> None:
    adapter = run.models["tuned"].adapter
    assert adapter is not None and adapter.target_modules == tuple(sorted(run.arch.targets))


@pytest.mark.parametrize("way", ["lora", "merged"])
def test_adapter_changes_vllm_outputs(run: Run, way: str) -> None:
    if way == "lora" and not run.arch.vllm_lora:
        # No LoRA in vLLM's class: served merged only (the LoRA refusal is tested below).
        assert not any(k.startswith("tuned:") for k in run.vllm)
        return
    tuned = "tuned" if way == "lora" else "merged-tuned"
    pairs = {i: (run.vllm[f"base:{i}"], run.vllm[f"{tuned}:{i}"]) for i in range(len(QUESTIONS))}
    # An adapter vLLM ignored (or applied to the base requests too) would leave the pairs identical.
    assert sum(b != t for b, t in pairs.values()) >= len(QUESTIONS) - 1, pairs


def test_swapping_the_adapter_out_restores_the_base_outputs_exactly(run: Run) -> None:
    assert run.base_after_swap == {k: v for k, v in run.vllm.items() if k.startswith("base:")}


def test_adapter_effect_is_far_above_implementation_noise(run: Run) -> None:
    gaps = adapter_effect_gaps(run.hf, run.of("base"), [r.key for r in run.of("tuned")], run.hf_backend)
    assert gaps and max(gaps) >= ADAPTER_EFFECT_LOGIT_GAP, gaps


@pytest.mark.parametrize("model", ["base", "tuned", "merged-tuned"])
def test_vllm_matches_transformers_peft(run: Run, model: str) -> None:
    if model == "tuned" and not run.arch.vllm_lora:
        assert not any(k.startswith("tuned:") for k in run.vllm)  # merged only, as above
        return
    requests = run.of(model.removeprefix("merged-"))
    if model.startswith("merged-"):
        requests = [replace(r, key=f"merged-{r.key}") for r in requests]
    assert_parity(run.vllm, run.hf, requests, run.hf_backend, min_identical=MIN_IDENTICAL)


REFUSED = {
    # vLLM 0.32 would spend its start-up and then fail ("GPT2LMHeadModel does not support LoRA yet").
    "gpt2-any-lora": ("gpt2", None,
                      r"model 'tuned': vLLM [\d.]+ has no LoRA support for GPT2LMHeadModel \(the base model .*/base\), "
                      r"so it cannot serve the adapters of 'tuned' as LoRA; serve them merged \(--ftevals-backend-option "
                      r"strategy=merged\) or use the hf backend"),
    # vLLM's Qwen2 class has no LoRA on lm_head: it would fail when the adapter loads, mid-run.
    "qwen2-lm-head-lora": ("qwen2", ("q_proj", "lm_head"),
                           r"model 'tuned': adapter .*/adapter has a LoRA on 'lm_head', which vLLM [\d.]+ serves for "
                           r"Qwen2ForCausalLM only on no embedding modules; serve it merged \(--ftevals-backend-option "
                           r"strategy=merged\), use the hf backend, or retrain it without LoRA on the embeddings"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_what_vllm_lora_cannot_serve_is_refused_before_the_engine_starts(case: str, tmp_path: Path, default_model,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    arch_name, targets, message = REFUSED[case]
    monkeypatch.setenv("FTEVALS_CACHE_DIR", str(tmp_path / "cache"))
    arch = ARCHS[arch_name]
    base = build_model(arch, default_model.path, tmp_path / "base")
    adapter = build_adapter(arch, base, tmp_path / "adapter", targets=targets)
    models = resolve_models([ModelSpec("base", base=str(base)),
                             ModelSpec("tuned", base=str(base), adapter=str(adapter))], pull=False)
    backend = VLLMBackend(models, VLLMSettings(strategy="multi-lora", **ENGINE))
    requests = [r for r in _requests(backend, models) if r.model.name == "tuned"][:1]
    with pytest.raises(ModelSpecError) as info:
        backend.generate(requests)
    assert re.fullmatch(message, str(info.value)), str(info.value)
    assert all(e.llm is None for e in backend._engines.values())


def test_auto_measures_each_adapter_both_ways_and_records_the_decision(tmp_path: Path, default_model,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """"auto" on a real engine: a few of the adapter's requests, cut short, go both ways (LoRA and
    merged), then all of them the cheaper way; the choice and its measurements are recorded, and the
    outputs are the chosen way's (checked against the engine serving that way directly)."""
    monkeypatch.setenv("FTEVALS_CACHE_DIR", str(tmp_path / "cache"))
    models = _build(ARCHS["qwen2"], tmp_path, default_model.path)
    backend = VLLMBackend(models, VLLMSettings(strategy="auto", **ENGINE))
    try:
        questions = [f"{q} ({i})" for i in range(2) for q in QUESTIONS]  # 12: more than the 4-request probe
        requests = _requests(backend, models, questions)
        backend.prepare(requests)
        out = {r.key: g.text for r, g in zip(requests, backend.generate(requests))}
        choice = backend.choices["tuned"]
        assert choice.probe_requests == 4 and choice.requests == len(questions)
        assert choice.lora_s_per_request and choice.merged_s_per_request and choice.swap_s is not None
        assert choice.strategy == ("merged" if choice.merged_cost_s < choice.lora_cost_s else "multi-lora")
        assert f"measured on {choice.probe_requests} of its requests cut to 8 tokens" in choice.reason
        assert "the base's measured time per request" in choice.reason  # the base went first
        # The kept outputs are the chosen way's.
        engine = backend._engine_for("tuned")
        tuned = [r for r in requests if r.model.name == "tuned"]
        ids = backend._token_ids(tuned)
        engine.use_weights(models["tuned"] if choice.served_by == "swap" else None)
        direct = engine.generate(tuned, ids, lora=choice.served_by == "lora")
        assert [out[r.key] for r in tuned] == [g.text for g in direct]
        assert sum(out[f"base:{i}"] != out[f"tuned:{i}"] for i in range(len(questions))) >= len(questions) - 2
    finally:
        backend.close()
