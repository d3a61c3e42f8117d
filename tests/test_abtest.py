"""A/B import: unpaired tests checked against statsmodels/scipy, the committed example file, the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ftevals.abtest import analyse, attach, two_proportions, two_samples
from ftevals.cli import main
from ftevals.errors import ConfigError, DatasetError
from ftevals.results import load

ROOT = Path(__file__).resolve().parents[1]
AB = ROOT / "data" / "production-logs" / "ab.jsonl"
FIXTURE = ROOT / "tests" / "fixtures" / "real_results.json"


@pytest.mark.parametrize("counts", [(232, 400, 285, 400), (3, 12, 9, 14), (50, 50, 48, 50)])
def test_two_proportions_match_statsmodels(counts):
    from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

    k_c, n_c, k_t, n_t = counts
    delta, low, high, p, test = two_proportions(k_c, n_c, k_t, n_t)
    ref_low, ref_high = confint_proportions_2indep(k_t, n_t, k_c, n_c, method="newcomb", compare="diff")
    assert (low, high) == pytest.approx((ref_low, ref_high), abs=1e-9)
    assert delta == pytest.approx(k_t / n_t - k_c / n_c)
    if test == "two-proportion z":
        assert p == pytest.approx(proportions_ztest([k_t, k_c], [n_t, n_c])[1], rel=1e-9)
    else:  # small expected counts: Fisher's exact test
        from scipy.stats import fisher_exact

        assert counts != (232, 400, 285, 400)
        assert p == pytest.approx(fisher_exact([[k_t, n_t - k_t], [k_c, n_c - k_c]]).pvalue)


def test_two_samples_use_mann_whitney_and_a_seeded_bootstrap():
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(1)
    c, t = rng.integers(1, 6, 80), rng.integers(2, 6, 90)
    delta, low, high, p, test = two_samples(c, t)
    assert test == "Mann-Whitney U" and p == pytest.approx(mannwhitneyu(t, c, alternative="two-sided").pvalue)
    assert delta == pytest.approx(t.mean() - c.mean()) and low < delta < high
    assert two_samples(c, t)[1:3] == (low, high)  # seeded: the same interval every time


def test_the_example_file_counts_its_drops_and_sits_beside_the_offline_verdict(tmp_path):
    ab = analyse(AB, control="base", treatment="banking77", lower_is_better=["escalated"])
    assert dict(ab.dropped) == {"arm is not base or banking77": 1, "no rating": 85, "unreadable JSON": 2}
    by = {o.outcome: o for o in ab.outcomes}
    assert set(by) == {"escalated", "rating", "resolved"}
    assert by["resolved"].kind == "proportion" and by["resolved"].verdict == "improved"
    assert by["rating"].kind == "score" and by["rating"].test == "Mann-Whitney U"
    assert not by["escalated"].higher_is_better
    results = attach(load(FIXTURE), "banking77", ab)
    suite = next(s for s in results.suites if s.name == "banking77")
    assert suite.ab is not None and suite.ab.offline_metric == "accuracy"
    assert suite.ab.offline_verdict == suite.comparison("banking77", "accuracy").verdict
    assert suite.ab.agreement == ("agree" if suite.ab.offline_verdict == "improved" else "inconclusive")


def test_bad_arms_and_suites_are_named(tmp_path):
    with pytest.raises(ConfigError, match="both 'base'"):
        analyse(AB, control="base", treatment="base")
    ab = analyse(AB, control="base", treatment="banking77")
    with pytest.raises(ConfigError, match="no suite 'nope'"):
        attach(load(FIXTURE), "nope", ab)
    with pytest.raises(ConfigError, match="suite 'dialogsum' has no model 'banking77'"):
        attach(load(FIXTURE), "dialogsum", ab)
    empty = tmp_path / "ab.jsonl"
    empty.write_text(json.dumps({"arm": "base", "note": "x"}) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="no numeric or yes/no outcome"):
        analyse(empty, control="base", treatment="banking77")


def test_cli_writes_the_results_and_the_report_shows_the_ab(tmp_path, capsys):
    out = tmp_path / "results.json"
    assert main(["ab", str(FIXTURE), str(AB), "--suite", "banking77", "--treatment", "banking77",
                 "--lower-is-better", "escalated", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "resolved: 0.713 vs 0.595 (+0.118" in printed and "online and offline" in printed
    assert load(out).suites[0].ab is not None  # the file validates with its A/B
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Online A/B: banking77 vs base" in html and "Mann-Whitney U" in html
