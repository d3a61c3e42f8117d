"""The metric contract: `Scored` (what a metric returns) and `Metric` (a function with its metadata).

A metric is a small pure function `fn(predictions, examples, **params) -> Scored` with its metadata
beside it (name, higher-is-better, kind, range). No I/O, no global random state. The table of
metrics by name is `registry`; this module knows no metric.

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

Parameters are passed by signature: a metric gets a keyword only if its function declares it (a
function with `**kwargs` gets every one). The suite-wide context in `CONTEXT_PARAMS` is offered to
every metric and silently withheld from those that do not declare it; any other parameter a
metric does not take is a `ConfigError`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..errors import ConfigError, MetricError

if TYPE_CHECKING:
    from ..data import Example

MetricKind = Literal["binary", "continuous"]

#: Parameters the harness offers every metric from the suite itself rather than from the suite's
#: `metric_params` (the label set); a metric that does not declare one does not get it.
CONTEXT_PARAMS = frozenset({"labels"})


@dataclass(frozen=True)
class Scored:
    value: float
    per_example: np.ndarray
    aggregate: Callable[[np.ndarray], float] | None = None
    details: dict[str, Any] = field(default_factory=dict)
    #: At most this many bootstrap resamples for this metric (None: the run's number). For metrics
    #: whose `aggregate` is expensive (a corpus-level `evaluate` module recomputed per resample).
    max_resamples: int | None = None
    #: Optional: `aggregate` on every row of a (resamples, n) index matrix at once, returning one
    #: value per row. The bootstrap uses it instead of a Python loop over rows; it must agree with
    #: `aggregate` row by row (to floating-point rounding).
    aggregate_rows: Callable[[np.ndarray], np.ndarray] | None = None

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


def _keyword_params(name: str, fn: MetricFn) -> frozenset[str] | None:
    """The keyword parameters `fn` takes after (predictions, examples); None when it takes **kwargs."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None  # no introspectable signature (a builtin, say): pass everything, as a call would
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    params = list(signature.parameters.values())
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    slots = [p for p in params if p.kind in positional]
    if len(slots) < 2 and not any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        raise ConfigError(
            f"metric {name!r}: {getattr(fn, '__qualname__', fn)}{signature} must take (predictions, examples) "
            "as its first two positional parameters"
        )
    # The first two positional parameters receive predictions and examples, whatever their names.
    keywords = slots[2:] + [p for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
    return frozenset(p.name for p in keywords if p.kind is not inspect.Parameter.POSITIONAL_ONLY)


@dataclass(frozen=True)
class Metric:
    name: str
    fn: MetricFn
    higher_is_better: bool = True
    kind: MetricKind = "continuous"
    #: Inclusive bounds of the value, documented and used to scale report charts.
    value_range: tuple[float, float] = (0.0, 1.0)
    description: str = ""
    #: Keyword parameters `fn` declares (read from its signature once, here); None: it takes **kwargs.
    params: frozenset[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", _keyword_params(self.name, self.fn))

    def takes(self, param: str) -> bool:
        return self.params is None or param in self.params

    def check_params(self, names: Iterable[str], where: str = "") -> None:
        """Refuse configured parameters that the metric's function does not take (`where` prefixes the error)."""
        unknown = [n for n in names if not self.takes(n)]
        if unknown:
            accepted = ", ".join(sorted(self.params or ())) or "none"
            raise ConfigError(
                f"{where + ': ' if where else ''}metric {self.name!r} does not take parameter "
                f"{', '.join(map(repr, unknown))} (it takes: {accepted}); remove it from the suite's "
                "metric_params, or declare it in the metric function's signature"
            )

    def __call__(self, predictions: Sequence[str], examples: Sequence[Example], **params: Any) -> Scored:
        self.check_params(k for k in params if k not in CONTEXT_PARAMS)
        scored = self.fn(predictions, examples, **{k: v for k, v in params.items() if self.takes(k)})
        if len(scored.per_example) != len(predictions):
            raise MetricError(
                f"metric {self.name!r} returned {len(scored.per_example)} per-example values for "
                f"{len(predictions)} predictions; its function must return one value per prediction, in order "
                "(NaN where a prediction has no value)"
            )
        return scored


__all__ = ["CONTEXT_PARAMS", "Metric", "MetricFn", "MetricKind", "Scored"]
