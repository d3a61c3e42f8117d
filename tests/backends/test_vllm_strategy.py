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
from ftevals.backends.vllm_strategy import (SWAP_BYTES_PER_S, adapter_deltas, adapter_target_shapes, decide_from_probe,
                                           estimate_swap_seconds, swap_refusal, tensor_files, tensor_shapes)
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


def test_the_swap_refuses_targets_the_base_checkpoint_does_not_hold_as_such(tmp_path):
    """The swap reads each target's base matrix by name from the checkpoint: one the checkpoint
    lacks, or holds at another shape, is named before any engine starts (PEFT's merge in an
    engine of its own serves it instead)."""
    import torch

    base = _base(tmp_path / "base")  # q_proj 4x4 only
    down = {"base_model.model.model.layers.0.mlp.down_proj.lora_A.weight": torch.ones(2, 4),
            "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight": torch.ones(4, 2)}
    refusal = swap_refusal(_resolved(base, _write_adapter(tmp_path / "down", {}, down)))
    assert refusal == "the base's safetensors hold no model.layers.0.mlp.down_proj.weight for its LoRA on it"
    wide = {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.ones(2, 8),
            "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": torch.ones(4, 2)}
    refusal = swap_refusal(_resolved(base, _write_adapter(tmp_path / "wide", {}, wide)))
    assert refusal == "its LoRA on model.layers.0.self_attn.q_proj.weight is 4x8, the base's matrix 4x4"


@pytest.mark.parametrize("arch", ["qwen2", "gpt2", "gpt_neox", "falcon", "bloom"])
def test_the_target_shapes_read_from_the_headers_are_the_base_matrices(arch, tmp_path, default_model):
    """(out, in) from B and A, transposed for GPT-2's Conv1D (fan_in_fan_out): exactly the shapes the
    checkpoint stores, on plain, Conv1D and fused query_key_value layers."""
    from support.tinymodels import ARCHS, build_adapter, build_model

    base = build_model(ARCHS[arch], default_model.path, tmp_path / "base")
    adapter = build_adapter(ARCHS[arch], base, tmp_path / "adapter")
    shapes = adapter_target_shapes(adapter)
    stored = tensor_shapes(base)
    assert shapes and {n: list(s) for n, s in shapes.items()} == {n: stored[n] for n in shapes}
    assert {n: tuple(d.shape) for n, d in adapter_deltas(adapter).items()} == shapes
    assert swap_refusal(_resolved(base, adapter)) is None


# -- the engine's check before it generates, with a scripted engine ---------------------------------

class _ScriptedLLM:
    """Stands in for vllm.LLM: answers the swap check as `problems` says (adapter -> problem, or
    "unplaced" for a weight no worker placed), and records the calls."""

    def __init__(self, problems: dict[str, str], calls: list[str], engine: object) -> None:
        self.problems, self.calls, self.engine = problems, calls, engine

    def collective_rpc(self, method: str, args: tuple = ()) -> list[dict]:
        if method == "ftevals_check_weights":
            adapters = args[1]
            self.calls.append(f"check {sorted(adapters)}")
            if "raise" in self.problems:
                raise RuntimeError(self.problems["raise"])
            return [{name: {"problem": None if self.problems.get(name) in (None, "unplaced") else self.problems[name],
                            "unplaced": ["lm_head.weight"] if self.problems.get(name) == "unplaced" else []}
                     for name in adapters}]
        self.calls.append(f"swap {args[1] and Path(args[1]).name}")
        return [{}]


