"""On-disk memos of pure, deterministic work, so that a re-run repeats none of it.

A warm re-run (every generation cached) would otherwise spend most of its time re-deriving things
that cannot have changed: validated datasets, contamination checks, rendered prompts, word stems.
Each memo entry is keyed by a hash of *everything* its value depends on: the input files' bytes,
the arguments, and the source of the code that computes it (`code_key`), so an edited dataset or
an upgraded ftevals never reads a stale entry. A missing, damaged or unwritable memo only costs
speed: the work is done again. Entries live under `memo_dir()`, which `FTEVALS_MEMO_DIR` moves
(the benchmarks point it at an empty folder to measure a truly cold run); deleting the folder is
always safe.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .fsutil import atomic_write_bytes


T = TypeVar("T")

#: Bumped when the layout of memo entries changes.
MEMO_VERSION = 1


def memo_dir() -> Path:
    """Where memos live: $FTEVALS_MEMO_DIR, else `<ftevals cache>/memo`."""
    env = os.environ.get("FTEVALS_MEMO_DIR")
    if env:
        return Path(env).expanduser()
    from .models import cache_dir

    return cache_dir() / "memo"


_code_keys: dict[tuple[str, ...], str] = {}


def code_key(*module_files: str) -> str:
    """A hash of the source files that compute a memoised value (pass each module's `__file__`):
    editing the code invalidates what it memoised."""
    if module_files not in _code_keys:
        h = hashlib.sha256(f"ftevals-memo\0{MEMO_VERSION}\0".encode())
        for f in module_files:
            h.update(Path(f).read_bytes())
        _code_keys[module_files] = h.hexdigest()
    return _code_keys[module_files]


def memo_key(*parts: Any) -> str:
    """A hash of JSON-able parts (bytes are hashed as they are)."""
    h = hashlib.sha256()
    for part in parts:
        data = part if isinstance(part, bytes) else json.dumps(part, sort_keys=True, default=str).encode()
        h.update(hashlib.sha256(data).digest())
    return h.hexdigest()


def write_memo(path: Path, data: bytes) -> None:
    """Write a memo file whole or not at all, without the fsync a results file gets: after a crash
    a memo may be lost, never torn, and is rebuilt."""
    atomic_write_bytes(path, data, durable=False)


def package_version(name: str) -> str:
    """An installed distribution's version ("absent" when it is not installed), for memo keys."""
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


class JsonMemo:
    """A str -> str memo kept in one JSON file (rendered prompts, word stems): read once, `get`
    computes what is missing, `save` rewrites the file only when something was added. Past
    `max_entries` it starts over rather than growing without bound."""

    def __init__(self, path: Path, max_entries: int) -> None:
        self.path, self.max_entries = path, max_entries
        self._entries: dict[str, str] = {}
        self._dirty = False
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict) and all(isinstance(v, str) for v in loaded.values()):
                self._entries = loaded
        except (OSError, ValueError):
            pass  # none yet, or a damaged one: compute afresh and rewrite it

    def get(self, key: str, compute: Callable[[], str]) -> str:
        found = self._entries.get(key)
        if found is None:
            if len(self._entries) >= self.max_entries:
                self._entries = {}
            found = self._entries[key] = compute()
            self._dirty = True
        return found

    def save(self) -> None:
        if not self._dirty:
            return
        try:
            write_memo(self.path, json.dumps(self._entries, ensure_ascii=False).encode("utf-8"))
            self._dirty = False
        except OSError:
            pass  # a read-only cache only costs speed


def memoised(kind: str, key: str, compute: Callable[[], T]) -> T:
    """`compute()`, or its value from an earlier run with the same key. Exceptions are not memoised:
    bad input fails, with its full message, every time."""
    path = memo_dir() / kind / f"{key}.pickle"
    try:
        # Only ftevals writes these files, in the user's own cache folder.
        return pickle.loads(path.read_bytes())  # type: ignore[no-any-return]
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError, ValueError):
        pass
    value = compute()
    try:
        write_memo(path, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    except (OSError, pickle.PicklingError, TypeError, AttributeError):
        pass  # a read-only cache, or a value that cannot be stored: only speed is lost
    return value


__all__ = ["MEMO_VERSION", "JsonMemo", "code_key", "memo_dir", "memo_key", "memoised", "package_version", "write_memo"]
