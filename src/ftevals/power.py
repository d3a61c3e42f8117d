"""Could the suite have seen it? The minimum detectable effect (MDE) of a paired comparison.

A "no significant change" at n=30 and one at n=3,000 read the same in a table; they are not the same
evidence. For the paired test each comparison actually used, this module answers two questions:

- `mde`: the smallest true change the test detects with probability `power` (0.8) at the suite's
  n and two-sided alpha;
- `n_needed`: the n at which a given change (a gate's margin) would be detected that often.

Binary metrics (McNemar's exact test). Only discordant examples carry information. With n pairs, a
share `p_d` of them discordant and a true effect `delta` (the model's accuracy minus the
reference's), the number of discordant pairs is D ~ Binomial(n, p_d) and, given D, the pairs that
favour the model are Binomial(D, (p_d + delta) / (2 p_d)). The test rejects when the smaller side
is at most the exact critical value k_D; the power is the sum over D of P(D) P(reject | D), exact,
in O(n) with scipy's binomial functions. `p_d` is the discordance observed in the run, but never
less than `delta` itself: an adapter that changes an accuracy by delta changes at least that share
of answers, so a run with no discordant pair (identical outputs) still gets an honest MDE instead
of zero.

Continuous metrics (paired bootstrap). The comparison's percentile interval is +-z SE wide, so the
standard error of the paired delta is read back from it: `se = (ci_high - ci_low) / (2 z)`. That is
the paired variance as the test saw it (also for corpus-level metrics such as macro-F1, which have
no per-example differences), and the MDE is `(z_{1-alpha/2} + z_power) se`, as for a paired z test;
SE shrinks as 1/sqrt(n), so `n_needed = n (mde / margin)^2`.

Pure functions of numbers; tests check them against statsmodels' power functions and by simulation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: The power a suite is asked to have: the usual 80%.
DEFAULT_POWER = 0.8
#: Search bounds for n (beyond this an answer is not useful: "more than 10 million examples").
_MAX_N = 10_000_000


@dataclass(frozen=True)
class Detectability:
    """What a paired comparison could detect: `mde` in the metric's units (None: undefined),
    and the n at which `margin` would be detected (None when no margin was given or it is 0)."""

    mde: float | None
    n_needed: int | None
    basis: str


#: Up to this n the power is summed exactly; beyond it the normal approximation is within a fraction
#: of a percent and costs nothing (the exact sum over 20,000 pairs, bisected, took 3 s).
EXACT_UP_TO = 3000


def mcnemar_power(n: int, delta: float, discordance: float, alpha: float) -> float:
    """Power of McNemar's exact two-sided test (at `alpha`) to detect `delta` in the right direction.

    `discordance` is the share of pairs that differ; it is raised to `delta` when smaller (see the
    module docstring). Rejections in the wrong direction are not counted as detections. Exact up
    to `EXACT_UP_TO` pairs, the normal approximation beyond.
    """
    delta = abs(delta)
    if n < 1 or delta <= 0.0:
        return 0.0
    p_d = min(1.0, max(discordance, delta))
    if n > EXACT_UP_TO:
        from scipy import stats

        spread = math.sqrt(max(p_d - delta * delta, 1e-300))
        return float(stats.norm.cdf((math.sqrt(n) * delta - _z(1.0 - alpha / 2.0) * math.sqrt(p_d)) / spread))
    return _exact_mcnemar_power(n, delta, p_d, alpha)


def _exact_mcnemar_power(n: int, delta: float, p_d: float, alpha: float) -> float:
    from scipy import stats

    favour = min(1.0, (p_d + delta) / (2.0 * p_d))
    d = np.arange(n + 1)
    # k_D: the largest k with 2 P(X <= k) <= alpha for X ~ Binomial(D, 1/2); -1 when none (no
    # rejection possible with so few discordant pairs).
    k = stats.binom.ppf(alpha / 2.0, d, 0.5)
    k = np.where(2.0 * stats.binom.cdf(k, d, 0.5) <= alpha + 1e-12, k, k - 1)
    # Detected: the pairs against the model (Binomial(D, 1 - favour)) are at most k_D.
    p_reject = np.where(k >= 0, stats.binom.cdf(k, d, 1.0 - favour), 0.0)
    p_d_count = stats.binom.pmf(d, n, p_d)
    return float(np.clip(np.sum(p_d_count * p_reject), 0.0, 1.0))


def mcnemar_mde(n: int, discordance: float, alpha: float, power: float = DEFAULT_POWER) -> float | None:
    """The smallest |delta| McNemar's exact test detects with `power` at n (None: not even delta = 1)."""
    if n < 1 or mcnemar_power(n, 1.0, discordance, alpha) < power:
        return None
    low, high = 0.0, 1.0
    for _ in range(30):  # bisection to about 1e-9: far below any printed digit
        mid = (low + high) / 2.0
        if mcnemar_power(n, mid, discordance, alpha) >= power:
            high = mid
        else:
            low = mid
    return high