@pytest.fixture
def scripted(monkeypatch, tmp_path):
    """Engines that start instantly and generate "<model>" for each request; `calls` lists, in order,
    the starts (with each engine's LoRA adapters and whether it can swap), checks, swaps and generations."""
    from ftevals.backends import vllm as vllm_backend
    from ftevals.backends.base import Generation

    monkeypatch.setenv("FTEVALS_CACHE_DIR", str(tmp_path / "cache"))  # vLLM's log file among others

    state: dict = {"problems": {}, "calls": []}

    def start(engine):
        if engine.llm is None:
            state["calls"].append(f"start lora={sorted(engine.lora_ids)} swap={engine.can_swap}")
            engine.llm = _ScriptedLLM(state["problems"], state["calls"], engine)

    def generate(engine, batch, ids, *, lora, on_result=None):
        state["calls"].append(f"generate {batch[0].model.name} lora={lora}")
        return [Generation(text=r.model.name, tokens_in=1, tokens_out=1, finish_reason="stop") for r in batch]

    monkeypatch.setattr(vllm_backend._Engine, "start", start)
    monkeypatch.setattr(vllm_backend._Engine, "generate", generate)
    return state


def _plain_models(tmp_path: Path, *names: str) -> dict[str, ResolvedModel]:
    base = _base(tmp_path / "base")
    out = {"base": _resolved(base, None, "base")}
    for name in names:
        out[name] = _resolved(base, _write_adapter(tmp_path / name, {}), name)
    return out


def _serve(backend: VLLMBackend, names: list[str]) -> dict[str, str]:
    """As generate.py: the workload to `prepare`, then one call per model in `model_order`."""
    from ftevals.backends.base import GenerationRequest
    from ftevals.data import Message
    from ftevals.specs import SamplingSpec

    requests = {name: GenerationRequest(name, backend.models[name].spec, (Message("user", "hi"),), "hi",
                                        SamplingSpec(max_tokens=4), "0") for name in names}
    backend._token_ids = lambda batch: [[1] for _ in batch]  # type: ignore[method-assign]
    backend.prepare(list(requests.values()))
    return {name: backend.generate([requests[name]])[0].text for name in backend.model_order(names)}


def test_an_adapter_that_does_not_map_is_rerouted_to_lora_before_the_engine_generates(tmp_path, scripted, capsys):
    scripted["problems"].update(bad="vLLM's loader rejects model.layers.0.self_attn.q_proj.weight (ValueError: no)")
    backend = VLLMBackend(_plain_models(tmp_path, "good", "bad"), VLLMSettings())
    assert _serve(backend, ["base", "good", "bad"]) == {"base": "base", "good": "good", "bad": "bad"}
    # The first engine (no LoRA) is checked and replaced by one with LoRA for "bad" before anything
    # generates; that one is checked again for the adapter it still swaps.
    assert scripted["calls"] == [
        "start lora=[] swap=True", "check ['bad', 'good']",
        "start lora=['bad'] swap=True", "check ['good']",
        "generate base lora=False", "swap good", "generate good lora=False",
        "swap None", "generate bad lora=True"]
    why = ("its merged weights do not map onto the served ? model (vLLM's loader rejects "
           "model.layers.0.self_attn.q_proj.weight (ValueError: no))")
    assert f"ftevals: adapter bad: {why}; serving it as LoRA requests" in capsys.readouterr().err.splitlines()
    bad, good = backend.choices["bad"], backend.choices["good"]
    assert (bad.strategy, bad.served_by) == ("multi-lora", "lora")
    assert bad.reason == f"a LoRA request in the base model's engine: {why}"
    assert (good.strategy, good.served_by) == ("merged", "swap")


def test_a_weight_no_worker_placed_does_not_map(tmp_path, scripted, capsys):
    scripted["problems"].update(tuned="unplaced")
    backend = VLLMBackend(_plain_models(tmp_path, "tuned"), VLLMSettings())
    _serve(backend, ["base", "tuned"])
    why = "(vLLM's loader puts lm_head.weight into no parameter of the served model)"
    assert backend.unmapped["tuned"][1].endswith(why)
    assert scripted["calls"][:3] == ["start lora=[] swap=True", "check ['tuned']", "start lora=['tuned'] swap=False"]


