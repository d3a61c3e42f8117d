"""Forgetting: the examples the reference got right that each model now gets wrong (forgetting suites)."""

from __future__ import annotations

from dataclasses import dataclass

from ..fmt import num
from .base import Link, SuiteData, _index, _text


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
    suite, primary, anchors = data.suite, data.primary, data.anchors
    if suite.task != "forgetting" or primary is None:
        return []
    by_id = {}
    for e in suite.examples:
        by_id.setdefault(e.id, e)  # an id that repeats: its first row, like the links
    out = []
    for c in suite.comparisons:
        if c.metric != primary.name:
            continue
        if c.kind == "binary" or primary.kind == "binary" or c.regressions:
            lost = [(x, "") for x in c.regressions]
        else:
            lost = [(x.id, num(x.delta)) for x in c.largest_drops]
        items = []
        for xid, note in lost:
            e = by_id.get(xid)
            output = e.outputs.get(c.model) if e is not None else None
            items.append(DroppedItem(
                Link(xid, anchors.get(xid)),
                e.input if e is not None else "",
                _text(e.reference) if e is not None else "",
                output.text if output is not None else "",
                note,
            ))
        out.append(Dropped(c.model, primary.name, items))
    out.sort(key=lambda d: _index(data.models, d.model))
    return out


__all__ = ["Dropped", "DroppedItem", "dropped"]
