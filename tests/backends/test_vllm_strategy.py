"""The vLLM backend's adapter strategies, without starting an engine: routing, the measured "auto"
decision, which adapters can be swapped into a running engine, and the swap's merge arithmetic
(checked against PEFT's own merge_and_unload).

The engines themselves are exercised by tests/backends/test_architectures.py (LoRA and swapped
merged weights on five architectures, against transformers+peft, and the base restored exactly)
and by tests/integration (the default strategy end to end).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftevals.backends.vllm import VLLMBackend, VLLMSettings, lora_rank_limit
from ftevals.backends.vllm_strategy import (SWAP_BYTES_PER_S, adapter_deltas, decide_from_probe, estimate_swap_seconds,
                                           swap_refusal, tensor_files)
from ftevals.errors import ConfigError
from ftevals.models import AdapterInfo, ModelFolder, ResolvedModel
from ftevals.specs import ModelSpec


def test_auto_merges_when_what_lora_adds_costs_more_than_two_swaps():
    # Probe of 4 requests, one call each way: LoRA 2.0 s, plain weights 0.5 s, so LoRA adds 0.375 s a
    # request; a swap 0.5 s; the base took 0.3 s per full request. 100 requests: 100 x (0.3 + 0.375)
    # = 67.5 s as LoRA vs 1 + 30 s merged.
    choice = decide_from_probe("big", 100, 4, lora_s=2.0, merged_s=0.5, swap_s=0.5, request_s=0.3)
    assert choice.strategy == "merged" and choice.served_by == "swap"
    assert choice.lora_cost_s == pytest.approx(67.5) and choice.merged_cost_s == pytest.approx(31.0)
    assert "measured on 4 of its requests cut to 8 tokens" in choice.reason and "LoRA adds 0.375 s a request" in choice.reason
    assert "the base's measured time per request" in choice.reason
    # Two requests and a slow swap: swapping costs more than it can save.
    small = decide_from_probe("small", 2, 2, lora_s=0.4, merged_s=0.2, swap_s=1.0)
    assert small.strategy == "multi-lora" and small.served_by == "lora"
    assert "the probe's time per request" in small.reason  # no base measured yet: the probe's own
    # A GPU-like machine where LoRA costs what the base does: no reason to swap.
    assert decide_from_probe("gpu", 1000, 4, lora_s=1.0, merged_s=1.0, swap_s=0.1).strategy == "multi-lora"
    # Recorded with its inputs, and whether the swap was measured or estimated.
    assert set(choice.to_dict()) >= {"lora_s_per_request", "merged_s_per_request", "swap_s", "probe_requests"}
    assert "estimated from the adapter's size" in decide_from_probe("x", 10, 4, lora_s=1, merged_s=1, swap_s=0.1,
                                                                    swap_measured=False).reason


def test_a_calls_fixed_cost_does_not_hide_what_lora_adds():
    # Four short requests in one call each way: 1.17 s as LoRA, 1.11 s plain, most of either the
    # call's own cost. A ratio (1.05x) of the two would call LoRA nearly free; the difference says
    # 0.015 s a request, weighed against the swaps for what it is.
    choice = decide_from_probe("r8k", 32, 4, lora_s=1.17, merged_s=1.11, swap_s=0.29, request_s=0.072)
    assert choice.lora_cost_s == pytest.approx(32 * (0.072 + 0.015), abs=0.01)  # recorded to 2 decimals
    assert choice.strategy == "multi-lora"  # 0.48 s added against 0.58 s of swaps
    assert decide_from_probe("r8k", 320, 4, lora_s=1.17, merged_s=1.11, swap_s=0.29, request_s=0.072).strategy == "merged"


def _write_adapter(folder: Path, config: dict, tensors: dict | None = None) -> Path:
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2, "lora_alpha": 4, **config}))
    tensors = tensors or {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.ones(2, 4),
                          "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": torch.ones(4, 2)}
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    return folder


def _base(folder: Path) -> Path:
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({"model.layers.0.self_attn.q_proj.weight": torch.zeros(4, 4)}, str(folder / "model.safetensors"))
    return folder


def _resolved(base: Path, adapter: Path | None, name: str = "tuned") -> ResolvedModel:
    info = None if adapter is None else AdapterInfo(adapter, 2, 4.0, ("q_proj",), "x", f"sha256:{name}")
    spec = ModelSpec(name, adapter=None if adapter is None else str(adapter))
    return ResolvedModel(spec, ModelFolder(base, "sha256:base"), info)


def test_a_plain_lora_adapter_can_be_swapped(tmp_path):
    assert swap_refusal(_resolved(_base(tmp_path / "base"), _write_adapter(tmp_path / "a", {}))) is None


@pytest.mark.parametrize("config,extra,why", [
    ({"use_dora": True}, None, "it uses DoRA (use_dora)"),
    ({"modules_to_save": ["lm_head"]}, None, "it uses saved full modules (modules_to_save)"),
    ({"rank_pattern": {"q_proj": 4}}, None, "it uses per-module ranks (rank_pattern)"),
    ({"bias": "all"}, None, "it trains biases"),
    ({"peft_type": "IA3"}, None, "it is a IA3 adapter, not LoRA"),
    ({}, "base_model.model.model.embed_tokens.lora_embedding_A", "it holds weights other than LoRA matrices"),
])
def test_what_the_swap_cannot_apply_is_named(tmp_path, config, extra, why):
    import torch

    tensors = None
    if extra:
        tensors = {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.ones(2, 4),
                   "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": torch.ones(4, 2), extra: torch.ones(2, 8)}
    refusal = swap_refusal(_resolved(_base(tmp_path / "base"), _write_adapter(tmp_path / "a", config, tensors)))
    assert refusal is not None and refusal.startswith(why), refusal


def test_the_swap_is_estimated_from_the_target_matrices_and_the_checkpoint_dtype(tmp_path):
    import torch
    from safetensors.torch import save_file

    # Two targets: q_proj 4x4 (A 2x4, B 4x2) and an 8x4 down_proj (A 2x4, B 8x2): 16 + 32 elements.
    tensors = {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.ones(2, 4),
               "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": torch.ones(4, 2),
               "base_model.model.model.layers.0.mlp.down_proj.lora_A.weight": torch.ones(2, 4),
               "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight": torch.ones(8, 2)}
    adapter = _write_adapter(tmp_path / "a", {}, tensors)
    assert estimate_swap_seconds(_resolved(_base(tmp_path / "base"), adapter)) == pytest.approx(48 * 4 / SWAP_BYTES_PER_S)
    (tmp_path / "bf16").mkdir()
    save_file({"model.layers.0.self_attn.q_proj.weight": torch.zeros(4, 4, dtype=torch.bfloat16)},
              str(tmp_path / "bf16" / "model.safetensors"))
    assert estimate_swap_seconds(_resolved(tmp_path / "bf16", adapter)) == pytest.approx(48 * 2 / SWAP_BYTES_PER_S)


def test_a_base_without_safetensors_is_not_swapped(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "pytorch_model.bin").write_bytes(b"")
    refusal = swap_refusal(_resolved(tmp_path / "base", _write_adapter(tmp_path / "a", {})))
    assert refusal is not None and "has no safetensors weights" in refusal


def test_the_swap_merges_exactly_what_peft_merges(tmp_path, default_model):
    """W + scale * B @ A from the files equals PEFT's merge_and_unload, tensor for tensor."""
    import torch
    from peft import PeftModel
    from support.tinymodels import ARCHS, build_adapter, build_model
    from transformers import AutoModelForCausalLM

    for arch in ("qwen2", "gpt2"):  # plain Linear layers, and Conv1D (fan_in_fan_out)
        base = build_model(ARCHS[arch], default_model.path, tmp_path / arch / "base")
        adapter = build_adapter(ARCHS[arch], base, tmp_path / arch / "adapter", use_rslora=arch == "gpt2")
        deltas = adapter_deltas(adapter)
        files = tensor_files(base)
        assert deltas and set(deltas) <= set(files)
        model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
        merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload().state_dict()
        from safetensors import safe_open

        with safe_open(str(files[next(iter(deltas))]), framework="pt") as f:
            for name, delta in deltas.items():
                assert torch.allclose(f.get_tensor(name).float() + delta, merged[name], atol=1e-6), name


