"""ftevals.agreement against hand-computed cases and the reference implementations.

References: the `krippendorff` package (alpha, every level), scikit-learn's `cohen_kappa_score`,
statsmodels' `fleiss_kappa` and `proportion_confint(method="wilson")`.
"""

from __future__ import annotations

import math
import warnings

import krippendorff
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss
from statsmodels.stats.proportion import proportion_confint

from ftevals import agreement

NAN = np.nan

# The worked example of Krippendorff (2011), "Computing Krippendorff's alpha-reliability":
# 4 observers, 12 units, values 1..5, with published alphas.
KRIPPENDORFF_2011 = np.array([
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
])

# Fleiss (1971) as reproduced in many textbooks: 10 subjects, 14 raters, 5 categories.
FLEISS_TABLE = np.array([
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
])


@pytest.mark.parametrize(("level", "published"), [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849), ("ratio", 0.797)])
def test_alpha_matches_published_worked_example(level: str, published: float) -> None:
    ours = agreement.krippendorff_alpha(KRIPPENDORFF_2011, level)
    assert ours == pytest.approx(published, abs=5e-4)
    assert ours == pytest.approx(krippendorff.alpha(reliability_data=KRIPPENDORFF_2011, level_of_measurement=level))


def test_alpha_nominal_by_hand() -> None:
    # Units (1,1) (1,1) (2,2) (2,1): o11 = 4, o22 = 2, o12 = o21 = 1, n1 = 5, n2 = 3, n = 8.
    # alpha = 1 - (n - 1) * (o12 + o21) / (n1 n2 + n2 n1) = 1 - 7 * 2 / 30 = 16/30.
    data = [[1, 1, 2, 2], [1, 1, 2, 1]]
    assert agreement.krippendorff_alpha(data, "nominal") == pytest.approx(16 / 30)


def test_alpha_ordinal_by_hand() -> None:
    # Units (1,2) (2,3) (3,3): o12 = o21 = 1, o23 = o32 = 1, o33 = 2; n1 = 1, n2 = 2, n3 = 3, n = 6.
    # Ordinal delta^2: d(1,2) = (1 + 2 - 1.5)^2 = 2.25, d(2,3) = (2 + 3 - 2.5)^2 = 6.25,
    # d(1,3) = (1 + 2 + 3 - 2)^2 = 16. Observed sum o*d = 2*2.25 + 2*6.25 = 17.
    # Expected sum n_c n_k d = 2*(1*2*2.25 + 2*3*6.25 + 1*3*16) = 2*(4.5 + 37.5 + 48) = 180.
    # alpha = 1 - (n - 1) * 17 / 180 = 1 - 85/180.
    data = [[1, 2, 3], [2, 3, 3]]
    assert agreement.krippendorff_alpha(data, "ordinal") == pytest.approx(1 - 85 / 180)


def test_alpha_undefined_cases_are_nan() -> None:
    assert math.isnan(agreement.krippendorff_alpha([[3, 3], [3, 3]]))  # no variation at all
    assert math.isnan(agreement.krippendorff_alpha([[1, NAN], [NAN, 2]]))  # nothing pairable
    assert agreement.krippendorff_alpha([[1, 2, 3], [1, 2, 3]]) == pytest.approx(1.0)


def test_cohen_by_hand() -> None:
    # po = 3/4; marginals a = (.5, .5), b = (.25, .75): pe = .125 + .375 = .5; kappa = .25 / .5.
    assert agreement.cohen_kappa([1, 1, 2, 2], [1, 2, 2, 2]) == pytest.approx(0.5)
    # Quadratic: with two categories the weights are 0/1, so it equals plain kappa.
    assert agreement.cohen_kappa([1, 1, 2, 2], [1, 2, 2, 2], weights="quadratic") == pytest.approx(0.5)
    assert math.isnan(agreement.cohen_kappa([2, 2], [2, 2]))


