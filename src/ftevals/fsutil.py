"""Small file-system helpers: atomic writes and safe joins.

Results, cache entries and reports are written to a temporary file in the same folder, flushed and
fsynced, then renamed over the target: a killed process leaves either the old file or the new one,
never half of one.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from .errors import ConfigError


def atomic_write_bytes(path: Path, data: bytes, *, durable: bool = True) -> None:
    """`durable=False` skips the fsyncs: for memos (memo.py), which a crash may lose but never tear."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; results and reports are meant to be shared like any file the
        # user writes, so apply the usual mode under the process umask.
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if durable:
        _fsync_dir(path.parent)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _fsync_dir(folder: Path) -> None:
    # The rename is durable only once the directory entry is; ignore filesystems that refuse this.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def safe_join(root: Path, *parts: str) -> Path:
    """Join user-controlled names under `root`, refusing anything that would land outside it."""
    root = Path(root).resolve()
    target = root.joinpath(*parts).resolve()
    if target != root and root not in target.parents:
        raise ConfigError(f"path {'/'.join(parts)!r} would escape the output folder {root}; use a plain name")
    return target


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def display_path(p: Path | str) -> str:
    """A path as the user is shown it: relative to the current folder when under it."""
    try:
        return str(Path(p).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


__all__ = ["atomic_write_bytes", "atomic_write_text", "display_path", "safe_join", "sha256_file"]