def test_where_vllm_has_no_lora_either_the_adapter_is_merged_by_peft_into_an_engine_of_its_own(
        tmp_path, scripted, capsys, monkeypatch):
    from ftevals.backends import vllm as vllm_backend

    no_lora = "vLLM 0.32.0 has no LoRA support for FalconForCausalLM"
    monkeypatch.setattr(vllm_backend, "lora_refusal", lambda base, m: no_lora)
    monkeypatch.setattr(vllm_backend, "merge_adapter", lambda m: tmp_path / "merged")
    scripted["problems"].update(bad="no layer")
    backend = VLLMBackend(_plain_models(tmp_path, "good", "bad"), VLLMSettings())
    _serve(backend, ["base", "good", "bad"])
    # No engine restart: the base's engine keeps swapping "good"; "bad" gets an engine of its own.
    assert scripted["calls"] == [
        "start lora=[] swap=True", "check ['bad', 'good']",
        "generate base lora=False", "swap good", "generate good lora=False",
        "start lora=[] swap=False", "generate bad lora=False"]
    assert "serving it merged by PEFT in an engine of its own" in capsys.readouterr().err
    bad = backend.choices["bad"]
    assert (bad.strategy, bad.served_by) == ("merged", "engine")
    assert bad.reason == ("merged by PEFT and served by an engine of its own: its merged weights do not map onto the "
                          "served ? model (no layer), and vLLM cannot serve it as LoRA requests (vLLM 0.32.0 has no "
                          "LoRA support for FalconForCausalLM)")


def test_auto_serves_an_adapter_that_does_not_map_as_lora_without_a_probe_or_a_restart(tmp_path, scripted, capsys):
    scripted["problems"].update(bad="no layer")
    backend = VLLMBackend(_plain_models(tmp_path, "bad"), VLLMSettings(strategy="auto"))
    _serve(backend, ["base", "bad"])
    assert scripted["calls"] == ["start lora=['bad'] swap=True", "check ['bad']", "generate base lora=False",
                                 "generate bad lora=True"]
    assert backend.choices["bad"].probe_requests == 0 and backend.choices["bad"].served_by == "lora"
    assert "serving it as LoRA requests" in capsys.readouterr().err


def test_the_check_runs_once_per_engine_and_not_for_lora_only_engines(tmp_path, scripted):
    backend = VLLMBackend(_plain_models(tmp_path, "a", "b"), VLLMSettings())
    _serve(backend, ["base", "a", "b"])
    assert [c for c in scripted["calls"] if c.startswith(("start", "check"))] == ["start lora=[] swap=True",
                                                                               "check ['a', 'b']"]
    scripted["calls"].clear()
    lora = VLLMBackend(_plain_models(tmp_path / "x", "a"), VLLMSettings(strategy="multi-lora"))
    _serve(lora, ["base", "a"])
    assert not any(c.startswith("check") for c in scripted["calls"])


def test_a_check_that_fails_fails_the_model_before_it_generates_and_is_tried_again(tmp_path, scripted):
    from ftevals.errors import BackendError

    scripted["problems"].update({"raise": "Worker failed with error 'boom'"})
    backend = VLLMBackend(_plain_models(tmp_path, "tuned"), VLLMSettings())
    with pytest.raises(BackendError, match=r"could not check whether the merged weights of 'tuned' map onto its model: "
                                           r"RuntimeError: Worker failed with error 'boom'; serve adapters as LoRA "
                                           r"requests instead \(--ftevals-backend-option strategy=multi-lora\)"):
        _serve(backend, ["base", "tuned"])
    assert not any(c.startswith("generate") for c in scripted["calls"])
    scripted["problems"].clear()  # the next model's turn checks again, and now it answers
    assert _serve(backend, ["tuned"]) == {"tuned": "tuned"}
    assert scripted["calls"][-3:] == ["check ['tuned']", "swap tuned", "generate tuned lora=False"]
