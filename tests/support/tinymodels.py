"""Tiny random causal LMs of several architectures, and a LoRA adapter for each, built in a test.

Nothing comes from a hub: each model is a transformers config with tiny sizes, randomly initialised
with a fixed seed and saved as safetensors, next to the embedded default model's tokenizer (its
vocabulary sets the model's vocab_size, and its chat template makes the folder a chat model).

The sizes follow what vLLM's CPU attention accepts (head sizes 32, 64, ...: head_dim is 32 here).
Weights are initialised wider than transformers' default (std 0.02): with that default a 2-layer
model's logits are all within a few hundredths of each other, so greedy decoding would be decided
by rounding noise and no vLLM-vs-transformers comparison could mean anything.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HIDDEN = 128
HEADS = 4
KV_HEADS = 2
HEAD_DIM = HIDDEN // HEADS  # 32
INTERMEDIATE = 256
LAYERS = 2
INIT_STD = 0.2
MAX_POSITIONS = 2048


@dataclass(frozen=True)
class Arch:
    """One architecture: its transformers model_type, config overrides and natural LoRA targets."""

    name: str
    model_type: str
    config: dict[str, Any]
    #: What a user would pass to PEFT's target_modules for this architecture.
    targets: tuple[str, ...]
    #: Does vLLM (0.32, CPU) serve LoRA adapters on it? If not, only the merged strategy can.
    vllm_lora: bool = True
    #: Parameters (by a part of their name) set to a constant after the random init; see GEMMA2_NORMS.
    fill: dict[str, float] = field(default_factory=dict)


_LLAMA_LIKE = {
    "hidden_size": HIDDEN,
    "intermediate_size": INTERMEDIATE,
    "num_hidden_layers": LAYERS,
    "num_attention_heads": HEADS,
    "num_key_value_heads": KV_HEADS,
    "max_position_embeddings": MAX_POSITIONS,
    "initializer_range": INIT_STD,
    "tie_word_embeddings": False,
}

#: Gemma2 ties lm_head to the input embedding and multiplies that embedding by sqrt(hidden_size),
#: while its sandwich norms shrink every layer's output to unit scale: in a random 2-layer model the
#: residual stream is then mostly the last input token's embedding, so the model predicts that
#: token again and again ("\n\n\n..."), adapter or not. Scaling the post-norms up (Gemma's norm
#: multiplies by 1 + weight) lets the layers, and so the LoRA, decide the next token.
GEMMA2_NORMS = {"post_attention_layernorm": 3.0, "post_feedforward_layernorm": 3.0}

ARCHS: dict[str, Arch] = {
    "qwen2": Arch("qwen2", "qwen2", dict(_LLAMA_LIKE),
                  ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")),
    # Fused projections: one qkv_proj and one gate_up_proj per layer.
    "phi3": Arch("phi3", "phi3", {**_LLAMA_LIKE, "num_key_value_heads": HEADS, "pad_token_id": None,
                                  "original_max_position_embeddings": MAX_POSITIONS},
                 ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")),
    # No attention-logit soft-capping: transformers applies it only in its eager attention, not in
    # the sdpa path its generate uses by default, so the reference itself would disagree with vLLM.
    "gemma2": Arch("gemma2", "gemma2", {**_LLAMA_LIKE, "head_dim": HEAD_DIM, "sliding_window": 64,
                                        "query_pre_attn_scalar": HEAD_DIM, "tie_word_embeddings": True,
                                        "attn_logit_softcapping": None},
                   ("q_proj", "k_proj", "v_proj", "o_proj"), fill=GEMMA2_NORMS),
    "granite": Arch("granite", "granite", {**_LLAMA_LIKE, "embedding_multiplier": 2.0, "logits_scaling": 1.0,
                                           "residual_multiplier": 0.5, "attention_multiplier": 1.0 / HEAD_DIM},
                    ("q_proj", "v_proj", "gate_proj", "down_proj")),
    # Conv1D layers (weights stored (in, out)) and a fused c_attn; vLLM 0.32 has no LoRA for GPT-2.
    "gpt2": Arch("gpt2", "gpt2", {"n_embd": HIDDEN, "n_layer": LAYERS, "n_head": HEADS, "n_inner": INTERMEDIATE,
                                  "n_positions": MAX_POSITIONS, "initializer_range": INIT_STD},
                 ("c_attn", "c_proj", "c_fc"), vllm_lora=False),
    "mistral": Arch("mistral", "mistral", {**_LLAMA_LIKE, "sliding_window": None},
                    ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")),
    # A fused query_key_value laid out head by head (q, k, v of head 0, then of head 1, ...). vLLM
    # 0.32 serves GPT-NeoX through its Transformers backend, which renames the layers
    # (gpt_neox.layers.N -> model.layers.N).
    "gpt_neox": Arch("gpt_neox", "gpt_neox", {"hidden_size": HIDDEN, "intermediate_size": INTERMEDIATE,
                                              "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
                                              "max_position_embeddings": MAX_POSITIONS,
                                              "initializer_range": INIT_STD, "tie_word_embeddings": False},
                     ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h")),
    # Falcon-7B's layout: one key/value head shared by every query head, in a fused query_key_value
    # that vLLM's loader re-orders into q, k, v; no LoRA in vLLM 0.32.
    "falcon": Arch("falcon", "falcon", {"hidden_size": HIDDEN, "num_hidden_layers": LAYERS,
                                        "num_attention_heads": HEADS, "multi_query": True, "parallel_attn": True,
                                        "new_decoder_architecture": False, "alibi": False, "bias": False,
                                        "max_position_embeddings": MAX_POSITIONS, "initializer_range": INIT_STD},
                   ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"), vllm_lora=False),
    # query_key_value laid out head by head, which vLLM's loader re-orders into q, k, v; ALiBi
    # positions; no LoRA in vLLM 0.32.
    "bloom": Arch("bloom", "bloom", {"hidden_size": HIDDEN, "n_layer": LAYERS, "n_head": HEADS,
                                     "initializer_range": INIT_STD},
                  ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"), vllm_lora=False),
}


def build_model(arch: Arch, tokenizer_dir: Path, dest: Path, *, seed: int = 0) -> Path:
    """A tiny random `arch` model folder (safetensors, float32) with `tokenizer_dir`'s tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    special = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
               "pad_token_id": tok.pad_token_id}
    config = AutoConfig.for_model(arch.model_type, vocab_size=len(tok), **{**special, **arch.config})
    config.torch_dtype = "float32"
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0.0, INIT_STD)  # see the module docstring: decisive logits
            for part, value in arch.fill.items():
                if part in name:
                    p.fill_(value)
    model.save_pretrained(dest, safe_serialization=True)
    tok.save_pretrained(dest)
    # generation_config.json can carry sampling defaults vLLM would apply; the tests decode greedily.
    (dest / "generation_config.json").unlink(missing_ok=True)
    return dest


