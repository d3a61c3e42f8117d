"""Human ratings (docs/results-schema.md, "Human ratings"; written by ftevals.packets). Every key may
be missing or null; whatever is not recognised is still shown, generically, never dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..fmt import is_number
from .base import Link, SuiteData, _d, _l, _s


@dataclass(frozen=True)
class HumanView:
    title: str
    scale: Any
    header: list[tuple[str, str]]  # packet, part, raters, items, ratings, selection
    stale: str  # non-empty when the ratings were collected on another run
    criteria: list[tuple[str, str]]  # (id, label)
    score_rows: list[tuple[str, list[Mapping[str, Any]]]]
    preferences: list[tuple[str, Mapping[str, Any]]]
    agreement_stats: list[tuple[str, Any, list[Any], Any]]  # (statistic, overall, per criterion, preference)
    agreement_pairs: list[Mapping[str, Any]]
    agreement_raters: list[Mapping[str, Any]]
    agreement_rest: dict[str, Any]
    flag_items: list[tuple[Link | None, Mapping[str, Any]]]
    flag_raters: list[Mapping[str, Any]]
    comments: list[tuple[Link | None, Mapping[str, Any]]]
    rest: dict[str, Any]


def human(data: SuiteData) -> HumanView | None:
    return _human(data.raw.get("human"), data.models, data.run_id, data.anchors)


def _human(h: Any, names: list[str], run_id: str, anchors: Mapping[str, str]) -> HumanView | None:
    if not isinstance(h, Mapping):
        return None
    used = {"schema", "version", "rubric", "reference", "models"}
    rubric = _d(h.get("rubric"))
    criteria = [(_s(c.get("id")), _s(c.get("label") or c.get("id"))) if isinstance(c, Mapping) else (_s(c), _s(c)) for c in _l(rubric.get("criteria") or h.get("criteria"))]
    used.add("criteria")
    scores = _d(h.get("scores"))
    if not criteria:  # no rubric: the criteria are whatever the scores name
        for per_model in scores.values():
            criteria += [(_s(c), _s(c)) for c in _d(per_model) if (_s(c), _s(c)) not in criteria]
    ordered = [m for m in names if m in scores] + [_s(m) for m in scores if m not in names]
    score_rows = [(m, [_cell(_d(scores.get(m)).get(c)) for c, _ in criteria]) for m in ordered]
    preferences = _d(h.get("preferences"))
    prefs = [(m, _d(preferences[m])) for m in [*names, *preferences] if m in preferences]
    prefs = list(dict(prefs).items())  # a model named in both lists once
    agreement = _d(h.get("agreement"))
    stats = [
        (_s(k), v.get("overall"), [_d(v.get("per_criterion")).get(c) for c, _ in criteria], v.get("preference"))
        for k, v in agreement.items()
        if isinstance(v, Mapping) and ("overall" in v or "per_criterion" in v)
    ]
    flags = _d(h.get("flags"))
    flag_items = [(_example_link(f, anchors), f) for f in (_d(x) for x in _l(flags.get("items")))]
    comments = [(_example_link(c, anchors), c) for c in (_d(x) for x in _l(h.get("comments")))]
    used |= {"scores", "preferences", "agreement", "flags", "comments", "source_run"}
    source = _s(h.get("source_run"))
    header_keys = ("packet_id", "part", "raters", "n_items", "n_ratings", "selection")
    used |= set(header_keys)
    return HumanView(
        title=_s(rubric.get("title") or rubric.get("name")),
        scale=rubric.get("scale"),
        header=[(k, _describe(h[k])) for k in header_keys if h.get(k) is not None],
        stale=f"These ratings were collected on run {source}, not on this run ({run_id})." if source and run_id and source != run_id else "",
        criteria=criteria,
        score_rows=[(m, cells) for m, cells in score_rows if any(cells)],
        preferences=prefs,
        agreement_stats=stats,
        agreement_pairs=[_d(x) for x in _l(agreement.get("cohen_kappa"))],
        agreement_raters=[_d(x) for x in _l(agreement.get("raters"))],
        agreement_rest={_s(k): v for k, v in agreement.items() if k not in {"cohen_kappa", "raters"} and not any(k == s[0] for s in stats)},
        flag_items=flag_items,
        flag_raters=[_d(x) for x in _l(flags.get("raters"))],
        comments=comments,
        rest={_s(k): v for k, v in h.items() if k not in used and v is not None},
    )


def _describe(x: Any) -> str:
    """One line for a small value: {"a": 1, "b": {"c": 2}} -> "a 1, b (c 2)"; lists comma-joined."""
    if isinstance(x, Mapping):
        parts = [f"{k} ({_describe(v)})" if isinstance(v, Mapping) else f"{k} {_describe(v)}" for k, v in x.items()]
        return ", ".join(parts)
    if isinstance(x, (list, tuple)):
        return ", ".join(_describe(v) for v in x)
    return _s(x)


def _cell(x: Any) -> Mapping[str, Any]:
    # A score is {"value", "ci_low", "ci_high", ...}; a bare number is accepted as the value.
    return {"value": x} if is_number(x) else _d(x)


def _example_link(entry: Mapping[str, Any], anchors: Mapping[str, str]) -> Link | None:
    example = entry.get("example")
    return Link(_s(example), anchors.get(_s(example))) if example is not None else None


__all__ = ["HumanView", "human"]
