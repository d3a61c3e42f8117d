"""Models named the way lm-eval and inspect-ai users name them (`meta-llama/Llama-3.1-8B-Instruct`),
found in the local Hugging Face cache, offline.

The hub cache keeps each repository as `models--ORG--NAME/` with `refs/<branch or tag>` files that
hold a commit hash and `snapshots/<commit>/` folders of files. ftevals reads that layout itself: no
network, no huggingface_hub call that could try one. `ORG/NAME@REVISION` picks a branch, tag or
commit; without it, `main`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import ModelSpecError

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")


def looks_like_repo_id(text: str) -> bool:
    """`org/name` or `org/name@revision`, and not a path written as one (`./x`, `/x`, `~/x`)."""
    return bool(_REPO_ID.match(text)) and not text.startswith((".", "/", "~"))


def hub_cache_dir() -> Path:
    """Where huggingface_hub keeps models: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def resolve_repo_id(text: str) -> Path:
    """The snapshot folder of a cached repository; ModelSpecError with the fetch command when absent."""
    repo_id, _, revision = text.partition("@")
    revision = revision or "main"
    cache = hub_cache_dir()
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    fetch = f"huggingface-cli download {repo_id}" + (f" --revision {revision}" if revision != "main" else "")
    if not repo.is_dir():
        raise ModelSpecError(
            f"model {text!r} is neither a local folder nor in the Hugging Face cache ({cache}); ftevals never "
            f"downloads. Fetch it once where the network is allowed, with: {fetch} (or set HF_HUB_CACHE / HF_HOME "
            "to the cache that holds it)"
        )
    ref = repo / "refs" / revision
    commit = ref.read_text(encoding="utf-8").strip() if ref.is_file() else revision
    snapshot = repo / "snapshots" / commit
    if not snapshot.is_dir():
        known = sorted(p.name for p in (repo / "refs").glob("*")) if (repo / "refs").is_dir() else []
        raise ModelSpecError(
            f"model {text!r}: revision {revision!r} is not in the Hugging Face cache {repo} (cached refs: "
            f"{', '.join(known) or 'none'}); fetch it with: {fetch}"
        )
    return snapshot


__all__ = ["hub_cache_dir", "looks_like_repo_id", "resolve_repo_id"]