def build_adapter(arch: Arch, model_dir: Path, dest: Path, *, rank: int = 8, seed: int = 1,
                  targets: tuple[str, ...] | None = None, save_embedding_layers: bool | str = "auto",
                  **lora_kwargs: Any) -> Path:
    """A PEFT LoRA adapter on `arch`'s natural targets, with random non-zero lora_B (PEFT starts it at
    zero, which would leave the outputs unchanged). `save_embedding_layers` as PEFT's save_pretrained:
    by default PEFT also saves full embedding weights beside a LoRA on a tied lm_head."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    cfg = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=list(targets or arch.targets),
                     lora_dropout=0.0, task_type="CAUSAL_LM", **lora_kwargs)
    model = get_peft_model(base, cfg)
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name or "lora_embedding_B" in name:
                p.normal_(0.0, INIT_STD)
    model.save_pretrained(dest, safe_serialization=True, save_embedding_layers=save_embedding_layers)
    # The recorded base is the folder it was built on; make it the folder's name so a copy still matches.
    cfg_path = dest / "adapter_config.json"
    saved = json.loads(cfg_path.read_text())
    saved["base_model_name_or_path"] = str(model_dir)
    cfg_path.write_text(json.dumps(saved, indent=2))
    return dest


def copy_model(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


#: Files of a model folder that make up its tokenizer (the rest: weights, config, manifest).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt")


def tokenizer_without_chat_template(model_dir: Path, dest: Path) -> Path:
    """`model_dir`'s tokenizer files alone, with its chat template removed: a base model's tokenizer.

    Built on it, a tiny model folder (`build_model`) has no chat template, as a pretrained base
    model's folder usually has none."""
    dest.mkdir(parents=True)
    for name in TOKENIZER_FILES:
        if (model_dir / name).is_file():
            shutil.copy(model_dir / name, dest / name)
    config = json.loads((dest / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (dest / "tokenizer_config.json").write_text(json.dumps(config))
    return dest


__all__ = ["ARCHS", "Arch", "TOKENIZER_FILES", "build_adapter", "build_model", "copy_model",
           "tokenizer_without_chat_template"]
