"""Hugging Face `evaluate` modules as ftevals metrics, with paired CIs and verdicts like any other.

    from ftevals import evaluate_metric
    evaluate_metric("metrics/word_overlap", name="overlap", key="overlap")   # a local module folder
    evaluate_metric(my_loaded_module, name="bleu", key="bleu", per_example=False, value_range=(0, 100))

Then name it in a suite: `Suite(..., metrics=["overlap"])`.

- **Offline, local only.** `evaluate.load("rouge")` fetches the module's script from the Hub, which
  ftevals never contacts. A module is a local folder holding `NAME.py` (or the script itself), e.g.
  a copy of the module's Hub repository, or an already loaded `EvaluationModule`.
- **Per example** (default): the module is computed on each (prediction, reference) pair; the
  metric is the mean of those values and is compared with the paired bootstrap on per-example
  deltas, like ROUGE. Right for modules whose score is a mean over examples (exact match, ROUGE,
  BERTScore-like scores).
- **Corpus** (`per_example=False`): the value is the module computed on all pairs at once (BLEU,
  chrF, corpus F1), and every bootstrap resample recomputes it on the resampled pairs. That costs
  one `compute()` per resample per model (a few ms for light modules, much more for model-based
  ones), so such a metric uses at most `max_resamples` resamples (default 200, recorded in the CI).
  Per-example values are still computed for the report's per-example views.
- `evaluate` (and its `datasets` import, seconds) is imported on the first computation, not when
  the suite file is collected.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, MissingDependencyError
from .base import Metric, MetricKind, Scored
from .registry import get_metric, register_metric

if TYPE_CHECKING:
    from ..data import Example


class _LazyModule:
    """The module, loaded from its local path on first use (and then kept)."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self._module: Any = None if isinstance(source, (str, Path)) else source

    def get(self) -> Any:
        if self._module is None:
            from ..offline import hub_offline

            hub_offline()
            try:
                import evaluate
            except ImportError as exc:  # pragma: no cover - evaluate is a core dependency
                raise MissingDependencyError("evaluate", "pip install evaluate", str(exc)) from exc
            self._module = evaluate.load(str(self.source))
        return self._module


def _local_source(source: Any) -> Any:
    if not isinstance(source, (str, Path)):
        if not callable(getattr(source, "compute", None)):
            raise ConfigError(f"evaluate_metric: {source!r} is neither a local module path nor an object with compute()")
        return source
    path = Path(source).expanduser()
    if not path.exists():
        raise ConfigError(
            f"evaluate_metric: {str(source)!r} is not a local file or folder. ftevals loads `evaluate` modules "
            "from local paths only (evaluate.load('NAME') would fetch the module from the Hugging Face Hub): "
            "copy the module's folder (NAME/NAME.py) into your project and give its path"
        )
    if path.is_dir() and not (path / f"{path.name}.py").is_file():
        raise ConfigError(f"evaluate_metric: {path} holds no {path.name}.py; an evaluate module folder holds a script "
                          "named after the folder")
    return path.resolve()


def _number(result: Mapping[str, Any], key: str | None, where: str) -> float:
    if not isinstance(result, Mapping):
        raise ConfigError(f"{where}: compute() returned {type(result).__name__}, expected a dict of scores")
    numeric = {k: v for k, v in result.items() if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)}
    if key is None:
        if len(numeric) != 1:
            raise ConfigError(f"{where}: compute() returned {sorted(result)}; say which score to use with key=..., "
                              f"one of {sorted(numeric) or 'none numeric'}")
        key = next(iter(numeric))
    if key not in result:
        raise ConfigError(f"{where}: compute() returned no {key!r}; it returned {sorted(result)}")
    if key not in numeric:
        raise ConfigError(f"{where}: {key!r} is a {type(result[key]).__name__}, not a number; pick a numeric score "
                          f"({', '.join(sorted(numeric)) or 'none'})")
    return float(numeric[key])


def evaluate_metric(
    module: Any,
    *,
    name: str,
    key: str | None = None,
    per_example: bool = True,
    higher_is_better: bool = True,
    kind: MetricKind = "continuous",
    value_range: tuple[float, float] = (0.0, 1.0),
    max_resamples: int = 200,
    compute_kwargs: Mapping[str, Any] | None = None,
    replace: bool = False,
) -> Metric:
    """Register an `evaluate` module (a local path, or a loaded `EvaluationModule`) as metric `name`.

    `key`: which entry of `compute()`'s dict is the score (needed when it returns several numbers).
    `compute_kwargs`: extra arguments for every `compute()` call (e.g. `{"use_stemmer": True}`).
    References are the examples' references. See the module docstring for the two modes.
    """
    lazy = _LazyModule(_local_source(module))
    extra = dict(compute_kwargs or {})
    where = f"metric {name!r} (evaluate module {module if isinstance(module, (str, Path)) else type(module).__name__})"
    if max_resamples < 10:
        raise ConfigError(f"{where}: max_resamples must be >= 10 for a meaningful interval, got {max_resamples}")

    def score(predictions: Sequence[str], references: Sequence[str]) -> float:
        return _number(lazy.get().compute(predictions=list(predictions), references=list(references), **extra), key, where)

    def metric(predictions: Sequence[str], examples: Sequence[Example]) -> Scored:
        refs = [e.reference for e in examples]
        each = np.array([score([p], [r]) for p, r in zip(predictions, refs)], dtype=float)
        if per_example:
            return Scored.mean_of(each, {"evaluate_module": str(lazy.source), "mode": "per-example"})
        preds = list(predictions)

        def on(idx: np.ndarray) -> float:
            if len(idx) == 0:
                return math.nan
            return score([preds[i] for i in idx], [refs[i] for i in idx])

        details = {"evaluate_module": str(lazy.source), "mode": "corpus", "max_resamples": max_resamples}
        return Scored(score(preds, refs) if preds else math.nan, each, on, details, max_resamples=max_resamples)

    metric.__doc__ = f"`evaluate` module {lazy.source} ({'per example' if per_example else 'corpus'})"
    register_metric(name, higher_is_better=higher_is_better, kind=kind, value_range=value_range,
                    replace=replace)(metric)
    return get_metric(name)


__all__ = ["evaluate_metric"]
