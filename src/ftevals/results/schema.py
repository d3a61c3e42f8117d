"""The JSON Schema of the results file, generated from the records.

    python -m ftevals.results.schema            # rewrite results.schema.json beside this file
    python -m ftevals.results.schema --check    # exit 1 if the shipped file is out of date

The shipped file is what `load` validates against and what other tools may use; a test checks it
equals what the records generate, so the two cannot drift.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from .codec import json_schema
from .io import SCHEMA_FILE
from .records import SCHEMA, SCHEMA_VERSION, Results


def results_schema() -> dict[str, Any]:
    return json_schema(
        Results,
        schema_id=f"https://ftevals.dev/schemas/results-v{SCHEMA_VERSION}.schema.json",
        title=f"ftevals results file ({SCHEMA}, version {SCHEMA_VERSION})",
        description="Written by ftevals at the end of a run; see docs/results-schema.md. Generated from "
                    "ftevals.results.records: do not edit by hand.",
    )


def schema_text() -> str:
    return json.dumps(results_schema(), indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = schema_text()
    if "--check" in args:
        current = SCHEMA_FILE.read_text(encoding="utf-8") if SCHEMA_FILE.exists() else ""
        if current != text:
            print(f"{SCHEMA_FILE} is out of date; run: python -m ftevals.results.schema", file=sys.stderr)
            return 1
        return 0
    SCHEMA_FILE.write_text(text, encoding="utf-8")
    print(f"wrote {SCHEMA_FILE}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
