"""The examples browser: every example side by side across models, with a word diff against the
reference model's output and flags (regression, fix, largest drop, malformed output, finish reason).
Every row is rendered (the page works without JavaScript); the filter script reads the data-* attributes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...results import ExampleResult
from ..diff import Segment, changed_words, word_diff
from ..fmt import is_number, num
from .base import SuiteData, _s, _text
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
    names, primary = data.models, data.primary
    idx = {m: i for i, m in enumerate(names)}
    regs: dict[str, dict[int, list[str]]] = {}
    fixes: dict[str, dict[int, list[str]]] = {}
    drops: dict[str, dict[int, list[str]]] = {}
    for c in data.suite.comparisons:
        i = idx.get(c.model)
        if i is None:
            continue
        for x in c.regressions:
            regs.setdefault(x, {}).setdefault(i, []).append(c.metric)
        for x in c.fixes:
            fixes.setdefault(x, {}).setdefault(i, []).append(c.metric)
        for d in c.largest_drops:
            drops.setdefault(d.id, {}).setdefault(i, []).append(f"{c.metric} {num(d.delta)}")
    flags = _Flags(regs, fixes, drops, invalid_outputs(data))
    classification = data.suite.task == "classification"
    rows = [_example(e, f"{data.anchor}-e{j}", data, classification, flags) for j, e in enumerate(data.suite.examples)]
    labels: dict[str, int] = {}
    for r in rows:
        if r.label is not None:
            labels[r.label] = labels.get(r.label, 0) + 1
    counts = {key: sum(1 for r in rows if r.attrs.get(attr)) for key, attr in (("reg", "data-r"), ("fix", "data-f"), ("drop", "data-x"), ("bad", "data-b"))}
    counts["all"] = len(rows)
    kinds = {k for per in flags.invalid.values() for ks in per.values() for k in ks}
    return Examples(
        rows=rows,
        counts=counts,
        labels=sorted(labels.items()),
        models=[(i, m) for i, m in enumerate(names) if i],
        primary=primary.name if primary else None,
        invalid_label=invalid_label(kinds),
    )


@dataclass(frozen=True)
class _Flags:
    """example id -> model index -> what marks it: regressed/fixed/dropped metrics, malformed kinds."""

    regs: Mapping[str, Mapping[int, list[str]]]
    fixes: Mapping[str, Mapping[int, list[str]]]
    drops: Mapping[str, Mapping[int, list[str]]]
    invalid: Mapping[str, Mapping[int, list[str]]]


def _score_text(value: Any, kind: str) -> str:
    if kind == "binary" and value in (0, 1):
        return "1" if value else "0"
    return num(value)


def _example(e: ExampleResult, anchor: str, data: SuiteData, classification: bool, flags: _Flags) -> Example:
    names, metrics, primary = data.models, data.metrics, data.primary
    xid = e.id
    ref_out = e.outputs.get(data.reference)
    ref_text = ref_out.text if ref_out is not None else None
    ref_primary = ref_out.scores.get(primary.name) if ref_out is not None and primary else None
    reg, fix, drop, bad = (f.get(xid, {}) for f in (flags.regs, flags.fixes, flags.drops, flags.invalid))
    views, deltas = [], {}
    for i, m in enumerate(names):
        o = e.outputs.get(m)
        text = o.text if o is not None else ""
        scores = o.scores if o is not None else {}
        segments = None
        if i and ref_text is not None and o is not None:
            diff = word_diff(ref_text, text)
            segments = diff if changed_words(diff) else None
        shown = [(x.name, _score_text(scores.get(x.name), x.kind)) for x in metrics if scores.get(x.name) is not None]
        marks = [("reg", f"regression: {', '.join(reg[i])}")] if i in reg else []
        marks += [("fix", f"fix: {', '.join(fix[i])}")] if i in fix else []
        marks += [("drop", f"largest drop: {', '.join(drop[i])}")] if i in drop else []
        marks += [("bad", ", ".join(bad[i]))] if i in bad else []
        if o is not None and o.finish_reason not in (None, "stop"):
            marks.append(("fin", f"finish: {o.finish_reason}"))
        views.append(Output(i, m, text, segments, shown, marks, o is None))
        mine = scores.get(primary.name) if primary else None
        if i and is_number(mine) and is_number(ref_primary):
            deltas[i] = mine - ref_primary
    label = None
    if classification:
        # The gold label: metadata's when the dataset names one (references may be phrased), else the reference.
        label = _s(e.metadata.get("label") or e.reference) or None
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
        input=e.input,
        reference=_text(e.reference),
        label=label,
        outputs=views,
        attrs={k: v for k, v in attrs.items() if v},
        css=css,
    )


def _ids(flags: Mapping[int, Any]) -> str:
    return " ".join(str(i) for i in sorted(flags))


__all__ = ["Example", "Examples", "Output", "examples"]
