"""The examples browser: every example side by side across models, with a word diff against the
reference model's output and flags (regression, fix, largest drop, malformed output, finish reason).
Every row is rendered (the page works without JavaScript); the filter script reads the data-* attributes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..diff import Segment, changed_words, word_diff
from ..fmt import is_number, num
from .base import MetricInfo, SuiteData, _d, _l, _s, _text
from .format_errors import invalid_label, invalid_outputs


@dataclass(frozen=True)
class Output:
    idx: int
    model: str
    text: str
    segments: list[Segment] | None  # a diff against the reference output, None for plain text
    scores: list[tuple[str, str]]
    flags: list[tuple[str, str]]  # (css class, label)
    missing: bool


@dataclass(frozen=True)
class Example:
    anchor: str
    id: str
    input: str
    reference: str
    label: str | None
    outputs: list[Output]
    attrs: dict[str, str]  # data-* attributes the filter script reads
    css: str


@dataclass(frozen=True)
class Examples:
    rows: list[Example]
    counts: dict[str, int]
    labels: list[tuple[str, int]]
    models: list[tuple[int, str]]  # non-reference models, for the filter and sort menus
    primary: str | None
    invalid_label: str  # "Invalid JSON" when every malformed output is a JSON problem


def examples(data: SuiteData) -> Examples:
    names, reference, metrics, primary = data.models, data.reference, data.metrics, data.primary
    idx = {m: i for i, m in enumerate(names)}
    regs: dict[str, dict[int, list[str]]] = {}
    fixes: dict[str, dict[int, list[str]]] = {}
    drops: dict[str, dict[int, list[str]]] = {}
    for c in data.comparisons:
        i = idx.get(_s(c.get("model")))
        if i is None:
            continue
        metric = _s(c.get("metric"))
        for x in _l(c.get("regressions")):
            regs.setdefault(_s(x), {}).setdefault(i, []).append(metric)
        for x in _l(c.get("fixes")):
            fixes.setdefault(_s(x), {}).setdefault(i, []).append(metric)
        for d in _l(c.get("largest_drops")):
            d = _d(d)
            drops.setdefault(_s(d.get("id")), {}).setdefault(i, []).append(f"{metric} {num(d.get('delta'))}")
    invalid = invalid_outputs(data)
    classification = data.raw.get("task") == "classification"
    rows = [
        _example(e, f"{data.anchor}-e{j}", names, reference, metrics, primary, classification, regs, fixes, drops, invalid)
        for j, e in enumerate(data.examples)
    ]
    labels: dict[str, int] = {}
    for r in rows:
        if r.label is not None:
            labels[r.label] = labels.get(r.label, 0) + 1
    counts = {key: sum(1 for r in rows if r.attrs.get(attr)) for key, attr in (("reg", "data-r"), ("fix", "data-f"), ("drop", "data-x"), ("bad", "data-b"))}
    counts["all"] = len(rows)
    kinds = {k for per in invalid.values() for ks in per.values() for k in ks}
    return Examples(
        rows=rows,
        counts=counts,
        labels=sorted(labels.items()),
        models=[(i, m) for i, m in enumerate(names) if i],
        primary=primary.name if primary else None,
        invalid_label=invalid_label(kinds),
    )


def _score_text(value: Any, kind: str) -> str:
    if kind == "binary" and value in (0, 1):
        return "1" if value else "0"
    return num(value)


def _example(
    e: Mapping[str, Any],
    anchor: str,
    names: list[str],
    reference: str,
    metrics: list[MetricInfo],
    primary: MetricInfo | None,
    classification: bool,
    regs: Mapping[str, Mapping[int, list[str]]],
    fixes: Mapping[str, Mapping[int, list[str]]],
    drops: Mapping[str, Mapping[int, list[str]]],
    invalid: Mapping[str, Mapping[int, list[str]]],
) -> Example:
    xid = _s(e.get("id"))
    outputs = _d(e.get("outputs"))
    ref_out = outputs.get(reference)
    ref_text = _s(_d(ref_out).get("text")) if isinstance(ref_out, Mapping) else None
    ref_primary = _d(_d(ref_out).get("scores")).get(primary.name) if primary else None
    reg, fix, drop, bad = regs.get(xid, {}), fixes.get(xid, {}), drops.get(xid, {}), invalid.get(xid, {})
    views, deltas = [], {}
    for i, m in enumerate(names):
        o = outputs.get(m)
        missing = not isinstance(o, Mapping)
        o = _d(o)
        text = _s(o.get("text"))
        segments = None
        if i and ref_text is not None and not missing:
            diff = word_diff(ref_text, text)
            segments = diff if changed_words(diff) else None
        scores = _d(o.get("scores"))
        shown = [(x.name, _score_text(scores.get(x.name), x.kind)) for x in metrics if scores.get(x.name) is not None]
        flags = [("reg", f"regression: {', '.join(reg[i])}")] if i in reg else []
        flags += [("fix", f"fix: {', '.join(fix[i])}")] if i in fix else []
        flags += [("drop", f"largest drop: {', '.join(drop[i])}")] if i in drop else []
        flags += [("bad", ", ".join(bad[i]))] if i in bad else []
        finish = o.get("finish_reason")
        if finish not in (None, "stop"):
            flags.append(("fin", f"finish: {finish}"))
        views.append(Output(i, m, text, segments, shown, flags, missing))
        mine = scores.get(primary.name) if primary else None
        if i and is_number(mine) and is_number(ref_primary):
            deltas[i] = mine - ref_primary
    label = None
    if classification:
        label = _s(_d(e.get("metadata")).get("label") or e.get("reference")) or None
    attrs = {
        "data-r": _ids(reg),
        "data-f": _ids(fix),
        "data-x": _ids(drop),
        "data-b": _ids(bad),
        "data-c": label or "",
    }
    # Per-model delta on the primary metric, for "worst first" sorting; `g` keeps it short in the file.
    attrs.update({f"data-d{i}": f"{d:.4g}" for i, d in sorted(deltas.items())})
    css = " ".join(x for x, on in (("reg", reg), ("fix", fix), ("bad", bad)) if on)
    return Example(
        anchor=anchor,
        id=xid,
        input=_s(e.get("input")),
        reference=_text(e.get("reference")),
        label=label,
        outputs=views,
        attrs={k: v for k, v in attrs.items() if v},
        css=css,
    )


def _ids(flags: Mapping[int, Any]) -> str:
    return " ".join(str(i) for i in sorted(flags))


__all__ = ["Example", "Examples", "Output", "examples"]
