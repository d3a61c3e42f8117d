"""Merging imported ratings into a results file: a copy with `suite["human"]` filled in."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ..errors import ResultsError
from ._common import HumanResults, _check_results


def merge_into_results(
    results: Mapping[str, Any], human: HumanResults, *, allow_other_run: bool = False
) -> dict[str, Any]:
    """A copy of `results` with `suite["human"]` set for every suite the ratings cover.

    Refuses results from another run than the one the packet was built from (its outputs may
    differ from what raters saw) unless `allow_other_run=True`, and results that lack a rated suite
    or example. The input dict is not modified.
    """
    suites = _check_results(results)
    run_id = (results.get("run") or {}).get("id")
    if not allow_other_run and human.source_run is not None and run_id != human.source_run:
        raise ResultsError(
            f"these ratings were made on outputs of run {human.source_run!r}, but the results file is run {run_id!r}; "
            "merge into the results file the packet was built from, or pass allow_other_run=True"
        )
    by_name = {str(s["name"]): i for i, s in enumerate(suites)}
    missing = [name for name in human.suites if name not in by_name]
    if missing:
        raise ResultsError(f"the results file has no suite {', '.join(map(repr, missing))}; it cannot hold these ratings")
    for name in human.suites:
        ids = {str(e.get("id")) for e in suites[by_name[name]].get("examples") or []}
        absent = sorted({r.example for r in human.ratings if r.suite == name} - ids)
        if absent:
            raise ResultsError(
                f"suite {name!r} in the results file lacks rated example(s) {', '.join(absent[:5])}"
                + (" ..." if len(absent) > 5 else "")
            )
    merged = copy.deepcopy(dict(results))
    for name, block in human.suites.items():
        merged["suites"][by_name[name]]["human"] = copy.deepcopy(block)
    return merged
