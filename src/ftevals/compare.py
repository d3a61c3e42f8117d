"""Paired comparisons of a model against a reference model on the same examples.

Everything here is a pure function of `Scored` records (see `ftevals.metrics.base`): no I/O, no
global random state. Every resampling function takes an explicit `seed` and draws its resamples
from `np.random.default_rng(seed)`, so the same inputs and seed give bit-identical results.

The numbers:

- delta: `model.value - reference.value`, in the metric's own units. Its sign is raw: whether a
  positive delta is good depends on the metric's `higher_is_better`.
- paired bootstrap: `resamples` index arrays are drawn with replacement over the n examples; the
  SAME array is applied to both models, the metric is recomputed on it for each, and the
  resampled deltas give a percentile confidence interval at level 1 - alpha. Pairing removes the
  between-example variance that both models share, so the interval is much narrower than two
  independent intervals would suggest.
- McNemar's exact test (binary metrics): only discordant examples carry information; under "no
  difference" each one is equally likely to favour either model, so the count is Binomial(b + c, 1/2).
- verdict: "improved" / "regressed" when the change is significant at alpha in the good / bad
  direction for the metric, else "no_significant_change".

Undefined per-example values (NaN) are dropped from each model's mean separately, exactly as
`Scored.value` and `Scored.on` drop them, so the bootstrap interval is an interval for the very
delta that is reported (`model_value - reference_value`); the resample indices are still shared,
which keeps the comparison paired. McNemar's test and flips use only examples that are defined for
both models.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .errors import ConfigError
from .metrics.base import MetricKind, Scored
from .numbers import num as _num
from .results.records import (Comparison, ExampleDelta, ForgettingModel, PromptingResult, ScoreSummary, TestName,
                              Verdict)


VERDICTS: tuple[Verdict, ...] = ("improved", "no_significant_change", "regressed")
DEFAULT_RESAMPLES = 2000
DEFAULT_ALPHA = 0.05
DEFAULT_TOP_K = 20
#: The share of the adapter's gain above which prompting is recommended instead of fine-tuning.
PROMPTING_SHARE_THRESHOLD = 0.8

# Resample index matrices are built in row batches of at most this many cells (16 MiB of int64),
# so that 2000 resamples of a 50k-example set do not need 800 MB at once.
_MAX_BATCH_CELLS = 1 << 21


# --------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class BootstrapResult:
    """A bootstrap estimate with its percentile confidence interval.

    `estimate` is the point estimate computed on all examples (a model's value for `bootstrap_ci`,
    `model.value - reference.value` for `paired_bootstrap`). `ci_low..ci_high` is the central
    (1 - alpha) percentile interval of the resampled estimates. `p_value` (paired only) is the
    two-sided bootstrap p-value for "delta = 0": the smallest alpha at which the percentile interval
    would exclude 0, with the usual +1 correction so it is never exactly 0. `n` is the number of
    examples; NaN fields mean "undefined" (for instance every per-example value was NaN).
    """

    estimate: float
    ci_low: float
    ci_high: float
    n: int
    resamples: int
    seed: int
    alpha: float
    p_value: float | None = None

    @property
    def level(self) -> float:
        """The confidence level of the interval, e.g. 0.95."""
        return 1.0 - self.alpha

    def summary(self) -> ScoreSummary:
        return ScoreSummary(self.estimate, self.ci_low, self.ci_high, self.n)


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's exact test on paired right/wrong outcomes.

    `b`: examples the reference got right and the model got wrong; `c`: reference wrong, model
    right; `n`: examples defined for both (NaN pairs are left out). `p_value` is the exact two-sided
    binomial p-value of min(b, c) among b + c discordant pairs with success probability 1/2
    (1.0 when there are no discordant pairs).
    """

    b: int
    c: int
    n: int
    p_value: float


