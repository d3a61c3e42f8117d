"""The results file: typed records, its JSON Schema, and one way to read and write it.

    records.py   frozen dataclasses, one per part of the file (the shape)
    codec.py     records <-> JSON and records -> JSON Schema, from the type hints
    io.py        load / save / validate / migrate, provenance, the determinism view (canonical)
    schema.py    generates results.schema.json (shipped; what `load` validates against)

The file is the hinge of the pipeline: everything after generation (report, packets, compare,
re-scoring) reads it and nothing else, so it records where every number came from.
"""

from __future__ import annotations

from .io import (MIGRATIONS, SCHEMA_FILE, VOLATILE_RUN_KEYS, VOLATILE_USAGE_KEYS, canonical, dumps, from_data, git_info, library_versions, load, migrate,
                 new_run_info, read_results, save, utc_now, validate, validate_results, write_results)
from .records import *  # noqa: F403 - the records are this package's public API
from .records import __all__ as _records_all

__all__ = [
    *_records_all,
    "MIGRATIONS", "SCHEMA_FILE", "VOLATILE_RUN_KEYS", "VOLATILE_USAGE_KEYS", "canonical", "dumps", "from_data",
    "git_info", "library_versions", "load", "migrate", "new_run_info", "read_results", "save", "utc_now", "validate",
    "validate_results", "write_results",
]
