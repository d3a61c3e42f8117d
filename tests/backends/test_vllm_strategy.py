"""The vLLM backend's engine strategies, without starting an engine: routing and the auto cost model.

The engines themselves are exercised by tests/integration (multi-lora, against transformers+peft)
and by the benchmarks (multi-lora vs merged vs auto, outputs compared).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ftevals.backends.base import GenerationRequest
from ftevals.backends.vllm import VLLMBackend, VLLMSettings, choose_strategy, lora_rank_limit
from ftevals.errors import ConfigError
from ftevals.models import AdapterInfo, ModelFolder, ResolvedModel
from ftevals.specs import ModelSpec, SamplingSpec


def test_cost_model_merges_when_the_lora_path_costs_more_than_an_engine_start():
    # 1,000 tokens at 10 ms, LoRA 10x: 100 s through LoRA vs 35 + 8 + 10 s merged.
    assert choose_strategy(1000, seconds_per_token=0.01, lora_slowdown=10, engine_start_s=35, merge_s=8)[0] == "merged"
    # 50 tokens: an engine start is not worth it.
    strategy, lora, merged = choose_strategy(50, seconds_per_token=0.01, lora_slowdown=10, engine_start_s=35, merge_s=8)
    assert strategy == "multi-lora" and lora == pytest.approx(5.0) and merged == pytest.approx(43.5)
    # A merge already on disk costs nothing more.
    assert choose_strategy(400, seconds_per_token=0.01, lora_slowdown=10, engine_start_s=35, merge_s=8,
                           merged_exists=True)[0] == "merged"


def _models(tmp_path: Path) -> dict[str, ResolvedModel]:
    base = ModelFolder(tmp_path / "base", "sha256:base")
    out = {"base": ResolvedModel(ModelSpec("base"), base, None)}
    for name in ("big", "small"):
        info = AdapterInfo(tmp_path / name, 16, 32.0, ("q_proj",), "x", f"sha256:{name}")
        out[name] = ResolvedModel(ModelSpec(name, adapter=str(tmp_path / name)), base, info)
    return out


def _requests(model: ModelSpec, n: int, max_tokens: int) -> list[GenerationRequest]:
    return [GenerationRequest(f"{model.name}{i}", model, (), "p", SamplingSpec(max_tokens=max_tokens)) for i in range(n)]


def test_auto_routes_each_adapter_by_its_own_workload(tmp_path, monkeypatch):
    monkeypatch.setenv("FTEVALS_CACHE_DIR", str(tmp_path / "cache"))
    models = _models(tmp_path)
    backend = VLLMBackend(models, VLLMSettings(strategy="auto", seconds_per_token=0.01, lora_slowdown=10,
                                               engine_start_s=35, merge_s=8))
    backend.prepare(_requests(models["big"].spec, 200, 16) + _requests(models["small"].spec, 2, 16))
    # Base and LoRA-served adapters first, merged ones after: each engine starts once.
    assert backend.model_order(["big", "base", "small"]) == ["base", "small", "big"]
    assert backend.choices["big"].strategy == "merged" and backend.choices["small"].strategy == "multi-lora"
    assert backend.choices["big"].tokens == 3200
    # The strategy setting is part of the cache key; the per-adapter choice is not (see identity()).
    assert backend.identity()["strategy"] == "auto"


@pytest.mark.parametrize("strategy,expected", [("multi-lora", "multi-lora"), ("merged", "merged")])
def test_fixed_strategies_route_every_adapter_the_same_way(tmp_path, strategy, expected):
    backend = VLLMBackend(_models(tmp_path), VLLMSettings(strategy=strategy))
    assert backend._route_kind("big") == expected and backend._route_kind("base") == "base"


def test_settings_and_rank_limits_are_checked():
    with pytest.raises(ConfigError, match="strategy 'fastest' is unknown"):
        VLLMSettings(strategy="fastest")
    assert lora_rank_limit([8, 12]) == 16 and lora_rank_limit([]) == 8
