"""Inter-rater agreement and the small interval estimates used for human ratings (pure numpy).

Conventions shared by every function here:

- A *reliability matrix* has one row per rater and one column per unit (a thing that was rated:
  one criterion of one response of one item). Missing ratings are NaN. This is the layout the
  `krippendorff` package calls `reliability_data`, so results can be checked against it directly.
- Undefined statistics (no pairable ratings, or no variation at all so expected disagreement is
  zero) come back as NaN; callers that write JSON turn NaN into null.
- Category weights for Cohen's kappa use *index* distance between the sorted labels (as
  scikit-learn does), which equals value distance for a 1..5 scale.

Formulas (facts, not code, taken from the literature):
Krippendorff (2011) "Computing Krippendorff's alpha-reliability" (coincidence-matrix form);
Cohen (1960, 1968) for plain and weighted kappa; Fleiss (1971) for the multi-rater kappa;
Wilson (1927) for the score interval of a proportion.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Literal

import numpy as np

Level = Literal["nominal", "ordinal", "interval", "ratio"]
Weights = Literal["linear", "quadratic"] | None


def _as_reliability(data: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    arr = np.asarray(data, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"reliability data must be 2-D (raters x units), got shape {arr.shape}")
    return arr


def coincidence_matrix(data: Sequence[Sequence[float]] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The coincidence matrix `o[c, k]` and the sorted values it is indexed by.

    Each unit with m >= 2 ratings contributes every ordered pair of its ratings (from different
    raters) with weight 1 / (m - 1), so every pairable rating counts once in the marginals.
    Units rated once carry no information about agreement and are left out.
    """
    arr = _as_reliability(data)
    present = ~np.isnan(arr)
    values = np.unique(arr[present])
    if values.size == 0:
        return np.zeros((0, 0)), values
    # counts[u, v]: how many raters gave value v to unit u.
    index = np.searchsorted(values, np.where(present, arr, values[0]))
    counts = np.zeros((arr.shape[1], values.size))
    for rater in range(arr.shape[0]):
        cols = np.nonzero(present[rater])[0]
        np.add.at(counts, (cols, index[rater, cols]), 1.0)
    m = counts.sum(axis=1)
    pairable = m >= 2
    counts, m = counts[pairable], m[pairable]
    weighted = counts / (m - 1.0)[:, None]
    o = weighted.T @ counts - np.diag(weighted.sum(axis=0))
    return o, values


def _distance(level: Level, values: np.ndarray, marginals: np.ndarray) -> np.ndarray:
    """Squared difference function delta^2(c, k) for the given level of measurement."""
    c = values[:, None]
    k = values[None, :]
    if level == "nominal":
        return (c != k).astype(float)
    if level == "interval":
        return (c - k) ** 2
    if level == "ratio":
        total = c + k
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.where(total == 0, 0.0, ((c - k) / np.where(total == 0, 1.0, total)) ** 2)
        return d
    if level == "ordinal":
        # Ordinal distance depends on how many pairable values lie between c and k (inclusive),
        # minus half of the two endpoints' own frequencies: ranks, not raw differences, matter.
        cum = np.cumsum(marginals)
        i = np.arange(values.size)
        lo = np.minimum(i[:, None], i[None, :])
        hi = np.maximum(i[:, None], i[None, :])
        between = cum[hi] - cum[lo] + marginals[lo]
        return (between - (marginals[:, None] + marginals[None, :]) / 2.0) ** 2
    raise ValueError(f"unknown level of measurement {level!r}; use nominal, ordinal, interval or ratio")


def krippendorff_alpha(data: Sequence[Sequence[float]] | np.ndarray, level: Level = "ordinal") -> float:
    """Krippendorff's alpha for a raters x units matrix with NaN for missing ratings.

    Range (-1, 1]: 1 is perfect agreement, 0 is what chance produces, < 0 is systematic
    disagreement. NaN when fewer than two pairable ratings exist or all ratings are the same.
    """
    o, values = coincidence_matrix(data)
    marginals = o.sum(axis=1)
    n = marginals.sum()
    if n <= 1:
        return math.nan
    delta = _distance(level, values, marginals)
    observed = float((o * delta).sum())
    expected = float((np.outer(marginals, marginals) * delta).sum()) / (n - 1.0)
    if expected == 0.0:
        return math.nan
    return 1.0 - observed / expected


