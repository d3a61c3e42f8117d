"""What vLLM can serve as a LoRA, checked before an engine starts (30-40 s on a CPU).

Two kinds of check: from the adapter alone (its rank, the PEFT features vLLM's LoRA loader
rejects), at backend construction; and against vLLM's model class for the base (LoRA support at all,
LoRA on embeddings/lm_head), just before the engine would start, since it imports vLLM's model
module. Each refusal names the model, the adapter, what vLLM lacks and the ways out (merged
serving, the hf backend, retraining). Merged serving skips all of them: PEFT merges the adapter
into the weights, whatever it contains.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import ConfigError, ModelSpecError
from ..models import ResolvedModel

#: How a user asks for merged serving, named in the errors that suggest it.
MERGED_OPTION = "--ftevals-backend-option strategy=merged"
#: The only modules_to_save vLLM 0.32's LoRA loader accepts: sequence-classification heads.
_VLLM_SAVABLE_MODULES = ("classifier", "score")

#: vLLM only accepts these LoRA ranks for max_lora_rank.
_VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def lora_rank_limit(ranks: Sequence[int]) -> int:
    """Smallest rank vLLM accepts that covers every adapter."""
    top = max(ranks) if ranks else 8
    for r in _VLLM_LORA_RANKS:
        if r >= top:
            return r
    raise ConfigError(f"adapter rank {top} is above vLLM's largest supported LoRA rank {_VLLM_LORA_RANKS[-1]}")


def check_lora_servable(models: Iterable[ResolvedModel]) -> None:
    """Refuse adapters vLLM's LoRA path cannot serve, from adapter_config.json and the weights' names.

    The rank limit, and the PEFT features vLLM 0.32's LoRA loader rejects (vllm/lora/peft_helper.py):
    modules_to_save other than a classifier head, DoRA, LoRA bias, base-changing inits. Merged
    serving has none of these limits (PEFT's merge_and_unload applies them all).
    """
    top = _VLLM_LORA_RANKS[-1]
    merged = f"serve it merged ({MERGED_OPTION}), use the hf backend"
    for m in models:
        a = m.adapter
        if a is None:
            continue
        if a.rank > top:
            raise ModelSpecError(
                f"model {m.name!r}: adapter {a.path} has LoRA rank {a.rank}, above vLLM's "
                f"largest supported rank {top}; {merged}, or retrain it with r <= 512"
            )
        saved = [s for s in a.modules_to_save if s not in _VLLM_SAVABLE_MODULES]
        if saved:
            raise ModelSpecError(
                f"model {m.name!r}: adapter {a.path} saves full copies of {', '.join(map(repr, saved))} "
                f"(adapter_config.json modules_to_save), which vLLM's LoRA serves only for classification heads "
                f"({', '.join(_VLLM_SAVABLE_MODULES)}); {merged}, or retrain it without modules_to_save "
                "(a LoRA on those modules instead)"
            )
        if a.features:
            raise ModelSpecError(
                f"model {m.name!r}: adapter {a.path} uses {', '.join(a.features)}, which vLLM's LoRA does not "
                f"support; {merged}, or retrain it as a plain LoRA"
            )


def check_architecture_serves_lora(base_path: Path, adapters: list[ResolvedModel]) -> None:
    """Refuse adapters vLLM's model class for this base cannot serve as LoRA, before the engine starts.

    vLLM implements LoRA per model class: classes that declare SupportsLoRA (Llama, Qwen2, Phi-3,
    Gemma2, Granite, ... in 0.32, not GPT-2 or Falcon), and among those only the ones that list
    `embed_tokens`/`lm_head` in `embedding_modules` take a LoRA on the embeddings or the output head.
    Without this check the engine spends its start-up (30-40 s on a CPU) and then fails with a
    message that names neither the adapter nor a way out. The class is looked up in vLLM's own
    registry (importing only its module); if that lookup fails, the engine is left to decide.
    """
    try:
        arch = (json.loads((base_path / "config.json").read_text()).get("architectures") or [None])[0]
        from vllm.model_executor.models.interfaces import supports_lora
        from vllm.model_executor.models.registry import ModelRegistry

        cls = ModelRegistry._try_load_model_cls(str(arch)) if arch else None  # private: guarded
    except Exception:
        return
    if cls is None:
        return
    fix = f"serve them merged ({MERGED_OPTION}) or use the hf backend"
    if not supports_lora(cls):
        names = ", ".join(repr(m.name) for m in adapters)
        raise ModelSpecError(
            f"model {adapters[0].name!r}: vLLM {_vllm_version()} has no LoRA support for {arch} (the base model "
            f"{base_path}), so it cannot serve the adapters of {names} as LoRA; {fix}"
        )
    allowed = set(getattr(cls, "embedding_modules", None) or {})
    for m in adapters:
        assert m.adapter is not None
        on_embeddings = sorted({p.rsplit(".", 1)[-1] for p in m.adapter.embedding_modules} - allowed)
        if on_embeddings:
            raise ModelSpecError(
                f"model {m.name!r}: adapter {m.adapter.path} has a LoRA on {', '.join(map(repr, on_embeddings))}, "
                f"which vLLM {_vllm_version()} serves for {arch} only on {sorted(allowed) or 'no embedding modules'}; "
                f"serve it merged ({MERGED_OPTION}), use the hf backend, or retrain it without LoRA on the embeddings"
            )


def base_architecture(base_path: Path) -> str:
    """The base's architecture as its config.json names it (what vLLM picks its model class by)."""
    try:
        return str((json.loads((base_path / "config.json").read_text()).get("architectures") or ["?"])[0])
    except (OSError, ValueError, AttributeError):
        return "?"


def lora_refusal(base_path: Path, model: ResolvedModel) -> str | None:
    """Why vLLM cannot serve `model` as LoRA requests on this base, in a few words (None: it can),
    by the same rules as check_lora_servable and check_architecture_serves_lora, for a decision
    taken mid-run (an adapter whose merged weights turned out not to map onto the served model)."""
    from ..errors import FtevalsError

    try:
        check_lora_servable([model])
    except FtevalsError as exc:
        # Those messages name the model and its adapter first; the reason follows "uses"/"has"/"saves".
        return str(exc).split(": ", 1)[-1].split("; ", 1)[0]
    try:
        arch = base_architecture(base_path)
        from vllm.model_executor.models.interfaces import supports_lora
        from vllm.model_executor.models.registry import ModelRegistry

        cls = ModelRegistry._try_load_model_cls(arch)  # private: guarded
    except Exception:
        return None  # as check_architecture_serves_lora: the engine decides
    if cls is None:
        return None
    if not supports_lora(cls):
        return f"vLLM {_vllm_version()} has no LoRA support for {arch}"
    allowed = set(getattr(cls, "embedding_modules", None) or {})
    assert model.adapter is not None
    on_embeddings = sorted({p.rsplit(".", 1)[-1] for p in model.adapter.embedding_modules} - allowed)
    if on_embeddings:
        return f"vLLM {_vllm_version()} takes no LoRA on {', '.join(on_embeddings)} for {arch}"
    return None


def _vllm_version() -> str:
    try:
        import vllm

        return str(getattr(vllm, "__version__", "")).split("+")[0] or "(unknown version)"
    except Exception:
        return "(unknown version)"


__all__ = ["MERGED_OPTION", "base_architecture", "check_architecture_serves_lora", "check_lora_servable",
           "lora_rank_limit", "lora_refusal"]
