"""Multiplicity: a suite's significance calls are adjusted together (Holm by default)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from ftevals import compare as cmp
from ftevals.errors import ConfigError, ResultsError
from ftevals.gate import evaluate_gate, parse_gate
from ftevals.metrics import Scored, get_metric
from ftevals.multiplicity import adjust_family, adjusted_p_values, compare_suite, recorded_method
from ftevals.results import Comparison
from ftevals.suite import Suite


@pytest.mark.parametrize("method, peer", [("holm", "holm"), ("bonferroni", "bonferroni")])
def test_adjusted_p_values_equal_statsmodels(method: str, peer: str) -> None:
    # The reference implementation, run for real, on random families with ties.
    rng = np.random.default_rng(0)
    for size in (2, 3, 6, 12):
        p = np.round(rng.uniform(0, 0.2, size), 3)
        expected = multipletests(p, alpha=0.05, method=peer)[1]
        assert adjusted_p_values(list(p), method) == pytest.approx(list(expected), abs=1e-12)  # type: ignore[arg-type]


def comparison(model: str, metric: str, p: float, verdict: str = "improved") -> Comparison:
    return Comparison(model, "base", metric, "binary", True, 0.6, 0.5, 0.1, 0.02, 0.18, 200, "mcnemar-exact", p,
                      2000, 0, 0.05, verdict, fixes=("a",) * 30, regressions=("b",) * 10)  # type: ignore[arg-type]


def test_adjustment_takes_significance_away_and_keeps_the_raw_p() -> None:
    family = [comparison("a", "accuracy", 0.004), comparison("a", "macro_f1", 0.03),
              comparison("b", "accuracy", 0.5, "no_significant_change")]
    out = adjust_family(family, "holm")
    assert [c.p_value for c in out] == [0.004, 0.03, 0.5]  # raw kept
    assert [c.p_adjusted for c in out] == pytest.approx([0.012, 0.06, 0.5])
    assert [c.verdict for c in out] == ["improved", "no_significant_change", "no_significant_change"]
    assert {(c.adjustment, c.family_size) for c in out} == {("holm", 3)}
    assert out[0].to_dict()["p_adjusted"] == pytest.approx(0.012)


def test_a_single_comparison_or_none_is_not_adjusted() -> None:
    one = [comparison("a", "accuracy", 0.03)]
    assert adjust_family(one) == one and "p_adjusted" not in one[0].to_dict()
    two = [comparison("a", "accuracy", 0.03), comparison("b", "accuracy", 0.04)]
    assert adjust_family(two, "none") == two


def test_significantly_gates_use_the_adjusted_verdict() -> None:
    gate = parse_gate("accuracy > base significantly")
    raw = comparison("a", "accuracy", 0.03)
    adjusted = adjust_family([raw, comparison("a", "macro_f1", 0.04)])[0]
    assert evaluate_gate(gate, "a", {}, [raw]).passed
    result = evaluate_gate(gate, "a", {}, [adjusted])
    assert not result.passed
    assert "p=0.030, holm-adjusted p=0.060 over 2 comparisons" in result.message


def test_the_suite_setting_is_checked() -> None:
    assert Suite(name="s", dataset="d.jsonl").multiplicity == "holm"
    with pytest.raises(ConfigError, match="multiplicity must be 'holm', 'bonferroni' or 'none'"):
        Suite(name="s", dataset="d.jsonl", multiplicity="fdr")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown multiplicity method"):
        adjust_family([replace(comparison("a", "x", 0.1))] * 2, "fdr")  # type: ignore[arg-type]


def _right(*flags: int) -> Scored:
    return Scored.mean_of([float(f) for f in flags])


def test_compare_suite_adjusts_the_family_it_compares() -> None:
    ids = [f"e{i}" for i in range(12)]
    scores = {"base": {"exact_match": _right(*[0] * 12)}, "a": {"exact_match": _right(*[1] * 12)},
              "b": {"exact_match": _right(*[1] * 6, *[0] * 6)}}
    metrics = [get_metric("exact_match")]
    raw = cmp.compare_models(scores, reference="base", metrics=metrics, ids=ids, resamples=200)
    out = compare_suite(scores, reference="base", metrics=metrics, ids=ids, multiplicity="holm", resamples=200)
    assert out == adjust_family(raw, "holm") and {c.family_size for c in out} == {2}
    assert compare_suite(scores, reference="base", metrics=metrics, ids=ids, multiplicity="none", resamples=200) == raw
    # Each model against its own reference (two runs): one family all the same.
    paired = compare_suite(scores, reference={"a": "base", "b": "a"}, metrics=metrics, ids=ids, multiplicity="holm",
                           resamples=200)
    assert [(c.model, c.reference, c.family_size) for c in paired] == [("a", "base", 2), ("b", "a", 2)]
    with pytest.raises(ConfigError, match="model 'c' has no scores"):
        compare_suite(scores, reference={"c": "base"}, metrics=metrics, ids=ids, multiplicity="holm")
    with pytest.raises(ConfigError, match="unknown multiplicity method 'fdr'"):
        compare_suite(scores, reference="base", metrics=metrics, ids=ids, multiplicity="fdr")  # type: ignore[arg-type]


def test_the_recorded_method_is_read_from_the_comparisons() -> None:
    family = adjust_family([comparison("a", "accuracy", 0.01), comparison("b", "accuracy", 0.2)], "bonferroni")
    assert recorded_method(family) == "bonferroni"
    assert recorded_method([comparison("a", "accuracy", 0.01)]) == "none"  # nothing adjusted, nothing recorded
    mixed = [family[0], replace(family[1], adjustment="holm")]
    with pytest.raises(ResultsError, match="suite 's': the comparisons record the multiplicity adjustment "
                                           "'bonferroni' and 'holm'"):
        recorded_method(mixed, "suite 's'")