def _models(tmp_path: Path) -> dict[str, ResolvedModel]:
    base = _base(tmp_path / "base")
    out = {"base": _resolved(base, None, "base")}
    out["plain"] = _resolved(base, _write_adapter(tmp_path / "plain", {}), "plain")
    out["dora"] = _resolved(base, _write_adapter(tmp_path / "dora", {"use_dora": True}), "dora")
    return out


def test_each_strategy_routes_adapters_its_way(tmp_path):
    models = _models(tmp_path)
    merged = VLLMBackend(models, VLLMSettings())
    assert VLLMSettings().strategy == "merged"
    assert [merged._route(n) for n in ("base", "plain", "dora")] == ["base", "swap", "engine"]
    # An adapter in an engine of its own goes last: each engine starts once.
    assert merged.model_order(["dora", "base", "plain"]) == ["base", "plain", "dora"]
    lora = VLLMBackend({k: v for k, v in models.items() if k != "dora"}, VLLMSettings(strategy="multi-lora"))
    assert lora._route("plain") == "lora"
    auto = VLLMBackend({k: v for k, v in models.items() if k != "dora"}, VLLMSettings(strategy="auto"))
    assert auto._route("plain") == "probe"
    # The strategy setting is part of the cache key; the per-adapter choice is not (see identity()).
    assert auto.identity()["strategy"] == "auto"


def test_settings_and_rank_limits_are_checked():
    with pytest.raises(ConfigError, match="strategy 'fastest' is unknown"):
        VLLMSettings(strategy="fastest")
    assert lora_rank_limit([8, 12]) == 16 and lora_rank_limit([]) == 8
