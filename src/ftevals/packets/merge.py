"""Merging imported ratings into the results: a copy whose rated suites carry a `HumanRatings`."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any

from ..errors import ResultsError
from ..results import HumanRatings, Results, SuiteResult
from ..results.codec import RecordError
from ._common import HumanResults, _as_results


def merge_into_results(
    results: Results | Mapping[str, Any], human: HumanResults, *, allow_other_run: bool = False
) -> Results:
    """A copy of `results` with `human` set on every suite the ratings cover (save it with `save`).

    Refuses results from another run than the one the packet was built from (its outputs may
    differ from what raters saw) unless `allow_other_run=True`, and results that lack a rated suite
    or example. `results` (a record or the dict of a results file) is not modified.
    """
    records = _as_results(results)
    run_id = records.run.id
    if not allow_other_run and human.source_run is not None and run_id != human.source_run:
        raise ResultsError(
            f"these ratings were made on outputs of run {human.source_run!r}, but the results file is run {run_id!r}; "
            "merge into the results file the packet was built from, or pass allow_other_run=True"
        )
    by_name = {s.name: s for s in records.suites}
    missing = [name for name in human.suites if name not in by_name]
    if missing:
        raise ResultsError(f"the results file has no suite {', '.join(map(repr, missing))}; it cannot hold these ratings")
    for name in human.suites:
        ids = {e.id for e in by_name[name].examples}
        absent = sorted({r.example for r in human.ratings if r.suite == name} - ids)
        if absent:
            raise ResultsError(
                f"suite {name!r} in the results file lacks rated example(s) {', '.join(absent[:5])}"
                + (" ..." if len(absent) > 5 else "")
            )
    return dataclasses.replace(records, suites=tuple(_with_human(s, human) for s in records.suites))


def _with_human(suite: SuiteResult, human: HumanResults) -> SuiteResult:
    block = human.suites.get(suite.name)
    if block is None:
        return suite  # not rated in this packet: keeps whatever it had
    try:
        # A deep copy: Json parts are kept as given, and the record must not share dicts that the
        # caller may still change through `human`.
        ratings = HumanRatings.from_dict(copy.deepcopy(block))
    except RecordError as exc:  # stats.py and HumanRatings describe one shape; kept as a guard
        raise ResultsError(f"suite {suite.name!r}: the ratings block does not fit the results file ({exc})") from None
    return dataclasses.replace(suite, human=ratings)