def test_fleiss_published_example_and_by_hand() -> None:
    assert agreement.fleiss_kappa(FLEISS_TABLE) == pytest.approx(0.2099, abs=5e-4)
    assert agreement.fleiss_kappa(FLEISS_TABLE) == pytest.approx(sm_fleiss(FLEISS_TABLE, method="fleiss"))
    # Perfect agreement with both categories used: P_bar = 1, so kappa = 1.
    assert agreement.fleiss_kappa([[3, 0], [0, 3], [3, 0]]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same number"):
        agreement.fleiss_kappa([[2, 0], [1, 2]])


@pytest.mark.parametrize(("k", "n"), [(0, 10), (10, 10), (7, 20), (43, 60), (1, 1)])
def test_wilson_matches_statsmodels(k: int, n: int) -> None:
    lo, hi = agreement.wilson_interval(k, n)
    ref_lo, ref_hi = proportion_confint(k, n, alpha=0.05, method="wilson")
    assert (lo, hi) == pytest.approx((ref_lo, ref_hi), abs=1e-12)


def test_bootstrap_is_seeded_and_brackets_the_mean() -> None:
    x = np.arange(1, 31, dtype=float) % 5 + 1
    a = agreement.bootstrap_mean_ci(x, seed=3)
    assert a == agreement.bootstrap_mean_ci(x, seed=3)
    assert a[0] < x.mean() < a[1]
    assert all(math.isnan(v) for v in agreement.bootstrap_mean_ci([4.0], seed=0))


# -- property tests against the references ------------------------------------------------------


@st.composite
def reliability(draw: st.DrawFn, max_value: int = 5) -> np.ndarray:
    raters = draw(st.integers(2, 5))
    units = draw(st.integers(2, 25))
    cells = draw(st.lists(st.one_of(st.none(), st.integers(1, max_value)), min_size=raters * units, max_size=raters * units))
    arr = np.array([NAN if c is None else float(c) for c in cells]).reshape(raters, units)
    return arr


def _reference_alpha(data: np.ndarray, level: str) -> float:
    try:
        with np.errstate(all="ignore"):  # the package divides 0 by 0 where alpha is undefined
            return float(krippendorff.alpha(reliability_data=data, level_of_measurement=level))
    except (ValueError, ZeroDivisionError):
        return math.nan


@settings(max_examples=150, deadline=None)
@given(data=reliability(), level=st.sampled_from(["nominal", "ordinal", "interval"]))
def test_alpha_matches_krippendorff_package(data: np.ndarray, level: str) -> None:
    ours = agreement.krippendorff_alpha(data, level)
    ref = _reference_alpha(data, level)
    if not math.isfinite(ref):
        # The package raises or divides by zero where alpha is undefined; we say NaN.
        assert math.isnan(ours)
    else:
        assert ours == pytest.approx(ref, abs=1e-9)


@settings(max_examples=150, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.integers(1, 5), st.integers(1, 5)), min_size=2, max_size=40),
    weights=st.sampled_from([None, "linear", "quadratic"]),
    fixed_labels=st.booleans(),
)
def test_cohen_matches_sklearn(pairs: list[tuple[int, int]], weights: str | None, fixed_labels: bool) -> None:
    a, b = (np.array(side) for side in zip(*pairs))
    labels = [1, 2, 3, 4, 5] if fixed_labels else None
    ours = agreement.cohen_kappa(a, b, weights=weights, labels=labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns when kappa is undefined
        ref = cohen_kappa_score(a, b, weights=weights, labels=labels)
    if math.isnan(ref):
        assert math.isnan(ours)
    else:
        assert ours == pytest.approx(ref, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(
    units=st.integers(2, 30),
    raters=st.integers(2, 6),
    seed=st.integers(0, 10_000),
)
def test_fleiss_matches_statsmodels(units: int, raters: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    ratings = rng.integers(1, 6, size=(units, raters))  # statsmodels layout: subjects x raters
    table, _ = aggregate_raters(ratings)
    ours = agreement.fleiss_kappa(agreement.category_counts(ratings.T))
    with np.errstate(all="ignore"):
        ref = sm_fleiss(table, method="fleiss")
    if math.isnan(ref):
        assert math.isnan(ours)
    else:
        assert ours == pytest.approx(ref, abs=1e-9)
