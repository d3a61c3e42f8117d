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


def snapshot_of(folder: str | Path) -> tuple[str, str] | None:
    """`(repo_id, commit)` when `folder` is a snapshot in the hub cache layout
    (`.../models--ORG--NAME/snapshots/<commit>`), else None.

    The folder is read as given first, then through its real path: a link such as
    `~/models/smol -> ~/.cache/huggingface/hub/models--acme--smol/snapshots/<commit>` is a snapshot
    too. Only the folder is resolved, never the files in it (those are links into `blobs/`).
    """
    given = Path(folder).expanduser()
    found = _parse_snapshot(given)
    if found is not None:
        return found
    try:
        return _parse_snapshot(Path(os.path.realpath(given)))
    except (OSError, ValueError):  # a text no path can be (a NUL byte): no snapshot
        return None


def _parse_snapshot(folder: Path) -> tuple[str, str] | None:
    repo, snapshots = folder.parent.parent.name, folder.parent.name
    if snapshots != "snapshots" or not repo.startswith("models--") or not folder.name:
        return None
    # The hub forbids "--" inside an org or repo name, so the cache's "--" is always the separator;
    # a repo without an org (`gpt2`) is `models--gpt2`.
    parts = repo.removeprefix("models--").split("--")
    if not all(parts) or len(parts) > 2:
        return None
    return "/".join(parts), folder.name


def describe_model_folder(folder: str | Path) -> str:
    """A model folder for messages: its path, and `repo_id@commit` when it is a hub cache snapshot."""
    found = snapshot_of(folder)
    return f"{folder} ({found[0]}@{found[1]})" if found else str(folder)


__all__ = ["describe_model_folder", "hub_cache_dir", "looks_like_repo_id", "resolve_repo_id", "snapshot_of"]
