"""Content-addressed generation cache, persistent on disk and safe for several processes.

The key is a hash of everything that can change a generation and nothing that cannot:

- backend identity (name, dtype, parallelism, server URL...): different numerics, different text;
- base weights fingerprint: a retrained or re-converted base is a different model;
- adapter fingerprint: the whole point of the tool is that adapters change outputs;
- the rendered prompt (chat template applied, or raw text in completion mode): what the model reads,
  and for completion mode the prompt format itself, so a raw prompt never shares a chat prompt's key;
- sampling parameters and seed: greedy vs sampled, max tokens, stop strings.

Timeouts, concurrency, batch size and progress settings are deliberately left out: they change how
fast an answer arrives, not what it is.

Storage is one SQLite file in WAL mode: each batch of entries is committed in one transaction, so a
killed process leaves every finished batch intact and never a torn entry; concurrent readers and
writers are serialised by SQLite's own locking. Runs that share a cache claim chunks of requests
(`claims`, claims.py): each chunk is generated once, and two runs progress side by side.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from .claims import Claims

from .backends.base import Generation
from .errors import CacheError

CacheMode = Literal["use", "refresh", "off"]
CACHE_FORMAT = 1


def cache_key(
    *,
    backend: Mapping[str, Any],
    base_fingerprint: str,
    adapter_fingerprint: str | None,
    prompt: str,
    sampling: Mapping[str, Any],
    prompt_format: str = "chat",
) -> str:
    """The cache key of one generation: sha256 over everything that can change its text.

    Callers pass the backend's `identity()`, which by contract leaves out timeouts, concurrency and
    batch sizes; the chunk size of `run_generation` never reaches this function.
    """
    payload = {
        # A new storage layout or key recipe must not read entries written by the old one.
        "format": CACHE_FORMAT,
        # Backend name, dtype, parallelism, server URL, predictions file hash: different numerics.
        "backend": dict(backend),
        # Weights, not names: a retrained base under the same path is a different model.
        "base": base_fingerprint,
        # The adapter's weights; None (the base alone) is its own key.
        "adapter": adapter_fingerprint,
        # The rendered prompt (chat template applied, or raw text; few-shot examples included): what the model reads.
        "prompt": prompt,
        # max_tokens, temperature, top_p, stop and seed: the same prompt sampled differently.
        "sampling": dict(sampling),
    }
    if prompt_format != "chat":
        # Raw text that happens to equal a rendered chat prompt is still another request. Chat keys
        # leave the field out, so that they stay what they were before completion mode existed.
        payload["prompt_format"] = prompt_format
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class GenerationCache:
    """get_many / put_many over a SQLite file. `mode`: use (read+write), refresh (write only), off."""

    def __init__(self, folder: str | Path, mode: CacheMode = "use") -> None:
        if mode not in ("use", "refresh", "off"):
            raise CacheError(f"unknown cache mode {mode!r}; expected use, refresh or off")
        self.folder = Path(folder)
        self.mode = mode
        self._conn: sqlite3.Connection | None = None

    @property
    def path(self) -> Path:
        return self.folder / "generations.sqlite"

    def _db(self) -> sqlite3.Connection:
        # Two runs opening a new cache at the same moment: switching it to WAL can report "database
        # is locked" at once, without waiting on the busy timeout. That is a turn to wait, not an error.
        deadline = time.monotonic() + 60.0
        while True:
            try:
                return self._open()
            except CacheError as exc:
                if not ("locked" in str(exc) or "busy" in str(exc)) or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            conn: sqlite3.Connection | None = None
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                # FULL: an entry acknowledged as written survives power loss, not just a killed process.
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS generations ("
                    " key TEXT PRIMARY KEY, model TEXT NOT NULL, created REAL NOT NULL, payload TEXT NOT NULL)"
                )
                result = conn.execute("PRAGMA quick_check").fetchone()
                if result is None or result[0] != "ok":
                    raise sqlite3.DatabaseError(f"integrity check failed: {result[0] if result else 'no answer'}")
            except (sqlite3.DatabaseError, OSError) as exc:
                if conn is not None:
                    conn.close()
                raise self._error("cannot open", exc) from None
            self._conn = conn
        return self._conn

    def _error(self, doing: str, exc: BaseException) -> CacheError:
        """One message for every way the cache file can be unusable: which file, what, and the fix."""
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return CacheError(
            f"{doing} the generation cache {self.path}: {reason}. The file holds only cached generations: "
            "delete it (with its -wal and -shm files) to start a fresh cache, choose another folder with "
            "--ftevals-cache-dir, or run without a cache (--ftevals-cache off)"
        )

    def get_many(self, keys: Iterable[str]) -> dict[str, Generation]:
        if self.mode != "use":
            return {}
        wanted = list(dict.fromkeys(keys))
        found: dict[str, Generation] = {}
        db = self._db()
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            try:
                rows = db.execute(f"SELECT key, payload FROM generations WHERE key IN ({marks})", chunk).fetchall()
            except sqlite3.DatabaseError as exc:
                raise self._error("cannot read", exc) from None
            for key, payload in rows:
                try:
                    found[key] = Generation.from_dict(json.loads(payload))
                except (ValueError, KeyError, TypeError):
                    continue  # an unreadable entry is a miss, regenerated and overwritten
        return found

    def put_many(self, entries: Mapping[str, tuple[str, Generation]]) -> None:
        """Store {key: (model name, generation)} in one transaction: all of the batch or none."""
        if self.mode == "off" or not entries:
            return
        db = self._db()
        now = time.time()
        rows = [(k, model, now, json.dumps(g.to_dict(), ensure_ascii=False)) for k, (model, g) in entries.items()]
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT OR REPLACE INTO generations(key, model, created, payload) VALUES (?,?,?,?)", rows)
            db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            try:
                db.execute("ROLLBACK")
            except sqlite3.DatabaseError:
                pass
            raise self._error("cannot write to", exc) from None

    def count(self) -> int:
        """How many generations the cache holds (for tests and `ftevals` diagnostics)."""
        try:
            return int(self._db().execute("SELECT COUNT(*) FROM generations").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            raise self._error("cannot read", exc) from None

    def claims(self) -> Claims | None:
        """Per-chunk claims, so that runs sharing this cache generate each chunk once and side by
        side (claims.py); None with the cache off (nothing is shared)."""
        if self.mode == "off":
            return None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._error("cannot create", exc) from None
        return Claims(self.folder / "claims")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


__all__ = ["CacheMode", "GenerationCache", "cache_key"]