def mcnemar_n_needed(delta: float, discordance: float, alpha: float, power: float = DEFAULT_POWER) -> int | None:
    """The smallest n at which McNemar's exact test detects `delta` with `power` (None: beyond 10 million)."""
    delta = abs(delta)
    if delta <= 0.0:
        return None
    # A normal-approximation start (Connor, 1987), then the exact power decides.
    p_d = min(1.0, max(discordance, delta))
    z_a, z_b = _z(1.0 - alpha / 2.0), _z(power)
    guess = ((z_a * math.sqrt(p_d) + z_b * math.sqrt(max(p_d - delta * delta, 0.0))) / delta) ** 2
    high = max(2, int(math.ceil(guess * 1.5)) + 10)
    while mcnemar_power(high, delta, discordance, alpha) < power:
        high *= 2
        if high > _MAX_N:
            return None
    low = 0
    while high - low > 1:  # the smallest n with enough power (power rises with n, up to the test's steps)
        mid = (low + high) // 2
        if mcnemar_power(mid, delta, discordance, alpha) >= power:
            high = mid
        else:
            low = mid
    return high


def bootstrap_se(ci_low: float, ci_high: float, alpha: float) -> float | None:
    """The standard error of a paired delta read back from its (1 - alpha) percentile interval."""
    if not (math.isfinite(ci_low) and math.isfinite(ci_high)) or ci_high < ci_low:
        return None
    return (ci_high - ci_low) / (2.0 * _z(1.0 - alpha / 2.0))


def normal_mde(se: float, alpha: float, power: float = DEFAULT_POWER) -> float:
    """MDE of a two-sided paired z test with standard error `se`."""
    return (_z(1.0 - alpha / 2.0) + _z(power)) * se


def paired_detectability(*, test: str, n: int, alpha: float, margin: float | None, discordant: int = 0,
                         ci_low: float = math.nan, ci_high: float = math.nan,
                         power: float = DEFAULT_POWER) -> Detectability:
    """MDE and n needed for one comparison, by the test it used ("mcnemar-exact" or "paired-bootstrap")."""
    wanted = abs(margin) if margin else None
    if n < 1:
        return Detectability(None, None, "no examples")
    if test == "mcnemar-exact":
        share = discordant / n
        mde = mcnemar_mde(n, share, alpha, power)
        needed = mcnemar_n_needed(wanted, share, alpha, power) if wanted else None
        return Detectability(mde, needed, f"McNemar exact, {discordant}/{n} discordant observed")
    se = bootstrap_se(ci_low, ci_high, alpha)
    if se is None:
        return Detectability(None, None, "paired bootstrap, no interval")
    if se == 0.0:
        # Every resample gave the same delta (both models scored alike on every example, e.g. all
        # zero): the run shows no spread to judge power from, which is no evidence of power.
        return Detectability(None, None, "paired bootstrap, every resampled delta equal: no spread to judge power from")
    mde = normal_mde(se, alpha, power)
    needed = int(math.ceil(n * (mde / wanted) ** 2)) if wanted else None
    return Detectability(mde, needed, f"paired bootstrap, SE {se:.3g} from the {1 - alpha:.0%} interval")


def _z(p: float) -> float:
    from scipy import stats

    return float(stats.norm.ppf(p))


__all__ = ["DEFAULT_POWER", "Detectability", "bootstrap_se", "mcnemar_mde", "mcnemar_n_needed", "mcnemar_power",
           "normal_mde", "paired_detectability"]
