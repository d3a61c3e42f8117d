"""The default strategy ("merged") served end to end through the backend, on architectures whose
layers vLLM renames, packs or re-orders.

Each test builds a tiny random model and a PEFT adapter on its natural targets
(tests/support/tinymodels.py; nothing from a hub), serves base and adapter through
`VLLMBackend.generate` with the default settings, one engine call per model in the backend's own
model order, as a run does, and checks that:

- the engine checked, before it generated anything, that the adapter's merged weights map onto
  the served model (vllm_swap_worker.ftevals_check_weights);
- both generate, and the adapter's outputs differ from the base's;
- the strategy recorded for the adapter is the one expected, with its reason;
- the outputs equal transformers+peft's up to near-ties (tests/support/parity.py): a fused
  query_key_value merged at the wrong offsets, or a weight that went into no layer, would not.

One engine per architecture (two for the fallback case, which restarts it with LoRA before any
generation). GPT-NeoX is served by vLLM's Transformers backend, under other layer names than
HF's (the mid-run failure this replaces); Falcon and Bloom have no LoRA in vLLM 0.32, so merged is
the only way vLLM serves their adapters without a merged copy of the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from support.parity import ENGINE, MAX_TOKENS, MIN_IDENTICAL, QUESTIONS, assert_parity
from support.tinymodels import ARCHS, Arch, build_adapter, build_model

from ftevals.backends import vllm as vllm_backend
from ftevals.backends.base import GenerationRequest
from ftevals.backends.vllm import VLLMBackend, VLLMSettings
from ftevals.data import Message
from ftevals.models import ResolvedModel, resolve_models
from ftevals.specs import ModelSpec, SamplingSpec

pytestmark = pytest.mark.vllm


#: GPT-NeoX, Falcon and Bloom fuse q, k and v in one query_key_value (each laid out its own way),
#: Phi-3 in qkv_proj and gate/up in gate_up_proj; Mistral's separate q/k/v and gate/up are packed
#: by vLLM into qkv_proj and gate_up_proj at their offsets.
MERGED = ("gpt_neox", "mistral", "phi3", "falcon", "bloom")


def _models(arch: Arch, root: Path, tokenizer_dir: Path, *, edit_base: Any = None,
            **adapter: Any) -> dict[str, ResolvedModel]:
    base = build_model(arch, tokenizer_dir, root / "base")
    if edit_base is not None:
        edit_base(base)
    adapter = build_adapter(arch, base, root / "adapter", **adapter)
    return resolve_models([ModelSpec("base", base=str(base)),
                           ModelSpec("tuned", base=str(base), adapter=str(adapter))], pull=False)


def _requests(backend: Any, models: dict[str, ResolvedModel]) -> list[GenerationRequest]:
    out = []
    for name in ("base", "tuned"):
        spec = models[name].spec
        for i, q in enumerate(QUESTIONS):
            messages = (Message("user", q),)
            out.append(GenerationRequest(f"{name}:{i}", spec, messages, backend.render(spec, messages),
                                         SamplingSpec(max_tokens=MAX_TOKENS), str(i)))
    return out


def _serve(models: dict[str, ResolvedModel], monkeypatch: pytest.MonkeyPatch
           ) -> tuple[VLLMBackend, list[GenerationRequest], dict[str, str], list[str]]:
    """Serve every request with the default settings, one model per call in the backend's order (as
    generate.py does); returns the outputs by key and what the engines did, in order."""
    events: list[str] = []
    check, generate = vllm_backend._Engine.check_swaps, vllm_backend._Engine.generate

    def spy_check(engine: Any, adapters: Sequence[ResolvedModel]) -> dict[str, str]:
        problems = check(engine, adapters)
        events.append(f"check {sorted(m.name for m in adapters)} -> {sorted(problems)}")
        return problems

    def spy_generate(engine: Any, batch: Sequence[GenerationRequest], *args: Any, **kwargs: Any) -> Any:
        events.append(f"generate {batch[0].model.name} lora={kwargs.get('lora')}")
        return generate(engine, batch, *args, **kwargs)

    monkeypatch.setattr(vllm_backend._Engine, "check_swaps", spy_check)
    monkeypatch.setattr(vllm_backend._Engine, "generate", spy_generate)
    backend = VLLMBackend(models, VLLMSettings(**ENGINE))
    assert backend.settings.strategy == "merged"  # the default
    requests = _requests(backend, models)
    out: dict[str, str] = {}
    try:
        backend.prepare(requests)
        for name in backend.model_order(["base", "tuned"]):
            batch = [r for r in requests if r.model.name == name]
            out.update({r.key: g.text for r, g in zip(batch, backend.generate(batch))})
    finally:
        backend.close()
    return backend, requests, out, events


def _assert_adapter_served(models: dict[str, ResolvedModel], requests: list[GenerationRequest],
                           out: dict[str, str]) -> None:
    """Outputs differ from the base's, and equal transformers+peft's up to near-ties."""
    from ftevals.backends.hf import HFBackend

    pairs = {i: (out[f"base:{i}"], out[f"tuned:{i}"]) for i in range(len(QUESTIONS))}
    # An adapter ignored (or merged into no layer) would leave the pairs identical.
    assert sum(b != t for b, t in pairs.values()) >= len(QUESTIONS) - 1, pairs
    hf = HFBackend(models)
    try:
        reference = {r.key: g.text for r, g in zip(requests, hf.generate(requests))}
        for name in ("base", "tuned"):
            assert_parity(out, reference, [r for r in requests if r.model.name == name], hf,
                          min_identical=MIN_IDENTICAL)
    finally:
        hf.close()


@pytest.mark.parametrize("arch", MERGED)
def test_the_default_strategy_serves_the_adapter_merged(arch: str, tmp_path: Path, default_model,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FTEVALS_CACHE_DIR", str(tmp_path / "cache"))
    models = _models(ARCHS[arch], tmp_path, default_model.path)
    backend, requests, out, events = _serve(models, monkeypatch)
    # Checked once, before the engine generated anything; then base and adapter, merged.
    assert events == ["check ['tuned'] -> []", "generate base lora=False", "generate tuned lora=False"], events
    choice = backend.choices["tuned"]
    assert (choice.strategy, choice.served_by) == ("merged", "swap")
    assert choice.reason == "merged into the running engine's weights"
    assert backend.unmapped == {} and len(backend._engines) == 1
    assert "do not map" not in capfd.readouterr().err
    _assert_adapter_served(models, requests, out)


def _store_tied_head(base: Path) -> None:
    """Write lm_head.weight into a tied model's checkpoint beside the embedding it equals, as some
    checkpoints do: vLLM's loader skips it at engine start (the head is the embedding)."""
    from safetensors.torch import load_file, save_file

    file = base / "model.safetensors"
    tensors = load_file(str(file))
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"].clone()
    save_file(tensors, str(file), metadata={"format": "pt"})