class MetricInfo(Protocol):
    """What `compare_models` needs to know about a metric (`ftevals.metrics.base.Metric` fits)."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> MetricKind: ...

    @property
    def higher_is_better(self) -> bool: ...


# --------------------------------------------------------------------------------------------
# Bootstrap


def bootstrap_ci(
    scored: Scored, *, resamples: int = DEFAULT_RESAMPLES, seed: int = 0, alpha: float = DEFAULT_ALPHA
) -> BootstrapResult:
    """Percentile bootstrap CI of one model's metric value (`estimate` = `scored.value`, no p-value).

    With the same seed the resample indices are the ones `paired_bootstrap` uses, so a model's CI
    and its comparison deltas come from the same resamples.
    """
    _check_settings(resamples, alpha)
    resamples = _capped(resamples, scored)
    n = len(scored.per_example)
    values = _resampled_values(scored, n, resamples, seed)
    low, high = _percentile_ci(values, alpha)
    return BootstrapResult(float(scored.value), low, high, n, resamples, seed, alpha)


def paired_bootstrap(
    model: Scored,
    reference: Scored,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    alpha: float = DEFAULT_ALPHA,
) -> BootstrapResult:
    """Paired bootstrap of `model.value - reference.value` on the same examples.

    Each resample draws n example indices with replacement and recomputes both metrics on that same
    index array. Metrics that are a plain mean of `per_example` (no custom `aggregate`) are resampled
    with numpy on a whole index matrix at once; others call `Scored.on(idx)` once per resample.
    Both paths draw identical indices for a given seed. NaN per-example values are dropped from each
    side's mean separately (see the module docstring); resamples in which a side has no defined value
    are left out of the interval.
    """
    _check_settings(resamples, alpha)
    resamples = _capped(resamples, model, reference)
    n = _paired_length(model, reference)
    deltas = _resampled_values(model, n, resamples, seed) - _resampled_values(reference, n, resamples, seed)
    low, high = _percentile_ci(deltas, alpha)
    estimate = float(model.value) - float(reference.value)
    return BootstrapResult(estimate, low, high, n, resamples, seed, alpha, _bootstrap_p(deltas))


def _capped(resamples: int, *scored: Scored) -> int:
    """The run's resamples, lowered to a metric's own cap (both sides of a pair share it)."""
    caps = [s.max_resamples for s in scored if s.max_resamples is not None]
    return min([resamples, *caps])


def _check_settings(resamples: int, alpha: float) -> None:
    if not isinstance(resamples, (int, np.integer)) or resamples < 1:
        raise ConfigError(f"bootstrap resamples must be a whole number >= 1, got {resamples!r}")
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must lie strictly between 0 and 1 (0.05 gives 95% intervals), got {alpha!r}")


def _paired_length(model: Scored, reference: Scored) -> int:
    n, m = len(model.per_example), len(reference.per_example)
    if n != m:
        raise ConfigError(
            f"cannot compare scores on different examples: the model has {n} per-example values and the "
            f"reference has {m}; score both models on the same dataset"
        )
    return n


def _index_batches(rng: np.random.Generator, n: int, resamples: int) -> Iterator[np.ndarray]:
    """Yield the (rows, n) resample index matrices, in order; `resamples` rows in all."""
    rows = max(1, _MAX_BATCH_CELLS // max(n, 1))
    done = 0
    while done < resamples:
        take = min(rows, resamples - done)
        yield rng.integers(0, n, size=(take, n))
        done += take


def _resampled_values(scored: Scored, n: int, resamples: int, seed: int) -> np.ndarray:
    """The metric recomputed on each of `resamples` index arrays drawn from default_rng(seed)."""
    out = np.full(resamples, math.nan)
    if n == 0:
        return out
    rng = np.random.default_rng(seed)
    per_example = np.asarray(scored.per_example, dtype=float)
    done = 0
    for idx in _index_batches(rng, n, resamples):
        if scored.aggregate is None:
            out[done : done + len(idx)] = _nanmean_rows(per_example[idx])
        elif scored.aggregate_rows is not None:
            out[done : done + len(idx)] = scored.aggregate_rows(idx)
        else:
            for j, row in enumerate(idx):
                out[done + j] = scored.on(row)
        done += len(idx)
    return out


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    """Row means ignoring NaN (NaN for a row with no defined value), without numpy's warnings."""
    defined = ~np.isnan(values)
    if defined.all():
        return values.mean(axis=1)
    counts = defined.sum(axis=1)
    sums = np.where(defined, values, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), math.nan)


