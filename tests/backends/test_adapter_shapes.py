"""Adapter shapes are derived from the base model's own weights: fast checks on synthetic folders.

Each base here is a config.json plus safetensors files holding the weight names and shapes of a
real architecture (tiny sizes, zero weights: only the headers are read); each adapter is what
PEFT saves for it. No engine, no torch.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from ftevals.adapters import base_weight_shapes
from ftevals.backends.vllm import VLLMBackend, VLLMSettings
from ftevals.errors import ModelSpecError
from ftevals.models import inspect_adapter, resolve_base, resolve_models
from ftevals.specs import ModelSpec

H, INTER, VOCAB, LAYERS = 16, 48, 64, 2
KV = 8  # grouped-query attention: k/v narrower than q


def _llama(prefix: str = "model") -> dict[str, tuple[int, ...]]:
    w: dict[str, tuple[int, ...]] = {f"{prefix}.embed_tokens.weight": (VOCAB, H), "lm_head.weight": (VOCAB, H)}
    for i in range(LAYERS):
        p = f"{prefix}.layers.{i}"
        w |= {f"{p}.self_attn.q_proj.weight": (H, H), f"{p}.self_attn.k_proj.weight": (KV, H),
              f"{p}.self_attn.v_proj.weight": (KV, H), f"{p}.self_attn.o_proj.weight": (H, H),
              f"{p}.mlp.gate_proj.weight": (INTER, H), f"{p}.mlp.up_proj.weight": (INTER, H),
              f"{p}.mlp.down_proj.weight": (H, INTER), f"{p}.input_layernorm.weight": (H,)}
    return w


def _phi3() -> dict[str, tuple[int, ...]]:
    w: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (VOCAB, H), "lm_head.weight": (VOCAB, H)}
    for i in range(LAYERS):
        p = f"model.layers.{i}"
        w |= {f"{p}.self_attn.qkv_proj.weight": (H + 2 * KV, H), f"{p}.self_attn.o_proj.weight": (H, H),
              f"{p}.mlp.gate_up_proj.weight": (2 * INTER, H), f"{p}.mlp.down_proj.weight": (H, INTER)}
    return w


def _gpt2(prefix: str = "transformer.") -> dict[str, tuple[int, ...]]:
    # Conv1D weights are stored (in, out); the head is tied to wte (no lm_head weight saved).
    w: dict[str, tuple[int, ...]] = {f"{prefix}wte.weight": (VOCAB, H), f"{prefix}wpe.weight": (32, H)}
    for i in range(LAYERS):
        p = f"{prefix}h.{i}"
        w |= {f"{p}.attn.c_attn.weight": (H, 3 * H), f"{p}.attn.c_attn.bias": (3 * H,),
              f"{p}.attn.c_proj.weight": (H, H), f"{p}.mlp.c_fc.weight": (H, INTER),
              f"{p}.mlp.c_proj.weight": (INTER, H)}
    return w


def _neox() -> dict[str, tuple[int, ...]]:
    w: dict[str, tuple[int, ...]] = {"gpt_neox.embed_in.weight": (VOCAB, H), "embed_out.weight": (VOCAB, H)}
    for i in range(LAYERS):
        p = f"gpt_neox.layers.{i}"
        w |= {f"{p}.attention.query_key_value.weight": (3 * H, H), f"{p}.attention.dense.weight": (H, H),
              f"{p}.mlp.dense_h_to_4h.weight": (INTER, H), f"{p}.mlp.dense_4h_to_h.weight": (H, INTER)}
    return w


def _zeros(shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    return {k: np.zeros(v, dtype=np.float16) for k, v in shapes.items()}


def make_base(folder: Path, weights: dict[str, tuple[int, ...]], *, model_type: str = "llama",
              shards: int = 1, **config: object) -> Path:
    folder.mkdir(parents=True)
    cfg = {"model_type": model_type, "architectures": ["X"], "vocab_size": VOCAB, "hidden_size": H, **config}
    (folder / "config.json").write_text(json.dumps(cfg))
    names = sorted(weights)
    if shards == 1:
        save_file(_zeros(weights), str(folder / "model.safetensors"))
        return folder
    weight_map = {}
    for s in range(shards):
        part = names[s::shards]
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        save_file(_zeros({k: weights[k] for k in part}), str(folder / fname))
        weight_map |= {k: fname for k in part}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


def make_adapter(folder: Path, base: Path, tensors: dict[str, tuple[int, ...]], *, r: int = 4,
                 **config: object) -> Path:
    folder.mkdir(parents=True)
    targets = sorted({k.split(".lora_")[0].rsplit(".", 1)[-1] for k in tensors if ".lora_" in k})
    cfg = {"peft_type": "LORA", "r": r, "lora_alpha": 2 * r, "target_modules": targets,
           "base_model_name_or_path": str(base), **config}
    (folder / "adapter_config.json").write_text(json.dumps(cfg))
    save_file(_zeros({"base_model.model." + k: v for k, v in tensors.items()}),
              str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
    return folder


def lora(module: str, in_f: int, out_f: int, r: int = 4, layers: range = range(LAYERS)) -> dict[str, tuple[int, ...]]:
    """What PEFT saves for a LoRA on a Linear or Conv1D: lora_A (r, in), lora_B (out, r)."""
    out: dict[str, tuple[int, ...]] = {}
    for i in layers:
        m = module.format(i=i)
        out |= {f"{m}.lora_A.weight": (r, in_f), f"{m}.lora_B.weight": (out_f, r)}
    return out


def check(tmp_path: Path, weights: dict[str, tuple[int, ...]], tensors: dict[str, tuple[int, ...]], *,
          base_kw: dict[str, object] | None = None, **adapter_kw: object):
    base = make_base(tmp_path / "base", weights, **(base_kw or {}))
    adapter = make_adapter(tmp_path / "adapter", base, tensors, **adapter_kw)
    return inspect_adapter(adapter, resolve_base(str(base))), adapter


# ---------------------------------------------------------------------------------------------
# Accepted


def test_llama_attention_and_mlp(tmp_path: Path) -> None:
    tensors = (lora("model.layers.{i}.self_attn.q_proj", H, H) | lora("model.layers.{i}.self_attn.k_proj", H, KV)
               | lora("model.layers.{i}.mlp.down_proj", INTER, H))
    info, _ = check(tmp_path, _llama(), tensors)
    assert info.target_modules == ("down_proj", "k_proj", "q_proj")


def test_phi3_fused_qkv_and_gate_up(tmp_path: Path) -> None:
    tensors = lora("model.layers.{i}.self_attn.qkv_proj", H, H + 2 * KV) | lora("model.layers.{i}.mlp.gate_up_proj", H, 2 * INTER)
    check(tmp_path, _phi3(), tensors, base_kw={"model_type": "phi3"})


def test_gpt2_conv1d_with_fan_in_fan_out(tmp_path: Path) -> None:
    tensors = (lora("transformer.h.{i}.attn.c_attn", H, 3 * H) | lora("transformer.h.{i}.mlp.c_fc", H, INTER)
               | lora("transformer.h.{i}.mlp.c_proj", INTER, H))
    check(tmp_path, _gpt2(), tensors, base_kw={"model_type": "gpt2"}, fan_in_fan_out=True)


def test_gpt2_checkpoint_without_the_transformer_prefix(tmp_path: Path) -> None:
    """Old GPT-2 folders name weights h.0.attn.c_attn.weight; the adapter says transformer.h.0..."""
    check(tmp_path, _gpt2(prefix=""), lora("transformer.h.{i}.attn.c_attn", H, 3 * H),
          base_kw={"model_type": "gpt2"}, fan_in_fan_out=True)


def test_neox_query_key_value(tmp_path: Path) -> None:
    tensors = lora("gpt_neox.layers.{i}.attention.query_key_value", H, 3 * H) | lora("embed_out", H, VOCAB, layers=range(1))
    check(tmp_path, _neox(), tensors, base_kw={"model_type": "gpt_neox"})


def test_lm_head_lora_on_tied_embeddings_and_embedding_lora(tmp_path: Path) -> None:
    weights = {k: v for k, v in _llama().items() if k != "lm_head.weight"}
    tensors = lora("lm_head", H, VOCAB, layers=range(1)) | {
        "model.embed_tokens.lora_embedding_A": (4, VOCAB), "model.embed_tokens.lora_embedding_B": (H, 4)}
    info, _ = check(tmp_path, weights, tensors, base_kw={"tie_word_embeddings": True})
    assert info.embedding_modules == ("lm_head", "model.embed_tokens")


def test_modules_to_save_copy_and_rank_pattern(tmp_path: Path) -> None:
    tensors = (lora("model.layers.{i}.self_attn.q_proj", H, H, r=8) | lora("model.layers.{i}.self_attn.v_proj", H, KV)
               | {"lm_head.weight": (VOCAB, H)})
    info, _ = check(tmp_path, _llama(), tensors, modules_to_save=["lm_head"], rank_pattern={"q_proj": 8})
    assert info.modules_to_save == ("lm_head",)


def test_sharded_base_checkpoint(tmp_path: Path) -> None:
    base = make_base(tmp_path / "base", _llama(), shards=3)
    assert base_weight_shapes(base) == {k: list(v) for k, v in _llama().items()}
    adapter = make_adapter(tmp_path / "adapter", base, lora("model.layers.{i}.mlp.up_proj", H, INTER))
    inspect_adapter(adapter, resolve_base(str(base)))


# ---------------------------------------------------------------------------------------------
# Refused, with the module, the expected and found shapes, and the fix


def refused(tmp_path: Path, weights, tensors, message: str, **kw) -> None:
    with pytest.raises(ModelSpecError) as info:
        check(tmp_path, weights, tensors, **kw)
    text = str(info.value).replace(str(tmp_path), "TMP")
    assert re.fullmatch(message, text), text


def test_llama_adapter_whose_targets_match_nothing(tmp_path: Path) -> None:
    tensors = lora("model.layers.{i}.self_attn.q_proj", H, H)
    refused(tmp_path, _llama(), tensors,
            r"TMP/adapter/adapter_config.json: target_modules names 'c_attn', 'query_key_value', which a llama base "
            r"model does not have \(its LoRA-able modules: down_proj, embed_tokens, gate_proj, k_proj, lm_head, "
            r"o_proj, q_proj, up_proj, v_proj\); fix target_modules or use the adapter with its own base model",
            target_modules=["q_proj", "c_attn", "query_key_value"])


def test_llama_adapter_with_a_rank_other_than_its_config(tmp_path: Path) -> None:
    refused(tmp_path, _llama(), lora("model.layers.{i}.self_attn.q_proj", H, H, r=8),
            r"adapter TMP/adapter: module 'model.layers.0.self_attn.q_proj' has rank 8 \(lora_A \[8, 16\]\) and 8 "
            r"\(lora_B \[16, 8\]\), but adapter_config.json gives it rank 4 \(r or rank_pattern\); fix "
            r"'r'/'rank_pattern' or re-save the adapter", r=4)


def test_llama_adapter_with_the_wrong_shape(tmp_path: Path) -> None:
    refused(tmp_path, _llama(), lora("model.layers.{i}.self_attn.k_proj", H, H),
            r"adapter TMP/adapter: base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight has shape "
            r"\[16, 4\], but on this base model it must be \[8, 4\] \(module model.layers.0.self_attn.k_proj: "
            r"weight \[8, 16\], linear, stored \(out, in\)\); the adapter was trained for a different base model")


def test_conv1d_adapter_without_fan_in_fan_out_is_read_as_linear(tmp_path: Path) -> None:
    refused(tmp_path, _gpt2(), lora("transformer.h.{i}.attn.c_attn", H, 3 * H),
            r"adapter TMP/adapter: base_model.model.transformer.h.0.attn.c_attn.lora_A.weight has shape \[4, 16\], "
            r"but on this base model it must be \[4, 48\] \(module transformer.h.0.attn.c_attn: weight \[16, 48\], "
            r"linear, stored \(out, in\)\); the adapter was trained for a different base model",
            base_kw={"model_type": "gpt2"})


def test_layer_the_base_does_not_have(tmp_path: Path) -> None:
    refused(tmp_path, _llama(), lora("model.layers.{i}.self_attn.q_proj", H, H, layers=range(3)),
            r"adapter TMP/adapter: base_model.model.model.layers.2.self_attn.q_proj.lora_A.weight is a LoRA on "
            r"module 'model.layers.2.self_attn.q_proj', which the base model TMP/base does not have \(its layers "
            r"are numbered 0..1\); the adapter was trained for a different base model")


def test_modules_to_save_copy_of_another_shape(tmp_path: Path) -> None:
    refused(tmp_path, _llama(), lora("model.layers.{i}.self_attn.q_proj", H, H) | {"lm_head.weight": (VOCAB + 1, H)},
            r"adapter TMP/adapter: base_model.model.lm_head.weight \(a full copy of 'lm_head', modules_to_save\) has "
            r"shape \[65, 16\], but the base model's lm_head.weight is \[64, 16\]; the adapter was trained for a "
            r"different base model", modules_to_save=["lm_head"])


def test_missing_lora_b(tmp_path: Path) -> None:
    tensors = {k: v for k, v in lora("model.layers.{i}.self_attn.q_proj", H, H).items() if "layers.1.self_attn.q_proj.lora_B" not in k}
    refused(tmp_path, _llama(), tensors,
            r"adapter TMP/adapter: module 'model.layers.1.self_attn.q_proj' has no lora_B matrix in "
            r"adapter_model.safetensors \(every LoRA module needs both\); re-save the adapter")


# ---------------------------------------------------------------------------------------------
# What vLLM cannot serve as a LoRA is refused by the vllm backend (the hf backend and merged serving take it)


@pytest.mark.parametrize(("extra", "message"), [
    ({"modules_to_save": ["lm_head"]},
     r"model 'tuned': adapter TMP/adapter saves full copies of 'lm_head' \(adapter_config.json modules_to_save\), "
     r"which vLLM's LoRA serves only for classification heads \(classifier, score\); serve it merged "
     r"\(--ftevals-backend-option strategy=merged\), use the hf backend, or retrain it without modules_to_save "
     r"\(a LoRA on those modules instead\)"),
    ({"use_dora": True},
     r"model 'tuned': adapter TMP/adapter uses DoRA \(use_dora\), which vLLM's LoRA does not support; serve it "
     r"merged \(--ftevals-backend-option strategy=merged\), use the hf backend, or retrain it as a plain LoRA"),
], ids=["modules_to_save", "dora"])
def test_vllm_refuses_what_its_lora_cannot_serve(tmp_path: Path, extra: dict[str, object], message: str) -> None:
    base = make_base(tmp_path / "base", _llama())
    (base / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages }}"}))
    tensors = lora("model.layers.{i}.self_attn.q_proj", H, H)
    if "modules_to_save" in extra:
        tensors |= {"lm_head.weight": (VOCAB, H)}
    adapter = make_adapter(tmp_path / "adapter", base, tensors, **extra)
    models = resolve_models([ModelSpec("base", base=str(base)), ModelSpec("tuned", base=str(base), adapter=str(adapter))])
    assert VLLMBackend(models, VLLMSettings(strategy="merged")).models is models
    with pytest.raises(ModelSpecError) as info:
        VLLMBackend(models, VLLMSettings(strategy="multi-lora"))
    assert re.fullmatch(message, str(info.value).replace(str(tmp_path), "TMP")), str(info.value)
