"""Multiple comparisons: a suite's significance calls, adjusted together.

A suite compares every contender with the reference on every metric: 3 adapters x 2 metrics is 6
tests, and at alpha 0.05 the chance that at least one "significant" change is noise is about 26%
when nothing changed. The family of a suite is all its comparisons that have a p-value; their
p-values are adjusted together (Holm's step-down method by default: it controls the family-wise
error rate like Bonferroni and never rejects less), and a verdict stays significant only when its
adjusted p-value is below alpha. Adjustment can take significance away, never add it. Confidence
intervals are not adjusted (they remain per comparison, at 1 - alpha); the results file keeps the
raw `p_value` next to `p_adjusted`, and `significantly` gates read the verdict, so the adjusted one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

from .errors import ConfigError
from .results import Comparison

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
    if method not in METHODS:
        raise ConfigError(f"unknown multiplicity method {method!r}; expected one of {', '.join(METHODS)}")
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


__all__ = ["METHODS", "Method", "adjust_family", "adjusted_p_values"]
