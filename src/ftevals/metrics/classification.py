"""Classification metrics: accuracy and macro / micro / weighted F1 over normalised labels.

A prediction is matched to a label after `normalize_label` (first line, lower-case, surrounding
punctuation and quotes removed, runs of spaces / hyphens / underscores made one underscore), so
"Card arrival." and "card-arrival" both mean `card_arrival`. The known labels are
`params["labels"]` when given (the suite's label file), else the gold labels of the examples. A
prediction that matches no known label is *unparseable*: wrong for accuracy, and a miss for recall.

The gold label is `example.label` (metadata "label", else the reference).

F1 averaging follows scikit-learn's `f1_score(y_true, y_pred, labels=G, zero_division=0)` where G
is the set of labels that occur in the *gold* labels of the examples being scored (the whole set,
or one bootstrap resample). Consequences worth knowing:
- macro-F1 is the unweighted mean of per-class F1 over G; a label the model predicts but that never
  occurs in the gold set does not add a class (its predictions still cost recall of the true class);
- micro-F1 counts predictions of labels outside G, including unparseable ones, as misses for recall
  but not as false positives, so it can exceed accuracy when the model emits such labels;
- weighted-F1 weights each class in G by its gold support.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..errors import ConfigError
from ._common import as_text, check_aligned
from .base import Scored
from .registry import register_metric

if TYPE_CHECKING:
    from ..data import Example

UNPARSEABLE = "(unparseable)"

# Typographic quotes and backticks are common wrappers in chat-model answers ("`card_arrival`").
_EDGE_CHARS = string.whitespace + string.punctuation + "\u2018\u2019\u201c\u201d\u00ab\u00bb\u00b4"
_SEPARATORS = re.compile(r"[\s\-_]+")

Average = Literal["macro", "micro", "weighted"]


def normalize_label(text: str) -> str:
    """The comparable form of a label: first non-blank line, lower-cased, surrounding punctuation and
    quotes stripped, runs of whitespace, hyphens and underscores joined into one underscore."""
    lines = text.strip().splitlines()
    first = lines[0] if lines else ""
    return _SEPARATORS.sub("_", first.lower().strip(_EDGE_CHARS))


@dataclass(frozen=True)
class _Encoded:
    """Labels as integer codes: `labels[gold[i]]` is example i's gold label; pred is -1 when unparseable."""

    labels: tuple[str, ...]
    gold: np.ndarray
    pred: np.ndarray


def _label_index(labels: Sequence[str]) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, label in enumerate(labels):
        key = normalize_label(label)
        if not key:
            raise ConfigError(f"label {label!r} is empty after normalisation; labels need a letter or digit")
        if key in index:
            raise ConfigError(
                f"labels {labels[index[key]]!r} and {label!r} both normalise to {key!r}, so predictions "
                "cannot tell them apart; rename one of them"
            )
        index[key] = i
    return index


def _encode(predictions: Sequence[str], examples: Sequence[Example], labels: Sequence[str] | None, metric: str) -> _Encoded:
    check_aligned(predictions, examples, metric)
    if isinstance(labels, str):
        raise ConfigError(f"metric {metric!r}: labels must be a list of label strings, got the string {labels!r}")
    universe = tuple(sorted({str(x) for x in labels} if labels is not None else {ex.label for ex in examples}))
    index = _label_index(universe)
    gold = np.empty(len(examples), dtype=np.intp)
    for i, ex in enumerate(examples):
        code = index.get(normalize_label(ex.label))
        if code is None:
            raise ConfigError(
                f"example {ex.id!r} has gold label {ex.label!r}, which is not in the {len(universe)} given labels; "
                "add it to the suite's labels or fix the dataset"
            )
        gold[i] = code
    pred = np.fromiter((index.get(normalize_label(as_text(p)), -1) for p in predictions), dtype=np.intp, count=len(predictions))
    return _Encoded(universe, gold, pred)


def _f1_aggregator(enc: _Encoded, average: Average) -> Callable[[np.ndarray], float]:
    """F1 of a subset of examples from per-example codes; cheap enough for thousands of resamples."""
    k = len(enc.labels)
    gold = enc.gold
    # Unparseable predictions get code k: counted nowhere among the real labels.
    pred = np.where(enc.pred >= 0, enc.pred, k)
    hit = gold == pred

    def aggregate(idx: np.ndarray) -> float:
        idx = np.asarray(idx, dtype=np.intp)
        if idx.size == 0:
            return math.nan
        g = gold[idx]
        support = np.bincount(g, minlength=k)
        predicted = np.bincount(pred[idx], minlength=k + 1)[:k]
        tp = np.bincount(g[hit[idx]], minlength=k)
        present = support > 0
        if average == "micro":
            denom = support[present].sum() + predicted[present].sum()
            return float(2 * tp[present].sum() / denom)
        tp, support, predicted = tp[present], support[present], predicted[present]
        # support > 0 for every class kept, so the denominator is never 0.
        f1 = 2 * tp / (support + predicted)
        if average == "macro":
            return float(f1.mean())
        return float((f1 * support).sum() / support.sum())

    return aggregate


