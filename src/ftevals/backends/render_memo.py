"""A memo of rendered prompts, so that a re-run need not load a tokenizer to rebuild its cache keys.

Rendering a prompt is a pure function of the tokenizer's files, the library versions that apply its
chat template, and the messages. A warm re-run (every generation cached) only needs the rendered
prompts to find its cache keys, yet loading a tokenizer imports transformers (seconds). The memo
keeps every rendered prompt in one JSON file per tokenizer, keyed by a hash of all those inputs, so
a re-run reads the file instead. Any change to a tokenizer file, to transformers or to jinja2 makes
a new key: a stale render is never served. A damaged or unwritable memo only costs speed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..data import Message
from ..specs import ModelSpec
from ..fsutil import sha256_file
from ..memo import JsonMemo, package_version

#: Weight files do not change how text is rendered; every other file in the folder may
#: (tokenizer.json, tokenizer_config.json, chat_template.jinja, vocab/merges, special tokens...).
_WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".gguf", ".h5", ".msgpack", ".ckpt"}
#: A memo past this many prompts starts over rather than growing without bound.
MAX_ENTRIES = 200_000
MEMO_VERSION = 1


def tokenizer_key(folder: Path, trust_remote_code: bool = False) -> str:
    """Hash of what decides how `folder`'s tokenizer renders text (its non-weight files, the
    versions of transformers and jinja2, trust_remote_code)."""
    h = hashlib.sha256(f"ftevals-render-memo\0{MEMO_VERSION}\0{trust_remote_code}\0".encode())
    h.update(f"transformers={package_version('transformers')}\0jinja2={package_version('jinja2')}\0".encode())
    for f in sorted(folder.iterdir()):
        if f.is_file() and f.suffix not in _WEIGHT_SUFFIXES and not f.name.startswith("ftevals-"):
            h.update(f"{f.name}\0{sha256_file(f)}\n".encode())
    return h.hexdigest()


def messages_key(prompt_format: str, messages: Sequence[Message]) -> str:
    body = json.dumps([prompt_format, [m.to_dict() for m in messages]], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(body.encode()).hexdigest()


class RenderMemo:
    """Rendered prompts (and resolved prompt formats) of one tokenizer, in
    `memo_dir/<tokenizer key>.json`. `save()` writes only when something new was rendered."""

    def __init__(self, folder: Path, memo_dir: Path, trust_remote_code: bool = False) -> None:
        self._memo = JsonMemo(memo_dir / f"{tokenizer_key(folder, trust_remote_code)}.json", MAX_ENTRIES)
        self.path = self._memo.path

    def prompt_format(self, requested: str, resolve: Callable[[], str]) -> str:
        """The resolved prompt format; `resolve` runs (and may raise) only when it is not memoised."""
        return self._memo.get(f"format:{requested}", resolve)

    def render(self, prompt_format: str, messages: Sequence[Message], render: Callable[[], str]) -> str:
        return self._memo.get(messages_key(prompt_format, messages), render)

    def save(self) -> None:
        self._memo.save()


class MemoisedRendering:
    """Prompt formats and renders through a `RenderMemo` per base folder, for a backend that renders
    with the base's own tokenizer (`vllm`, `hf`). The backend provides `tokenizer(model)`, `models`
    (name -> resolved model) and `settings.trust_remote_code`, and calls `save_renders()` when a
    plan is complete (prepare) and on close."""

    models: Any
    settings: Any
    #: The backend's own `tokenizer(model)`, which loads the base's tokenizer (only on a memo miss).
    tokenizer: Callable[[ModelSpec], Any]

    def _memo(self, model: ModelSpec) -> RenderMemo:
        memos: dict[str, RenderMemo] = self.__dict__.setdefault("_render_memos", {})
        folder = Path(self.models[model.name].base.path)
        if str(folder) not in memos:
            from ..memo import memo_dir

            memos[str(folder)] = RenderMemo(folder, memo_dir() / "renders", bool(self.settings.trust_remote_code))
        return memos[str(folder)]

    def prompt_format(self, model: ModelSpec, requested: str) -> str:
        from .templates import resolve_prompt_format

        folder = self.models[model.name].base.path
        return self._memo(model).prompt_format(
            requested, lambda: resolve_prompt_format(self.tokenizer(model), requested, folder))

    def render(self, model: ModelSpec, messages: Sequence[Message], prompt_format: str = "chat") -> str:
        from .templates import render_prompt

        return self._memo(model).render(prompt_format, messages,
                                        lambda: render_prompt(self.tokenizer(model), messages, prompt_format))

    def save_renders(self) -> None:
        for memo in self.__dict__.get("_render_memos", {}).values():
            memo.save()


__all__ = ["MAX_ENTRIES", "MemoisedRendering", "RenderMemo", "messages_key", "tokenizer_key"]
