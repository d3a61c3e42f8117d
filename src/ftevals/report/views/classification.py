"""Classification: the most confused pairs, a heat map of the most confused classes, per-class F1.

All of it comes from the metrics' `details` breakdowns (free-form JSON: the shape is the metric's),
hence the defensive readers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..fmt import is_number
from .base import SuiteData, _d, _l, _s

#: How many confused pairs and heat-map classes to show before "and N more".
TOP_PAIRS = 15
HEAT_CLASSES = 12


@dataclass(frozen=True)
class Confusion:
    model: str
    metric: str
    n_labels: int
    unparseable: Any
    pairs: list[tuple[str, str, int]]
    n_pairs: int
    heat_rows: list[str]  # gold labels
    heat_columns: list[str]  # predicted labels (plus "(unparseable)" where the metric counts it)
    heat: list[list[tuple[int, str]]]  # (count, css class) per gold row x predicted column


@dataclass(frozen=True)
class F1Row:
    label: str
    support: Any
    f1: list[Any]
    deltas: list[tuple[Any, str]]  # (delta vs reference, tone) per non-reference model


@dataclass(frozen=True)
class Classification:
    confusions: list[Confusion]
    f1_models: list[str]
    f1_delta_models: list[str]
    f1_rows: list[F1Row]


def _matrix(entry: Mapping[str, Any]) -> tuple[list[str], list[str], list[list[int]]] | None:
    """(gold labels, predicted columns, counts), or None when the shapes do not agree.

    Rows are the gold label and columns the prediction (the scikit-learn convention). The metrics
    add columns beyond the labels (an "(unparseable)" column) and say so in `columns`.
    """
    labels = [_s(x) for x in _l(entry.get("labels"))]
    columns = [_s(x) for x in _l(entry.get("columns"))] or labels
    rows = _l(entry.get("confusion_matrix"))
    if not labels or len(rows) != len(labels) or any(len(_l(r)) != len(columns) for r in rows):
        return None
    return labels, columns, [[int(v) if is_number(v) else 0 for v in r] for r in rows]


def _confusion(model: str, metric: str, entry: Mapping[str, Any]) -> Confusion | None:
    parsed = _matrix(entry)
    if parsed is None:
        return None
    labels, columns, matrix = parsed
    off = [
        (matrix[i][j], i, j)
        for i in range(len(labels))
        for j in range(len(columns))
        if columns[j] != labels[i] and matrix[i][j] > 0
    ]
    off.sort(key=lambda t: (-t[0], t[1], t[2]))
    # How much confusion each class is part of, as gold label or as prediction.
    errors = {label: 0 for label in labels}
    for count, i, j in off:
        errors[labels[i]] += count
        if columns[j] in errors:
            errors[columns[j]] += count
    # The heat map keeps the classes involved in the most confusion: with 77 classes a full matrix
    # is unreadable, and the rest is in the pairs table and per-class F1 anyway.
    ranked = sorted(range(len(labels)), key=lambda k: (-errors[labels[k]], k))
    keep = sorted(ranked[:HEAT_CLASSES])
    col_of = {c: j for j, c in enumerate(columns)}
    heat_cols = [col_of[labels[k]] for k in keep if labels[k] in col_of]
    # Extra columns ("(unparseable)") are shown when the kept classes have any count there.
    heat_cols += [j for j, c in enumerate(columns) if c not in errors and any(matrix[i][j] for i in keep)]
    heat = []
    for i in keep:
        total = sum(matrix[i]) or 1
        heat.append([(matrix[i][j], _heat_css(matrix[i][j], total, columns[j] == labels[i])) for j in heat_cols])
    return Confusion(
        model=model,
        metric=metric,
        n_labels=len(labels),
        unparseable=entry.get("unparseable"),
        pairs=[(labels[i], columns[j], c) for c, i, j in off[:TOP_PAIRS]],
        n_pairs=len(off),
        heat_rows=[labels[k] for k in keep],
        heat_columns=[columns[j] for j in heat_cols],
        heat=heat,
    )


def _heat_css(count: int, row_total: int, diagonal: bool) -> str:
    if count <= 0:
        return ""
    # Five shades of the share of the gold class's examples that land in this cell (row-normalised,
    # so a rare class's confusion is as visible as a frequent one's).
    level = min(5, max(1, math.ceil(5 * count / row_total)))
    return f"{'g' if diagonal else 'h'}{level}"


def classification(data: SuiteData) -> Classification | None:
    """Drawn when any model's details carry a confusion matrix or per-class scores."""
    names, reference, details = data.models, data.reference, data.suite.details
    confusions: list[Confusion] = []
    per_class: dict[str, Mapping[str, Any]] = {}
    for m in names:
        for metric, entry in _d(details.get(m)).items():
            entry = _d(entry)
            if m not in per_class and isinstance(entry.get("per_class"), Mapping):
                per_class[m] = entry["per_class"]
            if "confusion_matrix" in entry and all(c.model != m for c in confusions):
                conf = _confusion(m, _s(metric), entry)
                if conf is not None:
                    confusions.append(conf)
    if not confusions and not per_class:
        return None
    f1_models = [m for m in names if m in per_class]
    labels: list[str] = []
    for m in f1_models:
        labels += [_s(k) for k in per_class[m] if _s(k) not in labels]
    delta_models = [m for m in f1_models if m != reference] if reference in per_class else []
    rows = []
    for label in labels:
        cells = [_d(per_class[m].get(label)) for m in f1_models]
        ref_f1 = _d(per_class.get(reference, {}).get(label)).get("f1")
        deltas = []
        for m in delta_models:
            f1 = _d(per_class[m].get(label)).get("f1")
            d = f1 - ref_f1 if is_number(f1) and is_number(ref_f1) else None
            deltas.append((d, "dn" if d is not None and d < 0 else "up" if d else ""))
        support = next((c.get("support") for c in cells if c.get("support") is not None), None)
        rows.append(F1Row(label, support, [c.get("f1") for c in cells], deltas))
    return Classification(confusions, f1_models, delta_models, rows)


__all__ = ["Classification", "Confusion", "F1Row", "classification"]