def _f1_rows(enc: _Encoded, average: Average) -> Callable[[np.ndarray], np.ndarray]:
    """`_f1_aggregator` on each row of a (rows, n) index matrix at once: one bincount over all rows,
    each row's codes offset into a block of its own."""
    k = len(enc.labels)
    gold = enc.gold
    pred = np.where(enc.pred >= 0, enc.pred, k)
    hit = gold == pred

    def aggregate_rows(idx: np.ndarray) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.intp)
        rows = idx.shape[0]
        if idx.shape[1] == 0:
            return np.full(rows, math.nan)
        offset = (np.arange(rows, dtype=np.intp) * (k + 1))[:, None]
        g, p = gold[idx] + offset, pred[idx] + offset
        size = rows * (k + 1)
        support = np.bincount(g.ravel(), minlength=size).reshape(rows, k + 1)[:, :k]
        predicted = np.bincount(p.ravel(), minlength=size).reshape(rows, k + 1)[:, :k]
        tp = np.bincount(g[hit[idx]], minlength=size).reshape(rows, k + 1)[:, :k]
        present = support > 0
        if average == "micro":
            denom = np.where(present, support + predicted, 0).sum(axis=1)
            return 2 * np.where(present, tp, 0).sum(axis=1) / denom
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(present, 2 * tp / np.maximum(support + predicted, 1), 0.0)
        if average == "macro":
            return f1.sum(axis=1) / present.sum(axis=1)
        return (f1 * support).sum(axis=1) / support.sum(axis=1)

    return aggregate_rows


def _details(enc: _Encoded) -> dict[str, Any]:
    """Confusion matrix and per-class scores over the labels that occur in gold or predictions."""
    k = len(enc.labels)
    pred = np.where(enc.pred >= 0, enc.pred, k)
    matrix = np.bincount(enc.gold * (k + 1) + pred, minlength=k * (k + 1)).reshape(k, k + 1)
    shown = np.union1d(enc.gold, enc.pred[enc.pred >= 0]).astype(np.intp)
    per_class: dict[str, dict[str, float | int]] = {}
    for c in shown:
        tp, support, predicted = int(matrix[c, c]), int(matrix[c].sum()), int(matrix[:k, c].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * tp / (support + predicted) if support + predicted else 0.0
        per_class[enc.labels[c]] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    return {
        "labels": [enc.labels[c] for c in shown],
        "columns": [enc.labels[c] for c in shown] + [UNPARSEABLE],
        # Rows: gold label; columns: predicted label, then the count of unparseable predictions.
        "confusion_matrix": matrix[np.ix_(shown, np.append(shown, k))].tolist(),
        "per_class": per_class,
        "unparseable": int((enc.pred < 0).sum()),
        "n": len(enc.gold),
    }


def _f1_scored(enc: _Encoded, average: Average) -> Scored:
    aggregate = _f1_aggregator(enc, average)
    value = aggregate(np.arange(len(enc.gold)))
    # Per-example F1 is undefined; correctness per example is the accuracy metric.
    return Scored(value, np.full(len(enc.gold), math.nan), aggregate, _details(enc),
                  aggregate_rows=_f1_rows(enc, average))


@register_metric("accuracy", higher_is_better=True, kind="binary", value_range=(0.0, 1.0))
def accuracy(predictions: Sequence[str], examples: Sequence[Example], *, labels: Sequence[str] | None = None, **_: Any) -> Scored:
    """Share of predictions whose normalised label equals the gold label, in [0, 1]; unparseable is wrong."""
    enc = _encode(predictions, examples, labels, "accuracy")
    return Scored.mean_of((enc.pred == enc.gold).astype(float), _details(enc))


@register_metric("macro_f1", higher_is_better=True, kind="continuous", value_range=(0.0, 1.0))
def macro_f1(predictions: Sequence[str], examples: Sequence[Example], *, labels: Sequence[str] | None = None, **_: Any) -> Scored:
    """Unweighted mean of per-class F1 over the labels present in the gold set, in [0, 1]."""
    return _f1_scored(_encode(predictions, examples, labels, "macro_f1"), "macro")


@register_metric("micro_f1", higher_is_better=True, kind="continuous", value_range=(0.0, 1.0))
def micro_f1(predictions: Sequence[str], examples: Sequence[Example], *, labels: Sequence[str] | None = None, **_: Any) -> Scored:
    """F1 of the pooled counts over the labels present in the gold set, in [0, 1]."""
    return _f1_scored(_encode(predictions, examples, labels, "micro_f1"), "micro")


@register_metric("weighted_f1", higher_is_better=True, kind="continuous", value_range=(0.0, 1.0))
def weighted_f1(predictions: Sequence[str], examples: Sequence[Example], *, labels: Sequence[str] | None = None, **_: Any) -> Scored:
    """Mean of per-class F1 weighted by gold support, over the labels present in the gold set, in [0, 1]."""
    return _f1_scored(_encode(predictions, examples, labels, "weighted_f1"), "weighted")


__all__ = ["UNPARSEABLE", "accuracy", "macro_f1", "micro_f1", "normalize_label", "weighted_f1"]
