"""Multiple comparisons: a suite's significance calls, adjusted together.

A suite compares every contender with the reference on every metric: 3 adapters x 2 metrics is 6
tests, and at alpha 0.05 the chance that at least one "significant" change is noise is about 26%
when nothing changed. The family of a suite is all its comparisons that have a p-value; their
p-values are adjusted together (Holm's step-down method by default: it controls the family-wise
error rate like Bonferroni and never rejects less), and a verdict stays significant only when its
adjusted p-value is below alpha. Adjustment can take significance away, never add it. Confidence
intervals are not adjusted (they remain per comparison, at 1 - alpha); the results file keeps the
raw `p_value` next to `p_adjusted`, and `significantly` gates read the verdict, so the adjusted one.

A run and `ftevals compare` build a suite's comparisons through one function, `compare_suite`, so
re-scoring a results file reaches the verdicts the run recorded: the method comes from the file
(`recorded_method`: each adjusted comparison names it), never from a default of the command.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Literal, cast

from . import compare as cmp
from .errors import ConfigError, ResultsError
from .results import Comparison

if TYPE_CHECKING:  # pragma: no cover
    from .metrics import Scored

Method = Literal["holm", "bonferroni", "none"]
METHODS: tuple[str, ...] = ("holm", "bonferroni", "none")


def adjusted_p_values(p_values: Sequence[float], method: Method = "holm") -> list[float]:
    """The adjusted p-values, in the order given (capped at 1)."""
    m = len(p_values)
    if method == "none" or m <= 1:
        return [float(p) for p in p_values]
    if method == "bonferroni":
        return [min(1.0, m * float(p)) for p in p_values]
    if method != "holm":
        raise ConfigError(f"unknown multiplicity method {method!r}; expected one of {', '.join(METHODS)}")
    # Holm: the i-th smallest p is multiplied by (m - i); the running maximum keeps the order.
    order = sorted(range(m), key=lambda i: (p_values[i], i))
    out = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p_values[i])))
        out[i] = running
    return out


def adjust_family(comparisons: Sequence[Comparison], method: Method = "holm") -> list[Comparison]:
    """The comparisons with `p_adjusted`, `adjustment` and `family_size` set and verdicts re-read.

    A family of one (or `method="none"`) is returned unchanged: there is nothing to adjust.
    """
    _check_method(method)
    tested = [i for i, c in enumerate(comparisons) if c.p_value is not None]
    if method == "none" or len(tested) <= 1:
        return list(comparisons)
    adjusted = adjusted_p_values([comparisons[i].p_value for i in tested], method)  # type: ignore[misc]
    out = list(comparisons)
    for i, p_adj in zip(tested, adjusted):
        c = comparisons[i]
        verdict = c.verdict if p_adj < c.alpha else "no_significant_change"
        out[i] = replace(c, p_adjusted=p_adj, adjustment=method, family_size=len(tested), verdict=verdict)
    return out


def compare_suite(scores: Mapping[str, Mapping[str, Scored]], *, reference: str | Mapping[str, str],
                  metrics: Sequence[cmp.MetricInfo], ids: Sequence[str], multiplicity: Method,
                  resamples: int = cmp.DEFAULT_RESAMPLES, seed: int = 0,
                  alpha: float = cmp.DEFAULT_ALPHA) -> list[Comparison]:
    """Every comparison of one suite, adjusted together: what a run records and what re-scoring
    recomputes from saved outputs (one code path, so `ftevals compare` cannot disagree with a run).

    `scores`: model -> metric name -> Scored, all on the examples `ids` (in that order).
    `reference`: the reference model's name (every other model is compared with it), or
    model -> its own reference (`ftevals compare`: each model of run B against its counterpart in
    run A). Comparisons come model by model, metrics in order; the family is all of them.
    """
    _check_method(multiplicity)

    def against(ref: str, models: Mapping[str, Mapping[str, Scored]]) -> list[Comparison]:
        return cmp.compare_models(models, reference=ref, metrics=metrics, ids=ids, resamples=resamples, seed=seed,
                                  alpha=alpha)

    if isinstance(reference, str):
        rows = against(reference, scores)
    else:
        rows = []
        for model, ref in reference.items():
            missing = [name for name in (model, ref) if name not in scores]
            if missing:
                raise ConfigError(f"model {missing[0]!r} has no scores (models: {', '.join(scores) or 'none'}); "
                                  "pair only models that were scored")
            rows += against(ref, {model: scores[model], ref: scores[ref]})
    return adjust_family(rows, multiplicity)


def recorded_method(comparisons: Iterable[Comparison], where: str = "<results>") -> Method:
    """The multiplicity method a run applied to these comparisons, as its results file records it.

    Each adjusted comparison names its method (`adjustment`). A suite whose comparisons name none
    adjusted nothing (multiplicity "none", or a family of one), which re-scoring reads as "none".
    """
    found = sorted({c.adjustment for c in comparisons if c.adjustment is not None})
    if not found:
        return "none"
    if len(found) > 1 or found[0] not in METHODS:
        raise ResultsError(f"{where}: the comparisons record the multiplicity adjustment "
                           f"{' and '.join(map(repr, found))}; one suite has one method, one of "
                           f"{', '.join(m for m in METHODS if m != 'none')}: the file was edited or written by "
                           "another version of ftevals, re-run the suite to rewrite it")
    return cast(Method, found[0])


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ConfigError(f"unknown multiplicity method {method!r}; expected one of {', '.join(METHODS)}")


__all__ = ["METHODS", "Method", "adjust_family", "adjusted_p_values", "compare_suite", "recorded_method"]