def cohen_kappa(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    weights: Weights = None,
    labels: Sequence[float] | None = None,
) -> float:
    """Cohen's kappa between two raters' labels for the same units (no missing values).

    `weights=None` is plain kappa (every disagreement costs the same); "quadratic" charges
    (i - j)^2 for labels i and j positions apart, which suits an ordinal 1..5 scale; "linear" |i - j|.
    `labels` fixes the category set (and so the weight spacing); by default the observed labels.
    Range [-1, 1]; NaN when agreement expected by chance is already perfect.
    """
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("cohen_kappa needs two 1-D sequences of the same length")
    cats = np.unique(np.concatenate([x, y])) if labels is None else np.asarray(sorted(labels), dtype=float)
    if x.size == 0 or cats.size == 0:
        return math.nan
    # Pairs with a label outside `labels` are ignored, as scikit-learn does.
    position = {float(c): i for i, c in enumerate(cats)}
    pairs = [(position[p], position[q]) for p, q in zip(x.tolist(), y.tolist()) if p in position and q in position]
    if not pairs:
        return math.nan
    ix, iy = (np.asarray(side) for side in zip(*pairs))
    confusion = np.zeros((cats.size, cats.size))
    np.add.at(confusion, (ix, iy), 1.0)
    expected = np.outer(confusion.sum(axis=1), confusion.sum(axis=0)) / confusion.sum()
    pos = np.arange(cats.size)
    if weights is None:
        w = 1.0 - np.eye(cats.size)
    elif weights == "linear":
        w = np.abs(pos[:, None] - pos[None, :]).astype(float)
    elif weights == "quadratic":
        w = ((pos[:, None] - pos[None, :]) ** 2).astype(float)
    else:
        raise ValueError(f"unknown weights {weights!r}; use None, 'linear' or 'quadratic'")
    denom = float((w * expected).sum())
    if denom == 0.0:
        return math.nan
    return 1.0 - float((w * confusion).sum()) / denom


def category_counts(
    data: Sequence[Sequence[float]] | np.ndarray, categories: Sequence[float] | None = None
) -> np.ndarray:
    """Turn a raters x units matrix into a units x categories count table (NaN ignored)."""
    arr = _as_reliability(data)
    present = ~np.isnan(arr)
    cats = np.unique(arr[present]) if categories is None else np.asarray(sorted(categories), dtype=float)
    table = np.zeros((arr.shape[1], cats.size))
    for i, cat in enumerate(cats):
        table[:, i] = ((arr == cat) & present).sum(axis=0)
    return table


def fleiss_kappa(table: Sequence[Sequence[float]] | np.ndarray) -> float:
    """Fleiss' kappa from a units x categories table of counts.

    Every unit must have been rated by the same number m >= 2 of raters (not necessarily the same
    people). Categories are nominal: a 4 vs 5 disagreement counts as much as 1 vs 5.
    Range [-1, 1] (lower bound depends on m); NaN when chance agreement is already perfect.
    """
    t = np.asarray(table, dtype=float)
    if t.ndim != 2 or t.shape[0] == 0:
        return math.nan
    per_unit = t.sum(axis=1)
    m = per_unit[0]
    if m < 2 or not np.all(per_unit == m):
        raise ValueError("fleiss_kappa needs the same number (>= 2) of ratings for every unit")
    p_cat = t.sum(axis=0) / (t.shape[0] * m)
    p_unit = ((t * t).sum(axis=1) - m) / (m * (m - 1.0))
    p_bar = float(p_unit.mean())
    p_exp = float((p_cat**2).sum())
    if p_exp == 1.0:
        return math.nan
    return (p_bar - p_exp) / (1.0 - p_exp)


def wilson_interval(successes: int, n: int, *, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion; stays inside [0, 1] and behaves at 0 or n successes."""
    if n <= 0:
        return (math.nan, math.nan)
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2.0 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_mean_ci(
    values: Sequence[float] | np.ndarray, *, seed: int | Sequence[int], resamples: int = 2000, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval for a mean, resampling the given values (e.g. per-item means).

    Seeded explicitly so reports are reproducible; NaN bounds for fewer than two values, where
    resampling says nothing about uncertainty.
    """
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [tail, 1.0 - tail])
    return (float(lo), float(hi))


__all__ = [
    "bootstrap_mean_ci",
    "category_counts",
    "coincidence_matrix",
    "cohen_kappa",
    "fleiss_kappa",
    "krippendorff_alpha",
    "wilson_interval",
]
