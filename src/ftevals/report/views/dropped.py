"""Forgetting: the examples the reference got right that each model now gets wrong (forgetting suites)."""

from __future__ import annotations

from dataclasses import dataclass

from ..fmt import num
from .base import Link, SuiteData, _d, _index, _l, _s, _text


@dataclass(frozen=True)
class DroppedItem:
    link: Link
    input: str
    reference: str
    output: str
    note: str  # the per-example delta, for continuous metrics


@dataclass(frozen=True)
class Dropped:
    model: str
    metric: str
    items: list[DroppedItem]


def dropped(data: SuiteData) -> list[Dropped]:
    """Per model, on the primary metric: its regressions (binary) or largest drops (continuous)."""
    primary, anchors = data.primary, data.anchors
    if data.raw.get("task") != "forgetting" or primary is None:
        return []
    by_id = {_s(e.get("id")): e for e in data.examples}
    out = []
    for c in data.comparisons:
        if c.get("metric") != primary.name:
            continue
        model = _s(c.get("model"))
        if c.get("kind") == "binary" or primary.kind == "binary" or _l(c.get("regressions")):
            lost = [(_s(x), "") for x in _l(c.get("regressions"))]
        else:
            lost = [(_s(_d(x).get("id")), num(_d(x).get("delta"))) for x in _l(c.get("largest_drops"))]
        items = []
        for xid, note in lost:
            e = by_id.get(xid, {})
            output = _s(_d(_d(e.get("outputs")).get(model)).get("text"))
            items.append(DroppedItem(Link(xid, anchors.get(xid)), _s(e.get("input")), _text(e.get("reference")), output, note))
        out.append(Dropped(model, primary.name, items))
    out.sort(key=lambda d: _index(data.models, d.model))
    return out


__all__ = ["Dropped", "DroppedItem", "dropped"]