def test_an_adapter_whose_merged_weights_do_not_map_is_served_as_lora_from_the_start(
        tmp_path: Path, default_model, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    """A LoRA on a tied lm_head: the served model has no head of its own to merge it into, and
    vLLM's loader refuses lm_head.weight on its own (before this check, the swap failed on it
    mid-run). Granite takes LoRA on lm_head, so the adapter is served as LoRA requests: the engine
    is started again with LoRA, before either model generated, and the terminal and the choice
    say why."""
    monkeypatch.setenv("FTEVALS_CACHE_DIR", str(tmp_path / "cache"))
    arch = replace(ARCHS["granite"], config={**ARCHS["granite"].config, "tie_word_embeddings": True})
    # Only the LoRA matrices: PEFT would also save the full embedding weights (which no swap applies).
    models = _models(arch, tmp_path, default_model.path, edit_base=_store_tied_head,
                     targets=("q_proj", "v_proj", "lm_head"), save_embedding_layers=False)
    backend, requests, out, events = _serve(models, monkeypatch)
    why = ("its merged weights do not map onto the served GraniteForCausalLM model (vLLM's loader rejects "
           "lm_head.weight (ValueError: 'lm_head.weight' was skipped because it is tied to 'model.embed_tokens.weight'")
    # The first engine checked and was replaced before anything generated; the second has no
    # adapter left to swap in, so nothing to check.
    assert events == ["check ['tuned'] -> ['tuned']", "generate base lora=False", "generate tuned lora=True"], events
    choice = backend.choices["tuned"]
    assert (choice.strategy, choice.served_by) == ("multi-lora", "lora")
    assert choice.reason.startswith(f"a LoRA request in the base model's engine: {why}"), choice.reason
    route, reason = backend.unmapped["tuned"]
    assert route == "lora" and reason.startswith(why) and reason.endswith(")"), reason
    err = capfd.readouterr().err
    assert f"ftevals: adapter tuned: {reason}; serving it as LoRA requests\n" in err, err
    engine = backend._engines[("base", str(models["base"].base.path))]
    assert not engine.can_swap and list(engine.lora_ids) == ["tuned"]
    assert backend.engine_start_seconds > engine.start_seconds  # the replaced engine's start counts
    _assert_adapter_served(models, requests, out)
