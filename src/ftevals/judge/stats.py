"""The judge's figures for one suite: scores with CIs, paired comparisons, win rates and biases.

Pure functions of the judge's per-example verdicts (`JudgeItem`s). Unreadable verdicts are NaN in
the arrays (left out of each mean separately, as undefined metric values are), never a score.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from .. import compare as cmp
from ..agreement import wilson_interval
from ..metrics.base import Scored
from ..results.judge_records import JudgeItem, JudgeWinRate
from ..results.records import Comparison, ScoreSummary


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _scored(values: np.ndarray) -> Scored:
    defined = values[~np.isnan(values)]
    return Scored(float(defined.mean()) if defined.size else math.nan, values)


def score_arrays(items: Sequence[JudgeItem], models: Sequence[str], criteria: Sequence[str],
                 example_ids: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
    """model -> criterion -> per-example scores in `example_ids` order (NaN: unreadable or absent)."""
    by_key = {(it.model, it.example): it for it in items}
    out: dict[str, dict[str, np.ndarray]] = {}
    for m in models:
        out[m] = {}
        for c in criteria:
            row = []
            for e in example_ids:
                it = by_key.get((m, e))
                v = it.scores.get(c) if it is not None else None
                row.append(math.nan if v is None else float(v))
            out[m][c] = np.asarray(row, dtype=float)
    return out


def score_summaries(arrays: Mapping[str, Mapping[str, np.ndarray]], *, resamples: int, seed: int,
                    ) -> dict[str, dict[str, ScoreSummary]]:
    """Mean score per model and criterion, with a 95% percentile bootstrap CI over examples."""
    out: dict[str, dict[str, ScoreSummary]] = {}
    for m, by in arrays.items():
        out[m] = {}
        for c, values in by.items():
            n = int((~np.isnan(values)).sum())
            if n == 0:
                out[m][c] = ScoreSummary(None, None, None, 0)
                continue
            boot = cmp.bootstrap_ci(_scored(values), resamples=resamples, seed=seed, alpha=0.05)
            out[m][c] = ScoreSummary(_finite(boot.estimate), _finite(boot.ci_low), _finite(boot.ci_high), n)
    return out


def comparisons(arrays: Mapping[str, Mapping[str, np.ndarray]], *, reference: str, example_ids: Sequence[str],
                resamples: int, seed: int, alpha: float) -> list[Comparison]:
    """Each model against the reference per criterion (metric `judge:CRITERION`): paired bootstrap."""
    out = []
    for m, by in arrays.items():
        if m == reference:
            continue
        for c, values in by.items():
            ref = arrays[reference][c]
            if np.isnan(values).all() or np.isnan(ref).all():
                continue  # nothing readable on one side: no comparison, and a gate on it fails as missing
            out.append(cmp.compare_pair(_scored(values), _scored(ref), model=m, reference=reference,
                                        metric=f"judge:{c}", kind="continuous", higher_is_better=True,
                                        ids=list(example_ids), resamples=resamples, seed=seed, alpha=alpha))
    return out


def win_rates(items: Sequence[JudgeItem], reference: str) -> dict[str, JudgeWinRate]:
    """Pairwise outcomes per model; the win rate's interval is Wilson's (95%) over readable pairs."""
    out: dict[str, JudgeWinRate] = {}
    models = sorted({it.model for it in items if it.orders is not None}, key=[it.model for it in items].index)
    for m in models:
        mine = [it for it in items if it.model == m and it.orders is not None]
        counts = {v: sum(1 for it in mine if it.verdict == v) for v in ("win", "loss", "tie", "inconsistent")}
        n = sum(counts.values())
        lo, hi = wilson_interval(counts["win"], n) if n else (math.nan, math.nan)
        out[m] = JudgeWinRate(reference=reference, n=n, wins=counts["win"], losses=counts["loss"], ties=counts["tie"],
                              inconsistent=counts["inconsistent"], unparseable=len(mine) - n,
                              win_rate=counts["win"] / n if n else None, ci_low=_finite(lo), ci_high=_finite(hi))
    return out


def position_bias(items: Sequence[JudgeItem]) -> float | None:
    """Share of readable pairs where the judge chose the same position in both orders.

    In the first order the model is A, in the second B; "model" then "reference" is therefore A
    then A: the judge followed the position, not the text. None when no pair was readable.
    """
    pairs = [it.orders for it in items if it.orders is not None and None not in it.orders]
    if not pairs:
        return None
    same = sum(1 for first, second in pairs if (first, second) in (("model", "reference"), ("reference", "model")))
    return same / len(pairs)


def verdict(first: str | None, second: str | None) -> str | None:
    """The outcome of both orders: agreement counts, disagreement is "inconsistent"."""
    if first is None or second is None:
        return None
    if first != second:
        return "inconsistent"
    return {"model": "win", "reference": "loss", "tie": "tie"}[first]


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation (average ranks for ties); None with < 3 pairs or no variation."""
    if len(x) < 3:
        return None
    rx, ry = _ranks(np.asarray(x, dtype=float)), _ranks(np.asarray(y, dtype=float))
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_values[j + 1] == sorted_values[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def length_bias(items: Sequence[JudgeItem], criteria: Sequence[str]) -> dict[str, float | None]:
    """criterion -> Spearman correlation of the judge's score with the output's length (characters)."""
    out: dict[str, float | None] = {}
    for c in criteria:
        pairs = [(float(it.length), float(it.scores[c])) for it in items if it.scores.get(c) is not None]
        out[c] = spearman([p[0] for p in pairs], [p[1] for p in pairs])
    return out


__all__ = ["comparisons", "length_bias", "position_bias", "score_arrays", "score_summaries", "spearman", "verdict",
           "win_rates"]