def _percentile_ci(values: np.ndarray, alpha: float) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return math.nan, math.nan
    low, high = np.quantile(finite, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


def _bootstrap_p(deltas: np.ndarray) -> float | None:
    finite = deltas[np.isfinite(deltas)]
    r = finite.size
    if r == 0:
        return None
    at_or_below = int(np.count_nonzero(finite <= 0.0))
    at_or_above = int(np.count_nonzero(finite >= 0.0))
    # +1 in numerator and denominator: the observed data counts as one resample, so p is never 0
    # (a p-value of 0 from 2000 resamples would claim more than they can show).
    return min(1.0, 2.0 * (min(at_or_below, at_or_above) + 1) / (r + 1))


# --------------------------------------------------------------------------------------------
# Binary metrics: McNemar and flips


def mcnemar_exact(ref_correct: np.ndarray | Sequence[float], model_correct: np.ndarray | Sequence[float]) -> McNemarResult:
    """McNemar's exact test for paired 0/1 outcomes (True/False, 1/0; NaN pairs are left out)."""
    ref, mod = _binary_pair(ref_correct, model_correct)
    b = int(np.count_nonzero((ref == 1) & (mod == 0)))
    c = int(np.count_nonzero((ref == 0) & (mod == 1)))
    return McNemarResult(b, c, int(ref.size), _exact_binomial_p(b, c))


def _exact_binomial_p(b: int, c: int) -> float:
    discordant = b + c
    if discordant == 0:
        return 1.0
    # Binomial(n, 1/2) is symmetric, so the two-sided p-value is twice the smaller tail.
    return float(min(1.0, 2.0 * binomial_half_cdf(min(b, c), discordant)))


def binomial_half_cdf(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), in exact integer arithmetic (sum of C(n, i) over 2^n).

    Exact and free of scipy, whose import costs about half a second of every run. Beyond a few
    thousand trials the big integers grow slow, and scipy's cdf is used instead."""
    if n > 4000:
        from scipy import stats

        return float(stats.binom.cdf(k, n, 0.5))
    total, term = 0, 1
    for i in range(k + 1):
        total += term
        term = term * (n - i) // (i + 1)
    return total / (1 << n)


def flips(
    ref_correct: np.ndarray | Sequence[float],
    model_correct: np.ndarray | Sequence[float],
    ids: Sequence[str],
) -> tuple[list[str], list[str]]:
    """(fixes, regressions): ids the reference got wrong and the model right, and the other way round.

    Ids keep the input order; examples undefined (NaN) for either model are in neither list.
    """
    ref = _binary_array(ref_correct, "reference")
    mod = _binary_array(model_correct, "model")
    _check_ids(ids, len(ref), len(mod))
    fixes = [ids[i] for i in np.flatnonzero((ref == 0) & (mod == 1))]
    regressions = [ids[i] for i in np.flatnonzero((ref == 1) & (mod == 0))]
    return fixes, regressions


def _binary_pair(ref_correct: Any, model_correct: Any) -> tuple[np.ndarray, np.ndarray]:
    ref = _binary_array(ref_correct, "reference")
    mod = _binary_array(model_correct, "model")
    if ref.shape != mod.shape:
        raise ConfigError(
            f"cannot pair outcomes of different lengths: reference {len(ref)}, model {len(mod)}; "
            "score both models on the same examples"
        )
    defined = ~(np.isnan(ref) | np.isnan(mod))
    return ref[defined], mod[defined]


def _binary_array(values: Any, who: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float).ravel()
    bad = ~(np.isnan(arr) | (arr == 0.0) | (arr == 1.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ConfigError(
            f"{who} outcomes must be 0/1 (or NaN for undefined), but element {i} is {float(arr[i])!r}; "
            "declare the metric kind='continuous' if its per-example values are not right/wrong"
        )
    return arr


def _check_ids(ids: Sequence[str], *lengths: int) -> None:
    if any(len(ids) != n for n in lengths):
        raise ConfigError(
            f"got {len(ids)} example ids for {' and '.join(str(n) for n in lengths)} per-example values; "
            "pass one id per example, in the same order"
        )


# --------------------------------------------------------------------------------------------
# Continuous metrics: where the model got worse


def largest_drops(
    ref_vals: np.ndarray | Sequence[float],
    model_vals: np.ndarray | Sequence[float],
    ids: Sequence[str],
    k: int = DEFAULT_TOP_K,
    *,
    higher_is_better: bool = True,
) -> list[ExampleDelta]:
    """The (at most) k examples where the model is worst relative to the reference, worst first.

    Only examples that actually got worse are listed (delta < 0 when higher is better, > 0 when
    lower is better); NaN examples are skipped; ties keep the input order.
    """
    ref = np.asarray(ref_vals, dtype=float).ravel()
    mod = np.asarray(model_vals, dtype=float).ravel()
    _check_ids(ids, len(ref), len(mod))
    delta = mod - ref
    # "badness" is positive when the example got worse, whatever the metric's direction.
    badness = -delta if higher_is_better else delta
    worse = np.flatnonzero(np.isfinite(badness) & (badness > 0))
    order = worse[np.argsort(-badness[worse], kind="stable")][: max(k, 0)]
    return [ExampleDelta(ids[i], delta=float(delta[i]), reference=float(ref[i]), model=float(mod[i])) for i in order]


# --------------------------------------------------------------------------------------------
# Comparisons and verdicts


def verdict_for(direction: int, higher_is_better: bool) -> Verdict:
    """Map a significant direction of the raw delta (+1, -1, 0 = not significant) to a verdict."""
    if direction == 0:
        return "no_significant_change"
    good = direction > 0 if higher_is_better else direction < 0
    return "improved" if good else "regressed"


def compare_pair(
    model_scored: Scored,
    reference_scored: Scored,
    *,
    model: str,
    reference: str,
    metric: str,
    kind: MetricKind,
    higher_is_better: bool,
    ids: Sequence[str],
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    alpha: float = DEFAULT_ALPHA,
    top_k: int = DEFAULT_TOP_K,
) -> Comparison:
    """Compare one model with the reference on one metric (see `Comparison` for the fields).

    Binary metrics: verdict from McNemar's exact p < alpha, in the direction of delta; the
    direction must agree with the discordant counts (c > b means the model fixed more than it
    broke), otherwise (possible only with NaN or a custom aggregate) the change is not called
    significant. Continuous metrics: verdict from the paired bootstrap CI excluding 0.
    """
    if kind not in ("binary", "continuous"):
        raise ConfigError(f"metric {metric!r}: kind must be 'binary' or 'continuous', got {kind!r}")
    _check_ids(ids, _paired_length(model_scored, reference_scored))
    boot = paired_bootstrap(model_scored, reference_scored, resamples=resamples, seed=seed, alpha=alpha)
    delta = boot.estimate
    fixes: list[str] = []
    regressions: list[str] = []
    drops: list[ExampleDelta] = []
    if kind == "binary":
        test: TestName = "mcnemar-exact"
        mc = mcnemar_exact(reference_scored.per_example, model_scored.per_example)
        p_value: float | None = mc.p_value
        direction = 0
        if mc.p_value < alpha and math.isfinite(delta) and delta != 0.0:
            direction = 1 if delta > 0 else -1
            if direction != int(np.sign(mc.c - mc.b)):
                direction = 0
        fixes, regressions = flips(reference_scored.per_example, model_scored.per_example, ids)
    else:
        test = "paired-bootstrap"
        p_value = boot.p_value
        direction = 1 if boot.ci_low > 0.0 else -1 if boot.ci_high < 0.0 else 0
        drops = largest_drops(reference_scored.per_example, model_scored.per_example, ids, top_k,
                              higher_is_better=higher_is_better)
    return Comparison(
        model=model,
        reference=reference,
        metric=metric,
        kind=kind,
        higher_is_better=higher_is_better,
        model_value=float(model_scored.value),
        reference_value=float(reference_scored.value),
        delta=delta,
        ci_low=boot.ci_low,
        ci_high=boot.ci_high,
        n=boot.n,
        test=test,
        p_value=p_value,
        resamples=resamples,
        bootstrap_seed=seed,
        alpha=alpha,
        verdict=verdict_for(direction, higher_is_better),
        fixes=tuple(fixes),
        regressions=tuple(regressions),
        largest_drops=tuple(drops),
    )


def compare_models(
    scores: Mapping[str, Mapping[str, Scored]],
    *,
    reference: str,
    metrics: Sequence[MetricInfo],
    ids: Sequence[str],
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    alpha: float = DEFAULT_ALPHA,
    top_k: int = DEFAULT_TOP_K,
) -> list[Comparison]:
    """Every non-reference model in `scores` against `reference`, for every metric, in that order.

    `scores` maps model name -> metric name -> Scored, all on the examples named by `ids`.
    """
    if reference not in scores:
        raise ConfigError(f"reference model {reference!r} has no scores (models: {', '.join(scores) or 'none'})")
    out = []
    for model, by_metric in scores.items():
        if model == reference:
            continue
        for metric in metrics:
            for who in (model, reference):
                if metric.name not in scores[who]:
                    raise ConfigError(f"model {who!r} has no score for metric {metric.name!r}; score every model on every metric")
            out.append(
                compare_pair(
                    by_metric[metric.name],
                    scores[reference][metric.name],
                    model=model,
                    reference=reference,
                    metric=metric.name,
                    kind=metric.kind,
                    higher_is_better=metric.higher_is_better,
                    ids=ids,
                    resamples=resamples,
                    seed=seed,
                    alpha=alpha,
                    top_k=top_k,
                )
            )
    return out


# --------------------------------------------------------------------------------------------
# Forgetting


def forgetting_of(comparison: Comparison) -> ForgettingModel:
    """Read a comparison on a held-out task (base as reference) as forgetting.

    `drop` is in the metric's units and positive when the model is worse than the reference
    (reference - model for a higher-is-better metric, model - reference otherwise), with the CI
    turned the same way. `forgot` is True when the comparison's verdict is "regressed" (the drop
    is significant). `flipped` lists the examples behind it: for binary metrics those the
    reference got right and the model wrong; for continuous ones the largest drops that are drops.
    """
    c = comparison
    sign = -1.0 if c.higher_is_better else 1.0
    low, high = sorted((sign * c.ci_low, sign * c.ci_high))
    if c.kind == "binary":
        flipped = tuple(c.regressions)
    else:
        flipped = tuple(d.id for d in c.largest_drops if (d.delta < 0 if c.higher_is_better else d.delta > 0))
    return ForgettingModel(sign * c.delta, low, high, c.n, c.verdict == "regressed", flipped)


# --------------------------------------------------------------------------------------------
# Prompting baseline


def prompting_share(
    base_value: float | None,
    prompted_value: float | None,
    adapter_value: float | None,
    higher_is_better: bool = True,
) -> float | None:
    """Share of the adapter's gain over the base that few-shot prompting of the base recovers.

    (prompted - base) / (adapter - base). The ratio reads the same for lower-is-better metrics
    (numerator and denominator flip sign together); only "the adapter has a gain" depends on the
    direction. None when the adapter is not better than the base or any value is undefined.
    """
    values = (base_value, prompted_value, adapter_value)
    if any(v is None or not math.isfinite(v) for v in values):
        return None
    base, prompted, adapter = (float(v) for v in values)  # type: ignore[arg-type]
    gain = adapter - base if higher_is_better else base - adapter
    if gain <= 0.0:
        return None
    return (prompted - base) / (adapter - base)


def prompting_recommendation(
    share: float | None,
    *,
    metric: str,
    prompted_value: float | None,
    adapter_value: float | None,
    threshold: float = PROMPTING_SHARE_THRESHOLD,
) -> str | None:
    """A one-sentence recommendation when prompting recovers at least `threshold` of the gain, else None."""
    if share is None or share < threshold or prompted_value is None or adapter_value is None:
        return None
    values = f"({_num(prompted_value)} vs {_num(adapter_value)})"
    if share >= 1.0:
        return (f"Few-shot prompting of the base model does as well as the adapter on {metric} {values}: "
                "consider prompting instead of fine-tuning.")
    # Floor, not round: 0.799 must not print as "80%" next to an 80% threshold.
    pct = math.floor(share * 100.0 + 1e-9)
    return (f"Few-shot prompting of the base model recovers {pct}% of the adapter's {metric} gain {values}: "
            "consider prompting instead of fine-tuning.")


def prompting_summary(
    *,
    contender: str,
    adapter: str,
    metric: str,
    k: int,
    base_value: float | None,
    prompted_value: float | None,
    adapter_value: float | None,
    higher_is_better: bool = True,
    threshold: float = PROMPTING_SHARE_THRESHOLD,
) -> PromptingResult:
    """Build the `prompting` section: the share of gain and, when it is high, the recommendation."""
    share = prompting_share(base_value, prompted_value, adapter_value, higher_is_better)
    text = prompting_recommendation(share, metric=metric, prompted_value=prompted_value,
                                    adapter_value=adapter_value, threshold=threshold)
    return PromptingResult(contender, adapter, metric, k, _opt_float(base_value), _opt_float(prompted_value),
                           _opt_float(adapter_value), share, text)


# --------------------------------------------------------------------------------------------
# Small helpers


def _opt_float(x: Any) -> float | None:
    return None if x is None else float(x)


__all__ = [
    "BootstrapResult",
    "Comparison",
    "ExampleDelta",
    "McNemarResult",
    "MetricInfo",
    "PromptingResult",
    "ScoreSummary",
    "TestName",
    "VERDICTS",
    "Verdict",
    "bootstrap_ci",
    "compare_models",
    "compare_pair",
    "flips",
    "forgetting_of",
    "largest_drops",
    "mcnemar_exact",
    "paired_bootstrap",
    "prompting_recommendation",
    "prompting_share",
    "prompting_summary",
    "verdict_for",
]
