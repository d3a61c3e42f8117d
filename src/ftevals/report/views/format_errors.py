"""Format errors: metrics that classify failures (JSON validity, schema checks, field matching,
lengths, ...) by kind, with the first example ids of each kind; and which outputs are malformed, for
the examples browser's "Invalid JSON" filter.

What each kind means belongs to the metrics (ftevals.metrics.format); this module only sorts them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...metrics.format import INVALID_KINDS, JSON_KINDS
from ...results import MetricInfo, ScoreSummary
from ..fmt import is_number
from .base import Link, SuiteData, _d, _index, _l, _s

#: How many example ids to show per cell before "and N more".
IDS_PER_CELL = 12
_ERROR_KEYS = frozenset({"error_kinds", "examples", "n"})


@dataclass(frozen=True)
class ErrorKind:
    kind: str
    cells: list[tuple[Any, list[Link], int]]  # (count, first ids, how many more) per model


@dataclass(frozen=True)
class ErrorView:
    metric: str
    models: list[str]
    scores: list[ScoreSummary]  # the metric's score per model (NO_SCORE when missing)
    kinds: list[ErrorKind]
    extras: list[tuple[str, list[Any]]]  # further breakdowns (schema_errors, missing, per_field) per model


def format_errors(data: SuiteData) -> list[ErrorView]:
    """One table body per metric that classifies failures."""
    return [_error_view(data, m) for m in error_metrics(data.suite.details, data.metrics)]


def error_metrics(details: Mapping[str, Mapping[str, Any]], metrics: Sequence[MetricInfo]) -> list[str]:
    """Metrics whose details classify failures (`error_kinds`), in the suite's metric order."""
    found: list[str] = []
    for per_model in details.values():
        for metric, entry in _d(per_model).items():
            if isinstance(_d(entry).get("error_kinds"), Mapping) and metric not in found:
                found.append(metric)
    order = [m.name for m in metrics]
    return sorted(found, key=lambda m: _index(order, m))


def _error_view(data: SuiteData, metric: str) -> ErrorView:
    names, anchors = data.models, data.anchors
    # The breakdowns are the metric's own JSON (ftevals.metrics.format documents them), read defensively.
    entries = {m: _d(_d(data.suite.details.get(m)).get(metric)) for m in names}
    counts = {m: _d(e.get("error_kinds")) for m, e in entries.items()}
    kinds: list[str] = []
    for c in counts.values():
        kinds += [_s(k) for k in c if _s(k) not in kinds]
    totals = {k: sum(v for c in counts.values() if is_number(v := c.get(k))) for k in kinds}
    # Kinds nobody hit are noise (metrics list every kind they know, with zeros).
    kinds = sorted((k for k in kinds if totals[k]), key=lambda k: -totals[k])
    rows = []
    for kind in kinds:
        cells = []
        for m in names:
            ids = [_s(x) for x in _l(_d(entries[m].get("examples")).get(kind))]
            count = counts[m].get(kind)
            shown = ids[:IDS_PER_CELL]
            # The metrics keep only the first ids of each kind; the count is the true total.
            more = max(count if is_number(count) else 0, len(ids)) - len(shown)
            cells.append((count, [Link(x, anchors.get(x)) for x in shown], max(0, int(more))))
        rows.append(ErrorKind(kind, cells))
    extra_keys: list[str] = []
    for e in entries.values():
        extra_keys += [_s(k) for k in e if k not in _ERROR_KEYS and _s(k) not in extra_keys]
    extras = [(k, [entries[m].get(k) for m in names]) for k in extra_keys]
    return ErrorView(metric, names, [data.score(m, metric) for m in names], rows, extras)


def invalid_outputs(data: SuiteData) -> dict[str, dict[int, list[str]]]:
    """example id -> model index -> the kinds of malformed output it has (e.g. ["not_json"])."""
    details, examples = data.suite.details, data.suite.examples
    checked = error_metrics(details, data.metrics)
    found: dict[str, dict[int, set[str]]] = {}
    for i, m in enumerate(data.models):
        for metric in checked:
            entry = _d(_d(details.get(m)).get(metric))
            for kind, ids in _d(entry.get("examples")).items():
                if kind in INVALID_KINDS:
                    for x in _l(ids):
                        found.setdefault(_s(x), {}).setdefault(i, set()).add(_s(kind))
            # The metrics list only the first ids of each kind. When every failure of a metric is
            # malformed output of a single kind, its zero per-example scores name the rest.
            hit = {_s(k): v for k, v in _d(entry.get("error_kinds")).items() if is_number(v) and v > 0}
            if len(hit) != 1 or not set(hit) <= INVALID_KINDS:
                continue
            zeros = [e for e in examples if (o := e.outputs.get(m)) is not None and o.scores.get(metric) == 0]
            if len(zeros) == next(iter(hit.values())):
                for e in zeros:
                    found.setdefault(e.id, {}).setdefault(i, set()).update(hit)
    return {x: {i: sorted(kinds) for i, kinds in per.items()} for x, per in found.items()}


def invalid_label(kinds: set[str]) -> str:
    """The filter's name for malformed outputs of these kinds."""
    return "Invalid JSON" if kinds <= JSON_KINDS else "Invalid output"


__all__ = ["ErrorKind", "ErrorView", "error_metrics", "format_errors", "invalid_label", "invalid_outputs"]
