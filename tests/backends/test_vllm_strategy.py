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
from ftevals.backends.vllm_strategy import adapter_deltas, decide_from_probe, probe_is_clear, swap_refusal, tensor_files
from ftevals.errors import ConfigError
from ftevals.models import AdapterInfo, ModelFolder, ResolvedModel
from ftevals.specs import ModelSpec


def test_auto_merges_when_the_measured_lora_path_costs_more_than_two_swaps():
    # Probe of 4 requests: LoRA 2.0 s, merged 0.5 s (4x); a swap 0.5 s; the base took 0.3 s per full
    # request. 100 requests: 100 x 0.3 x 4 = 120 s as LoRA vs 1 + 30 s merged.
    choice = decide_from_probe("big", 100, 4, lora_s=2.0, merged_s=0.5, swap_s=0.5, request_s=0.3)
    assert choice.strategy == "merged" and choice.served_by == "swap"
    assert choice.lora_cost_s == pytest.approx(120.0) and choice.merged_cost_s == pytest.approx(31.0)
    assert "measured on 4 of its requests cut to 8 tokens" in choice.reason
    assert "the base's measured time per request" in choice.reason
    # Two requests and a slow swap: swapping costs more than it can save.
    small = decide_from_probe("small", 2, 2, lora_s=0.4, merged_s=0.2, swap_s=1.0)
    assert small.strategy == "multi-lora" and small.served_by == "lora"
    assert "the probe's time per request" in small.reason  # no base measured yet: the probe's own
    # A GPU-like machine where LoRA costs what the base does: no reason to swap.
    assert decide_from_probe("gpu", 1000, 4, lora_s=1.0, merged_s=1.0, swap_s=0.1).strategy == "multi-lora"
    # Recorded with its inputs.
    assert set(choice.to_dict()) >= {"lora_s_per_request", "merged_s_per_request", "swap_s", "probe_requests"}


def test_one_probe_request_settles_only_a_clear_verdict():
    # 120 s vs 31 s: clear after one request each way.
    assert probe_is_clear(decide_from_probe("big", 100, 1, lora_s=0.5, merged_s=0.125, swap_s=0.5, request_s=0.3))
    # 1.5x apart (LoRA 45 s vs merged 31 s): probe more before deciding.
    close = decide_from_probe("close", 100, 1, lora_s=0.15, merged_s=0.1, swap_s=0.5, request_s=0.3)
    assert close.strategy == "merged" and not probe_is_clear(close)
    assert not probe_is_clear(decide_from_probe("tie", 10, 1, lora_s=0.1, merged_s=0.1, swap_s=0.0, request_s=0.3))


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
