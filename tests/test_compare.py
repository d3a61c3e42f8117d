"""Statistics of ftevals.compare, checked against scipy/statsmodels and hand-made cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar

from ftevals.compare import (
    Comparison,
    bootstrap_ci,
    compare_models,
    compare_pair,
    flips,
    forgetting_of,
    largest_drops,
    mcnemar_exact,
    paired_bootstrap,
    prompting_recommendation,
    prompting_share,
    prompting_summary,
    verdict_for,
)
from ftevals.errors import ConfigError
from ftevals.metrics.base import Metric, Scored


def _looped(scored: Scored) -> Scored:
    """The same mean-type metric, but through a custom aggregate: forces the per-resample loop."""
    values = scored.per_example

    def aggregate(idx: np.ndarray) -> float:
        vals = values[idx]
        vals = vals[~np.isnan(vals)]
        return float(vals.mean()) if vals.size else math.nan

    return Scored(scored.value, values, aggregate)


def _ids(n: int) -> list[str]:
    return [f"ex-{i:03d}" for i in range(n)]


def _binary_pair(n: int, p_ref: float, p_model: float, seed: int = 0) -> tuple[Scored, Scored]:
    rng = np.random.default_rng(seed)
    return Scored.mean_of((rng.random(n) < p_model).astype(float)), Scored.mean_of((rng.random(n) < p_ref).astype(float))


# ---------------------------------------------------------------- McNemar


def _table(ref: np.ndarray, mod: np.ndarray) -> np.ndarray:
    # statsmodels' table: rows = reference right/wrong, columns = model right/wrong.
    return np.array(
        [[np.sum((ref == 1) & (mod == 1)), np.sum((ref == 1) & (mod == 0))],
         [np.sum((ref == 0) & (mod == 1)), np.sum((ref == 0) & (mod == 0))]]
    )


@pytest.mark.parametrize(("b", "c"), [(0, 0), (0, 1), (1, 0), (3, 3), (0, 7), (12, 4), (5, 25), (40, 61), (200, 150),
                                    (1990, 2005), (2100, 2000)])
def test_mcnemar_matches_statsmodels_and_binomtest(b: int, c: int) -> None:
    ref = np.array([1] * b + [0] * c + [1] * 5 + [0] * 4, dtype=float)
    mod = np.array([0] * b + [1] * c + [1] * 5 + [0] * 4, dtype=float)
    result = mcnemar_exact(ref, mod)
    assert (result.b, result.c, result.n) == (b, c, b + c + 9)
    expected = sm_mcnemar(_table(ref, mod), exact=True).pvalue
    assert result.p_value == pytest.approx(expected, rel=1e-12, abs=1e-300)
    if b + c:
        assert result.p_value == pytest.approx(stats.binomtest(min(b, c), b + c, 0.5).pvalue, rel=1e-12)
    else:
        assert result.p_value == 1.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=80))
def test_mcnemar_property_against_statsmodels(pairs: list[tuple[bool, bool]]) -> None:
    ref = np.array([a for a, _ in pairs], dtype=float)
    mod = np.array([b for _, b in pairs], dtype=float)
    assert mcnemar_exact(ref, mod).p_value == pytest.approx(sm_mcnemar(_table(ref, mod), exact=True).pvalue, rel=1e-9)


def test_mcnemar_leaves_out_undefined_pairs_and_rejects_non_binary() -> None:
    ref = np.array([1, 1, 0, np.nan, 1])
    mod = np.array([0, np.nan, 1, 1, 1])
    result = mcnemar_exact(ref, mod)
    assert (result.b, result.c, result.n) == (1, 1, 3)
    with pytest.raises(ConfigError, match=r"model outcomes must be 0/1 .* element 1 is 0\.5"):
        mcnemar_exact([1, 0], [1, 0.5])
    with pytest.raises(ConfigError, match="different lengths"):
        mcnemar_exact([1, 0], [1, 0, 1])


# ---------------------------------------------------------------- bootstrap


@pytest.mark.parametrize("with_nan", [False, True])
def test_vectorised_bootstrap_equals_the_loop_on_the_same_seed(with_nan: bool) -> None:
    rng = np.random.default_rng(3)
    model_vals, ref_vals = rng.random(150), rng.random(150)
    if with_nan:
        model_vals[rng.random(150) < 0.1] = np.nan
        ref_vals[rng.random(150) < 0.1] = np.nan
    model, ref = Scored.mean_of(model_vals), Scored.mean_of(ref_vals)
    fast = paired_bootstrap(model, ref, resamples=500, seed=11)
    slow = paired_bootstrap(_looped(model), _looped(ref), resamples=500, seed=11)
    assert fast.estimate == slow.estimate == model.value - ref.value
    assert fast.ci_low == pytest.approx(slow.ci_low, abs=1e-12)
    assert fast.ci_high == pytest.approx(slow.ci_high, abs=1e-12)
    assert fast.p_value == slow.p_value
    single_fast, single_slow = bootstrap_ci(model, resamples=500, seed=11), bootstrap_ci(_looped(model), resamples=500, seed=11)
    assert (single_fast.ci_low, single_fast.ci_high) == pytest.approx((single_slow.ci_low, single_slow.ci_high), abs=1e-12)


def test_bootstrap_is_reproducible_and_depends_on_the_seed() -> None:
    model, ref = _binary_pair(300, 0.5, 0.6, seed=1)
    first = paired_bootstrap(model, ref, seed=5)
    assert paired_bootstrap(model, ref, seed=5) == first
    other = paired_bootstrap(model, ref, seed=6)
    assert (other.ci_low, other.ci_high) != (first.ci_low, first.ci_high)
    assert (first.resamples, first.seed, first.alpha, first.n) == (2000, 5, 0.05, 300)


def test_paired_ci_agrees_with_scipy_bootstrap_and_the_normal_approximation() -> None:
    rng = np.random.default_rng(7)
    shared = rng.normal(0.5, 0.2, 400)  # between-example variation both models share
    ref_vals = shared + rng.normal(0, 0.05, 400)
    model_vals = shared + 0.03 + rng.normal(0, 0.05, 400)
    ours = paired_bootstrap(Scored.mean_of(model_vals), Scored.mean_of(ref_vals), resamples=4000, seed=0)
    theirs = stats.bootstrap(
        (model_vals, ref_vals), lambda m, r, axis=-1: m.mean(axis=axis) - r.mean(axis=axis),
        paired=True, vectorized=True, n_resamples=4000, method="percentile", random_state=1,
    ).confidence_interval
    se = np.std(model_vals - ref_vals, ddof=1) / math.sqrt(400)
    for low, high in ((theirs.low, theirs.high), (ours.estimate - 1.96 * se, ours.estimate + 1.96 * se)):
        assert ours.ci_low == pytest.approx(low, abs=0.15 * (high - low))
        assert ours.ci_high == pytest.approx(high, abs=0.15 * (high - low))
    # Pairing matters: the unpaired interval would be several times wider than this one.
    assert ours.ci_high - ours.ci_low < 0.4 * 2 * 1.96 * math.hypot(model_vals.std(), ref_vals.std()) / math.sqrt(400)


def test_paired_ci_covers_a_known_effect_about_95_percent_of_the_time() -> None:
    true_delta, hits, trials = 0.05, 0, 60
    for trial in range(trials):
        rng = np.random.default_rng(1000 + trial)
        ref_vals = rng.normal(0.5, 0.2, 200)
        model_vals = ref_vals + true_delta + rng.normal(0, 0.1, 200)
        r = paired_bootstrap(Scored.mean_of(model_vals), Scored.mean_of(ref_vals), resamples=1000, seed=trial)
        hits += r.ci_low <= true_delta <= r.ci_high
    assert 0.85 <= hits / trials <= 1.0


def test_bootstrap_p_value_extremes() -> None:
    same = Scored.mean_of([0.1, 0.5, 0.9, 0.3])
    r = paired_bootstrap(same, same, resamples=100)
    assert (r.estimate, r.ci_low, r.ci_high, r.p_value) == (0.0, 0.0, 0.0, 1.0)
    better = Scored.mean_of([0.2, 0.6, 1.0, 0.4])
    r = paired_bootstrap(better, same, resamples=99)
    assert r.ci_low == pytest.approx(0.1) and r.ci_high == pytest.approx(0.1)
    assert r.p_value == pytest.approx(2 / 100)  # never 0: the +1 correction


def test_custom_aggregate_is_used_for_corpus_level_metrics() -> None:
    # A corpus-level metric (sum of hits / sum of attempts) that is not the mean of per-example values.
    hits, attempts = np.array([1.0, 0, 3, 2, 5]), np.array([1.0, 2, 4, 2, 10])

    def ratio(idx: np.ndarray) -> float:
        return float(hits[idx].sum() / attempts[idx].sum())

    model = Scored(ratio(np.arange(5)), hits / attempts, ratio)
    r = bootstrap_ci(model, resamples=300, seed=2)
    assert r.estimate == pytest.approx(11 / 19)
    assert r.ci_low <= r.estimate <= r.ci_high
    assert r.ci_low != bootstrap_ci(Scored.mean_of(hits / attempts), resamples=300, seed=2).ci_low


def test_bootstrap_rejects_bad_settings_and_mismatched_lengths() -> None:
    a = Scored.mean_of([1.0, 0.0])
    with pytest.raises(ConfigError, match="resamples must be a whole number >= 1, got 0"):
        bootstrap_ci(a, resamples=0)
    with pytest.raises(ConfigError, match="alpha must lie strictly between 0 and 1"):
        paired_bootstrap(a, a, alpha=1.5)
    with pytest.raises(ConfigError, match="the model has 2 per-example values and the reference has 3"):
        paired_bootstrap(a, Scored.mean_of([1.0, 0.0, 1.0]))


def test_all_undefined_values_give_undefined_intervals() -> None:
    empty = Scored.mean_of([np.nan, np.nan])
    r = paired_bootstrap(empty, Scored.mean_of([1.0, 0.0]), resamples=50)
    assert math.isnan(r.estimate) and math.isnan(r.ci_low) and r.p_value is None


# ---------------------------------------------------------------- flips and drops


def test_flips_on_hand_made_arrays() -> None:
    ref = [1, 0, 1, 0, 1, np.nan, 0]
    mod = [1, 1, 0, 0, 0, 1, 1]
    fixes, regressions = flips(ref, mod, ["a", "b", "c", "d", "e", "f", "g"])
    assert fixes == ["b", "g"]
    assert regressions == ["c", "e"]
    with pytest.raises(ConfigError, match="got 2 example ids for 7 and 7 per-example values"):
        flips(ref, mod, ["a", "b"])


def test_largest_drops_respects_the_metric_direction() -> None:
    ids = ["a", "b", "c", "d", "e"]
    ref = [0.5, 0.9, 0.2, 0.7, np.nan]
    mod = [0.4, 0.3, 0.6, 0.6, 0.0]
    worst = largest_drops(ref, mod, ids, k=20)
    assert [d.id for d in worst] == ["b", "a", "d"]  # b fell 0.6; a and d fell 0.1, input order kept
    assert worst[0].delta == pytest.approx(-0.6)
    assert [d.id for d in largest_drops(ref, mod, ids, k=1)] == ["b"]
    # Lower is better (e.g. edit distance): going up is the drop.
    assert [d.id for d in largest_drops(ref, mod, ids, higher_is_better=False)] == ["c"]


# ---------------------------------------------------------------- verdicts


def _compare(model: Scored, ref: Scored, *, kind: str, hib: bool = True) -> Comparison:
    return compare_pair(model, ref, model="adapter", reference="base", metric="m", kind=kind,  # type: ignore[arg-type]
                        higher_is_better=hib, ids=_ids(len(model.per_example)), resamples=500)


def test_binary_verdicts_follow_mcnemar_and_the_direction() -> None:
    n = 100
    ref = np.zeros(n)
    ref[:50] = 1
    mod = ref.copy()
    mod[50:70] = 1  # 20 fixes, 0 regressions
    up = _compare(Scored.mean_of(mod), Scored.mean_of(ref), kind="binary")
    assert up.test == "mcnemar-exact" and up.verdict == "improved" and up.delta == pytest.approx(0.2)
    assert up.p_value == pytest.approx(stats.binomtest(0, 20, 0.5).pvalue)
    assert len(up.fixes) == 20 and up.regressions == () and up.ci_low > 0
    down = _compare(Scored.mean_of(ref), Scored.mean_of(mod), kind="binary")
    assert down.verdict == "regressed" and len(down.regressions) == 20
    # Lower is better (e.g. "refused"): the same rise is a regression.
    assert _compare(Scored.mean_of(mod), Scored.mean_of(ref), kind="binary", hib=False).verdict == "regressed"
    few = mod.copy()
    few[53:70] = 0  # 3 fixes: p = 0.25
    assert _compare(Scored.mean_of(few), Scored.mean_of(ref), kind="binary").verdict == "no_significant_change"


def test_continuous_verdicts_follow_the_ci_including_lower_is_better() -> None:
    rng = np.random.default_rng(0)
    ref_vals = rng.random(300)
    higher = ref_vals + 0.05 + rng.normal(0, 0.02, 300)
    noisy = ref_vals + rng.normal(0, 0.02, 300) - 0.001
    up = _compare(Scored.mean_of(higher), Scored.mean_of(ref_vals), kind="continuous")
    assert up.test == "paired-bootstrap" and up.verdict == "improved" and up.ci_low > 0
    # A perplexity-like metric: higher values are worse.
    assert _compare(Scored.mean_of(higher), Scored.mean_of(ref_vals), kind="continuous", hib=False).verdict == "regressed"
    assert _compare(Scored.mean_of(ref_vals), Scored.mean_of(higher), kind="continuous", hib=False).verdict == "improved"
    flat = _compare(Scored.mean_of(noisy), Scored.mean_of(ref_vals), kind="continuous")
    assert flat.verdict == "no_significant_change" and flat.ci_low < 0 < flat.ci_high
    assert flat.largest_drops and all(d.delta < 0 for d in flat.largest_drops) and len(flat.largest_drops) == 20


def test_verdict_for_table() -> None:
    assert verdict_for(1, True) == "improved"
    assert verdict_for(-1, True) == "regressed"
    assert verdict_for(-1, False) == "improved"
    assert verdict_for(1, False) == "regressed"
    assert verdict_for(0, False) == "no_significant_change"


def test_comparison_dict_fits_the_schema_and_round_trips() -> None:
    model, ref = _binary_pair(80, 0.4, 0.7, seed=4)
    comp = _compare(model, ref, kind="binary")
    data = comp.to_dict()
    assert list(data) == ["model", "reference", "metric", "kind", "higher_is_better", "model_value",
                          "reference_value", "delta", "ci_low", "ci_high", "n", "test", "p_value", "resamples",
                          "bootstrap_seed", "alpha", "verdict", "fixes", "regressions", "largest_drops"]
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert Comparison.from_dict(data) == comp
    undefined = _compare(Scored.mean_of([np.nan] * 3), Scored.mean_of([1.0, 0.0, 1.0]), kind="continuous")
    data = undefined.to_dict()
    assert data["model_value"] is None and data["delta"] is None and data["ci_low"] is None
    assert undefined.verdict == "no_significant_change"
    json.dumps(data, allow_nan=False)


def test_compare_models_covers_every_non_reference_model_and_metric() -> None:
    acc = Metric("accuracy", lambda p, e: Scored.mean_of([]), True, "binary")
    loss = Metric("loss", lambda p, e: Scored.mean_of([]), False, "continuous")
    scores = {
        "base": {"accuracy": Scored.mean_of([1.0, 0, 0, 1]), "loss": Scored.mean_of([0.5, 0.4, 0.3, 0.2])},
        "a1": {"accuracy": Scored.mean_of([1.0, 1, 0, 1]), "loss": Scored.mean_of([0.4, 0.4, 0.3, 0.1])},
        "a2": {"accuracy": Scored.mean_of([0.0, 0, 0, 1]), "loss": Scored.mean_of([0.6, 0.4, 0.3, 0.2])},
    }
    out = compare_models(scores, reference="base", metrics=[acc, loss], ids=_ids(4), resamples=100)
    assert [(c.model, c.metric, c.test) for c in out] == [
        ("a1", "accuracy", "mcnemar-exact"), ("a1", "loss", "paired-bootstrap"),
        ("a2", "accuracy", "mcnemar-exact"), ("a2", "loss", "paired-bootstrap")]
    assert out[0].fixes == ("ex-001",) and out[2].regressions == ("ex-000",)
    del scores["a2"]["loss"]
    with pytest.raises(ConfigError, match="model 'a2' has no score for metric 'loss'"):
        compare_models(scores, reference="base", metrics=[acc, loss], ids=_ids(4))


# ---------------------------------------------------------------- forgetting and prompting


def test_forgetting_drop_is_positive_when_the_adapter_got_worse() -> None:
    base = np.array([1.0] * 40 + [0.0] * 10)
    adapter = base.copy()
    adapter[:15] = 0.0
    comp = compare_pair(Scored.mean_of(adapter), Scored.mean_of(base), model="adapter", reference="base",
                        metric="accuracy", kind="binary", higher_is_better=True, ids=_ids(50), resamples=300)
    result = forgetting_of(comp)
    assert result.drop == pytest.approx(0.3)
    assert 0 < result.ci_low <= result.drop <= result.ci_high
    assert result.forgot and result.flipped == tuple(_ids(15))
    # Lower-is-better: the drop is adapter - base; only real drops count as flipped.
    lower = forgetting_of(compare_pair(Scored.mean_of([0.5, 0.6, 0.1]), Scored.mean_of([0.2, 0.3, 0.4]),
                                       model="adapter", reference="base", metric="ppl", kind="continuous",
                                       higher_is_better=False, ids=["x", "y", "z"], resamples=50))
    assert lower.drop == pytest.approx(0.1) and lower.flipped == ("x", "y")
    assert lower.ci_low <= lower.ci_high


def test_prompting_share_and_recommendation() -> None:
    assert prompting_share(0.02, 0.12, 0.41, True) == pytest.approx(0.10 / 0.39)
    assert prompting_share(0.5, 0.6, 0.5, True) is None  # the adapter has no gain
    assert prompting_share(0.5, 0.6, 0.4, True) is None
    assert prompting_share(0.5, 0.6, None, True) is None
    assert prompting_share(2.0, 1.5, 1.0, False) == pytest.approx(0.5)  # perplexity 2.0 -> 1.5 vs 1.0
    assert prompting_share(2.0, 1.5, 2.5, False) is None
    text = prompting_recommendation(0.85, metric="accuracy", prompted_value=0.61, adapter_value=0.64)
    assert text == ("Few-shot prompting of the base model recovers 85% of the adapter's accuracy gain "
                    "(0.610 vs 0.640): consider prompting instead of fine-tuning.")
    assert prompting_recommendation(0.79, metric="accuracy", prompted_value=0.6, adapter_value=0.64) is None
    summary = prompting_summary(contender="base-fewshot", adapter="banking77", metric="accuracy", k=8,
                                base_value=0.02, prompted_value=0.12, adapter_value=0.41)
    assert summary.to_dict() == {
        "contender": "base-fewshot", "adapter": "banking77", "metric": "accuracy", "k": 8, "base_value": 0.02,
        "prompted_value": 0.12, "adapter_value": 0.41, "share_of_gain": pytest.approx(0.2564, abs=1e-4),
        "recommendation": None}
    beats = prompting_summary(contender="f", adapter="a", metric="rougeL", k=4, base_value=0.2,
                              prompted_value=0.5, adapter_value=0.45)
    assert beats.recommendation == ("Few-shot prompting of the base model does as well as the adapter on rougeL "
                                    "(0.500 vs 0.450): consider prompting instead of fine-tuning.")
