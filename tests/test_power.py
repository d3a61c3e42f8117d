"""The minimum detectable effect (power.py) against statsmodels' power functions and by simulation.

"No significant change" is only evidence when the suite could have seen the change a gate cares
about; these tests check that the MDE ftevals states is the one the paired test really has: at the
stated MDE about 80% of simulated suites detect the effect, with the very tests ftevals runs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from statsmodels.stats.power import NormalIndPower, TTestPower

from ftevals.compare import mcnemar_exact, paired_bootstrap
from ftevals.metrics.base import Scored
from ftevals.power import (EXACT_UP_TO, bootstrap_se, mcnemar_mde, mcnemar_n_needed, mcnemar_power, normal_mde,
                           paired_detectability)

ALPHA = 0.05


def _scored(values: np.ndarray) -> Scored:
    return Scored(float(np.mean(values)), [float(v) for v in values])


@pytest.mark.parametrize("n, discordance", [(4000, 0.2), (20000, 0.05), (1500, 0.3)])
def test_mcnemar_mde_agrees_with_statsmodels_normal_power(n: int, discordance: float) -> None:
    # McNemar's test is a one-sample test on the discordant differences (values -1, 0, +1 with
    # variance about p_d): statsmodels' one-sample normal power with effect size delta / sqrt(p_d).
    ours = mcnemar_mde(n, discordance, ALPHA)
    effect = NormalIndPower().solve_power(nobs1=n, alpha=ALPHA, power=0.8, ratio=0)
    theirs = effect * math.sqrt(discordance)
    assert ours == pytest.approx(theirs, rel=0.04)  # the exact test is a little more conservative


def test_continuous_mde_agrees_with_statsmodels_paired_t_power() -> None:
    rng = np.random.default_rng(7)
    n = 200
    ref = rng.uniform(0.2, 0.6, n)
    model = ref + rng.normal(0.0, 0.15, n)
    boot = paired_bootstrap(_scored(model), _scored(ref), resamples=4000, seed=0, alpha=ALPHA)
    found = paired_detectability(test="paired-bootstrap", n=n, alpha=ALPHA, margin=0.02,
                                 ci_low=boot.ci_low, ci_high=boot.ci_high)
    sd = float(np.std(model - ref, ddof=1))
    theirs = TTestPower().solve_power(nobs=n, alpha=ALPHA, power=0.8) * sd  # paired t test, Cohen's d * sd
    assert found.mde == pytest.approx(theirs, rel=0.08)  # SE read back from a bootstrap interval
    # n needed for a 0.02 margin follows the 1/sqrt(n) law; statsmodels solves the same question.
    n_theirs = TTestPower().solve_power(effect_size=0.02 / sd, alpha=ALPHA, power=0.8)
    assert found.n_needed == pytest.approx(n_theirs, rel=0.16)


def test_mcnemar_power_at_the_mde_is_eighty_percent_by_simulation() -> None:
    n, discordance = 200, 0.3
    mde = mcnemar_mde(n, discordance, ALPHA)
    assert mde is not None and 0.05 < mde < 0.3
    rng = np.random.default_rng(11)
    p_better, p_worse = (discordance + mde) / 2, (discordance - mde) / 2
    detected = 0
    trials = 600
    for _ in range(trials):
        u = rng.random(n)
        ref = np.ones(n)
        model = np.ones(n)
        model[u < p_worse] = 0  # the model breaks these
        ref[(u >= p_worse) & (u < p_worse + p_better)] = 0  # the model fixes these
        mc = mcnemar_exact(ref, model)
        detected += mc.p_value < ALPHA and mc.c > mc.b
    assert detected / trials == pytest.approx(0.8, abs=0.05)  # 3 binomial SEs over 600 suites


def test_bootstrap_power_at_the_mde_is_eighty_percent_by_simulation() -> None:
    n, sd = 80, 0.2
    mde = normal_mde(sd / math.sqrt(n), ALPHA)
    rng = np.random.default_rng(5)
    detected = 0
    trials = 300
    for i in range(trials):
        ref = rng.uniform(0.2, 0.6, n)
        model = ref + mde + rng.normal(0.0, sd, n)
        boot = paired_bootstrap(_scored(model), _scored(ref), resamples=500, seed=i, alpha=ALPHA)
        detected += boot.ci_low > 0
    assert detected / trials == pytest.approx(0.8, abs=0.07)


def test_no_discordant_pair_still_gets_an_honest_mde() -> None:
    # Identical outputs: the suite saw no change, but that says little at n=30. An adapter that moves
    # accuracy by delta changes at least that share of answers, so the MDE is not 0.
    mde = mcnemar_mde(30, 0.0, ALPHA)
    assert mde is not None and 0.2 < mde < 0.3
    assert mcnemar_power(30, mde, 0.0, ALPHA) >= 0.8 > mcnemar_power(30, mde - 0.01, 0.0, ALPHA)


def test_too_few_examples_detect_nothing() -> None:
    assert mcnemar_mde(4, 0.5, ALPHA) is None  # 4 pairs can never reach p < 0.05 with McNemar's exact test
    found = paired_detectability(test="mcnemar-exact", n=4, alpha=ALPHA, margin=0.05, discordant=2)
    assert found.mde is None and found.n_needed is not None


def test_n_needed_is_the_smallest_n_with_enough_power() -> None:
    n = mcnemar_n_needed(0.1, 0.25, ALPHA)
    assert n is not None and n <= EXACT_UP_TO
    assert mcnemar_power(n, 0.1, 0.25, ALPHA) >= 0.8
    assert mcnemar_power(n - 1, 0.1, 0.25, ALPHA) < 0.8 or mcnemar_power(n - 2, 0.1, 0.25, ALPHA) < 0.8


def test_exact_and_normal_branches_meet_at_the_switch() -> None:
    exact = mcnemar_mde(EXACT_UP_TO, 0.2, ALPHA)
    normal = mcnemar_mde(EXACT_UP_TO + 1, 0.2, ALPHA)
    assert exact == pytest.approx(normal, rel=0.03)


def test_bootstrap_se_reads_the_interval_back() -> None:
    assert bootstrap_se(-0.0196, 0.0196, 0.05) == pytest.approx(0.01, rel=1e-3)
    assert bootstrap_se(math.nan, 0.1, 0.05) is None


def test_a_collapsed_interval_is_no_evidence_of_power() -> None:
    # Both models scored 0 on every example (a random model's ROUGE): the bootstrap interval is a
    # point, which says nothing about what the suite could detect; it must not read as "detects 0".
    found = paired_detectability(test="paired-bootstrap", n=40, alpha=ALPHA, margin=0.5, ci_low=0.0, ci_high=0.0)
    assert found.mde is None and found.n_needed is None and "no spread" in found.basis
