"""The judge stage through the real pipeline, with scripted judges whose every verdict is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from support.scriptedjudge import CRITERIA, total, truth

from ftevals.errors import ConfigError
from ftevals.results import load
from ftevals.suite import Judge



def _expected_outcomes(ids: list[str]) -> dict[str, int]:
    outcomes = {"win": 0, "loss": 0, "tie": 0}
    for ex in ids:
        diff = total("tuned", ex, CRITERIA) - total("base", ex, CRITERIA)
        outcomes["win" if diff > 0 else "loss" if diff < 0 else "tie"] += 1
    return outcomes


def test_an_agreeing_judge_gives_the_true_scores_win_rate_and_no_bias(judged) -> None:
    results = judged.run("agree")
    judge = results.suites[0].judge
    assert judge is not None and judge.identity.model == "base" and judge.criteria == CRITERIA
    for model in ("base", "tuned"):
        for c in CRITERIA:
            want = np.mean([truth(model, ex, c) for ex in judged.ids])
            score = judge.scores[model][c]
            assert score.value == pytest.approx(want) and score.n == 20
            assert score.ci_low <= score.value <= score.ci_high
    comp = next(c for c in judge.comparisons if c.metric == "judge:correctness")
    assert comp.model == "tuned" and comp.reference == "base" and comp.test == "paired-bootstrap"
    assert comp.delta == pytest.approx(judge.scores["tuned"]["correctness"].value - judge.scores["base"]["correctness"].value)
    outcomes = _expected_outcomes(judged.ids)
    w = judge.win_rates["tuned"]
    assert (w.wins, w.losses, w.ties, w.inconsistent, w.unparseable, w.n) == (
        outcomes["win"], outcomes["loss"], outcomes["tie"], 0, 0, 20)
    assert w.win_rate == pytest.approx(outcomes["win"] / 20) and w.ci_low < w.win_rate < w.ci_high
    assert judge.position_bias == 0.0
    assert judge.parsing is not None and judge.parsing.requests == 20 * 2 * 2 + 20 * 2
    assert judge.parsing.first_try_unparseable == judge.parsing.retried == 0
    # Length bias: every output here is one short label, so it is a defined number in [-1, 1].
    assert all(v is None or -1 <= v <= 1 for v in judge.length_bias.values())


def test_an_anti_agreeing_judge_mirrors_every_score_and_verdict(judged) -> None:
    judge = judged.run("anti").suites[0].judge
    assert judge is not None
    for c in CRITERIA:
        want = np.mean([6 - truth("tuned", ex, c) for ex in judged.ids])
        assert judge.scores["tuned"][c].value == pytest.approx(want)
    outcomes = _expected_outcomes(judged.ids)
    w = judge.win_rates["tuned"]
    assert (w.wins, w.losses, w.ties) == (outcomes["loss"], outcomes["win"], outcomes["tie"])


def test_a_position_biased_judge_wins_nothing_and_its_bias_is_measured(judged) -> None:
    judge = judged.run("position").suites[0].judge
    assert judge is not None
    w = judge.win_rates["tuned"]
    # "A" in both orders: the model first, then the reference. Every pair is inconsistent.
    assert (w.wins, w.losses, w.ties, w.inconsistent, w.n) == (0, 0, 0, 20, 20) and w.win_rate == 0.0
    assert judge.position_bias == 1.0
    assert all(it.orders == ("model", "reference") and it.verdict == "inconsistent"
               for it in judge.items if it.model == "tuned")


def test_unparseable_verdicts_are_recorded_as_missing_counted_and_never_guessed(judged) -> None:
    results = judged.run("unparseable", gates=["judge:correctness >= base"])
    judge = results.suites[0].judge
    assert judge is not None and judge.parsing is not None
    n = judge.parsing.requests
    assert judge.parsing.first_try_unparseable == judge.parsing.retried == n
    assert judge.parsing.unparseable_pointwise == 80 and judge.parsing.unparseable_pairwise == 40
    assert all(v is None for it in judge.items for v in it.scores.values())
    assert all(it.verdict is None for it in judge.items)
    assert judge.scores["tuned"]["correctness"].value is None and judge.scores["tuned"]["correctness"].n == 0
    assert judge.comparisons == () and judge.position_bias is None
    w = judge.win_rates["tuned"]
    assert (w.n, w.unparseable, w.win_rate) == (0, 20, None)


def test_an_unreadable_verdict_is_asked_again_once_and_the_second_answer_counts(judged) -> None:
    judge = judged.run("retry_fixes").suites[0].judge
    assert judge is not None and judge.parsing is not None
    assert judge.parsing.first_try_unparseable == judge.parsing.retried == judge.parsing.requests
    assert judge.parsing.unparseable_pointwise == judge.parsing.unparseable_pairwise == 0
    assert judge.scores["tuned"]["format"].value == pytest.approx(np.mean([truth("tuned", e, "format") for e in judged.ids]))


def test_without_retry_an_unreadable_verdict_stays_unreadable(judged) -> None:
    judge = judged.run("retry_fixes", judge=Judge("base", retry=False)).suites[0].judge
    assert judge is not None and judge.parsing is not None
    assert judge.parsing.retried == 0 and judge.parsing.unparseable_pointwise == 80


def test_judge_calls_go_through_the_generation_cache_and_a_rerun_gives_the_same_file(judged) -> None:
    first = judged.run("agree")
    # Same predictions file (same backend identity): everything comes from the cache.
    second = judged.run("agree")
    assert second.run.timings["generated"] == second.run.timings["judge_generated"] == 0
    assert second.run.timings["judge_cached"] == first.run.timings["judge_generated"] > 0
    assert first.suites[0].judge == second.suites[0].judge


def test_the_results_file_round_trips_the_judge_block(judged) -> None:
    results = judged.run("agree", gates=["judge:correctness >= base"])
    path = judged.save(results)
    again = load(path)
    assert again.suites[0].judge == results.suites[0].judge
    assert again.suites[0].gates == results.suites[0].gates


def test_a_pointwise_judge_has_no_win_rate_and_a_pairwise_one_no_scores(judged) -> None:
    point = judged.run("agree", judge=Judge("base", mode="pointwise")).suites[0].judge
    pair = judged.run("agree", judge=Judge("base", mode="pairwise")).suites[0].judge
    assert point is not None and pair is not None
    assert point.win_rates == {} and point.position_bias is None and point.criteria == CRITERIA
    assert pair.scores["tuned"] == {} and pair.criteria == () and pair.win_rates["tuned"].n == 20


def test_a_suite_without_a_judge_has_no_judge_block(judged) -> None:
    results = judged.run("agree", judge=None)
    assert results.suites[0].judge is None
    assert "judge" not in results.to_dict()["suites"][0]


@pytest.mark.parametrize(("gates", "judge", "message"), [
    (["judge:correctness >= base"], None, "needs an LLM judge; add judge="),
    (["judge:helpfulness >= base"], "base", "has no criterion 'helpfulness' (criteria: correctness, format)"),
    (["judge_win_rate >= base"], "base", "already against the reference"),
    (["judge:correctness >= 80%"], "base", "not 0-1; write a plain number"),
    (["judge_win_rate > 0.5"], Judge("base", mode="pointwise"), "needs a pairwise judge"),
    (["judge:correctness >= 3"], Judge("base", mode="pairwise"), "need a pointwise judge"),
    ([], "nobody", "the judge 'nobody' is not in the model table"),
])
def test_bad_judge_settings_are_refused_before_anything_runs(judged, gates, judge, message) -> None:
    with pytest.raises(ConfigError) as info:
        judged.run("agree", gates=gates, judge=judge)
    assert message in str(info.value)


def test_a_bad_calibration_file_is_refused_at_start_up_naming_it(judged) -> None:
    (judged.root / "baselines").mkdir()
    (judged.root / "baselines" / "demo.judge-calibration.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        judged.run("agree", gates=["judge:correctness >= base"])
    assert "demo.judge-calibration.json" in str(info.value) and "not valid JSON" in str(info.value)
    assert not (judged.root / "cache").exists() or not any((judged.root / "cache").rglob("*.jsonl"))


def test_judge_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="mode must be"):
        Judge("base", mode="both-ways")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="min_items must be >= 2"):
        Judge("base", min_items=1)
    assert math.isclose(Judge("base").min_alpha, 0.67) and Judge("base").min_items == 30
