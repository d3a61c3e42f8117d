"""The metric contract and registry.

A metric is a small pure function `fn(predictions, examples, **params) -> Scored` with its metadata
beside it (name, higher-is-better, kind, range). No I/O, no global random state.

`Scored` carries what the comparison stage needs to compute paired statistics:
- `value`: the metric over all examples;
- `per_example`: one float per example (NaN where undefined), used for flips and deltas;
- `aggregate(idx)`: the metric recomputed on a subset / resample of example indices. For metrics
  that are a mean of per-example values this is just the mean; corpus-level metrics (macro-F1)
  recompute from per-example sufficient statistics, so a bootstrap resample costs microseconds.
- `details`: extra, JSON-friendly breakdowns for the report (confusion matrix, per-class F1, JSON
  error kinds, ...).

Kinds: "binary" per-example values are 0/1 (right/wrong): flips and McNemar's test apply.
"continuous" values are real numbers: per-example deltas and the paired bootstrap apply.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..data import Example

MetricKind = Literal["binary", "continuous"]


@dataclass(frozen=True)
class Scored:
    value: float
    per_example: np.ndarray
    aggregate: Callable[[np.ndarray], float] | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def on(self, idx: np.ndarray) -> float:
        """The metric on the examples at `idx` (indices may repeat, as in a bootstrap resample)."""
        if self.aggregate is not None:
            return float(self.aggregate(idx))
        vals = self.per_example[idx]
        vals = vals[~np.isnan(vals)]
        return float(vals.mean()) if vals.size else math.nan

    @staticmethod
    def mean_of(per_example: Sequence[float] | np.ndarray, details: dict[str, Any] | None = None) -> Scored:
        arr = np.asarray(per_example, dtype=float)
        valid = arr[~np.isnan(arr)]
        return Scored(float(valid.mean()) if valid.size else math.nan, arr, None, details or {})


MetricFn = Callable[..., Scored]


@dataclass(frozen=True)
class Metric:
    name: str
    fn: MetricFn
    higher_is_better: bool = True
    kind: MetricKind = "continuous"
    #: Inclusive bounds of the value, documented and used to scale report charts.
    value_range: tuple[float, float] = (0.0, 1.0)
    description: str = ""

    def __call__(self, predictions: Sequence[str], examples: Sequence[Example], **params: Any) -> Scored:
        scored = self.fn(predictions, examples, **params)
        if len(scored.per_example) != len(predictions):
            raise ValueError(
                f"metric {self.name!r} returned {len(scored.per_example)} per-example values for "
                f"{len(predictions)} predictions"
            )
        return scored


_REGISTRY: dict[str, Metric] = {}


def register_metric(
    name: str | None = None,
    *,
    higher_is_better: bool = True,
    kind: MetricKind = "continuous",
    value_range: tuple[float, float] = (0.0, 1.0),
    replace: bool = False,
) -> Callable[[MetricFn], MetricFn]:
    """Decorator that registers a metric function under `name` (default: the function's name).

    Usable in a suite file to add a custom metric::

        @ftevals.register_metric(kind="binary")
        def starts_with_label(predictions, examples):
            return Scored.mean_of([float(p.strip().startswith(e.label)) for p, e in zip(predictions, examples)])
    """

    def decorate(fn: MetricFn) -> MetricFn:
        metric_name = name or fn.__name__
        if metric_name in _REGISTRY and not replace and _REGISTRY[metric_name].fn is not fn:
            raise ConfigError(
                f"a metric named {metric_name!r} is already registered; pick another name or pass replace=True"
            )
        _REGISTRY[metric_name] = Metric(
            metric_name, fn, higher_is_better, kind, value_range, (fn.__doc__ or "").strip().split("\n")[0]
        )
        return fn

    return decorate


def get_metric(name: str) -> Metric:
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"unknown metric {name!r}{hint} (known: {', '.join(sorted(_REGISTRY))}); "
            "register custom ones with @ftevals.register_metric"
        ) from None


def list_metrics() -> list[Metric]:
    _load_builtins()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def _load_builtins() -> None:
    # Importing the modules runs their @register_metric decorators; done lazily so that importing
    # ftevals stays cheap.
    from . import classification, format, text  # noqa: F401


__all__ = ["Metric", "MetricKind", "Scored", "get_metric", "list_metrics", "register_metric"]
