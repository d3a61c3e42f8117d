"""Human ratings (docs/results-schema.md, "Human ratings"; written by ftevals.packets).

The record's header (packet, part, raters, counts) is typed; the statistical blocks (scores,
preferences, agreement, flags, comments) keep the shape packets/stats.py gives them, which varies
with the rubric's criteria and the raters, so they are read defensively. Whatever is not recognised
is still shown, generically, never dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...results import HumanRatings
from ..fmt import is_number
from .base import Link, SuiteData, _d, _l, _s


@dataclass(frozen=True)
class HumanCell:
    """One model's rating on one criterion: value, CI and how many ratings (any may be missing)."""

    value: Any
    ci_low: Any = None
    ci_high: Any = None
    n: Any = None


_EMPTY = HumanCell(None)


@dataclass(frozen=True)
class HumanView:
    title: str
    scale: Any
    header: list[tuple[str, str]]  # packet, part, raters, items, ratings, selection
    stale: str  # non-empty when the ratings were collected on another run
    criteria: list[tuple[str, str]]  # (id, label)
    score_rows: list[tuple[str, list[HumanCell]]]
    preferences: list[tuple[str, Mapping[str, Any]]]
    agreement_stats: list[tuple[str, Any, list[Any], Any]]  # (statistic, overall, per criterion, preference)
    agreement_pairs: list[Mapping[str, Any]]
    agreement_raters: list[Mapping[str, Any]]
    agreement_rest: dict[str, Any]
    flag_items: list[tuple[Link | None, Mapping[str, Any]]]
    flag_raters: list[Mapping[str, Any]]
    comments: list[tuple[Link | None, Mapping[str, Any]]]
    rest: dict[str, Any]


#: The header line, in this order (fields of HumanRatings).
_HEADER = ("packet_id", "part", "raters", "n_items", "n_ratings", "selection")


def human(data: SuiteData) -> HumanView | None:
    h = data.suite.human
    return _human(h, data.models, data.run_id, data.anchors) if h is not None else None


def _human(h: HumanRatings, names: list[str], run_id: str, anchors: Mapping[str, str]) -> HumanView:
    rubric = h.rubric
    criteria = [(_s(c.get("id")), _s(c.get("label") or c.get("id"))) if isinstance(c, Mapping) else (_s(c), _s(c))
                for c in _l(rubric.get("criteria"))]
    scores = h.scores
    if not criteria:  # no rubric: the criteria are whatever the scores name
        for per_model in scores.values():
            criteria += [(_s(c), _s(c)) for c in _d(per_model) if (_s(c), _s(c)) not in criteria]
    ordered = [m for m in names if m in scores] + [m for m in scores if m not in names]
    score_rows = []
    for m in ordered:
        cells = [_cell(_d(scores.get(m)).get(c)) for c, _ in criteria]
        if any(cells):  # a model without a single rating is left out
            score_rows.append((m, [c or _EMPTY for c in cells]))
    preferences = h.preferences
    prefs = [(m, _d(preferences[m])) for m in [*names, *preferences] if m in preferences]
    prefs = list(dict(prefs).items())  # a model named in both lists once
    agreement = h.agreement
    stats = [
        (k, v.get("overall"), [_d(v.get("per_criterion")).get(c) for c, _ in criteria], v.get("preference"))
        for k, v in agreement.items()
        if isinstance(v, Mapping) and ("overall" in v or "per_criterion" in v)
    ]
    flags = h.flags
    flag_items = [(_example_link(f, anchors), f) for f in (_d(x) for x in _l(flags.get("items")))]
    comments = [(_example_link(c, anchors), c) for c in (_d(x) for x in h.comments)]
    source = h.source_run or ""
    header = [(k, _describe(v)) for k in _HEADER if (v := getattr(h, k)) is not None]
    return HumanView(
        title=_s(rubric.get("title") or rubric.get("name")),
        scale=rubric.get("scale"),
        header=header,
        stale=f"These ratings were collected on run {source}, not on this run ({run_id})." if source and run_id and source != run_id else "",
        criteria=criteria,
        score_rows=score_rows,
        preferences=prefs,
        agreement_stats=stats,
        agreement_pairs=[_d(x) for x in _l(agreement.get("cohen_kappa"))],
        agreement_raters=[_d(x) for x in _l(agreement.get("raters"))],
        agreement_rest={k: v for k, v in agreement.items() if k not in {"cohen_kappa", "raters"} and not any(k == s[0] for s in stats)},
        flag_items=flag_items,
        flag_raters=[_d(x) for x in _l(flags.get("raters"))],
        comments=comments,
        # The parts without a layout of their own (how the statistics were made), shown as they are.
        rest={"methods": h.methods} if h.methods else {},
    )


def _describe(x: Any) -> str:
    """One line for a small value: {"a": 1, "b": {"c": 2}} -> "a 1, b (c 2)"; lists comma-joined."""
    if isinstance(x, Mapping):
        parts = [f"{k} ({_describe(v)})" if isinstance(v, Mapping) else f"{k} {_describe(v)}" for k, v in x.items()]
        return ", ".join(parts)
    if isinstance(x, (list, tuple)):
        return ", ".join(_describe(v) for v in x)
    return _s(x)


def _cell(x: Any) -> HumanCell | None:
    # A score is {"value", "ci_low", "ci_high", "n_ratings", ...}; a bare number is accepted as the value.
    if is_number(x):
        return HumanCell(x)
    if not isinstance(x, Mapping) or not x:
        return None
    return HumanCell(x.get("value"), x.get("ci_low"), x.get("ci_high"), x.get("n_ratings", x.get("n")))


def _example_link(entry: Mapping[str, Any], anchors: Mapping[str, str]) -> Link | None:
    example = entry.get("example")
    return Link(_s(example), anchors.get(_s(example))) if example is not None else None


__all__ = ["HumanCell", "HumanView", "human"]
