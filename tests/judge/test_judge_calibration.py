"""Calibrating the judge against the raters: the figures (checked against the `krippendorff`
package and scikit-learn), the calibration file, and the four states a criterion can be in."""

from __future__ import annotations

import json
import random

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, confusion_matrix
from support.scriptedjudge import rate_and_merge

from ftevals.cli import main
from ftevals.errors import ConfigError, ResultsError
from ftevals.judge.calibration import criterion_agreement, load_calibration, write_calibration
from ftevals.results import load
from ftevals.suite import Judge

LEVELS = [1, 2, 3, 4, 5]


def _random_units(seed: int, n: int = 40, raters: int = 3) -> tuple[dict, dict]:
    rng = random.Random(seed)
    humans, judge = {}, {}
    for i in range(n):
        unit = (f"ex{i:02d}", "tuned")
        latent = rng.randint(1, 5)
        chosen = rng.sample([f"r{k}" for k in range(raters)], 2)
        humans[unit] = {r: min(5, max(1, latent + rng.choice([-1, 0, 0, 1]))) for r in chosen}
        judge[unit] = min(5, max(1, latent + rng.choice([-2, -1, 0, 0, 1])))
    return humans, judge


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_figures_match_the_krippendorff_package_and_scikit_learn(seed: int) -> None:
    humans, judge = _random_units(seed)
    fig = criterion_agreement("helpfulness", humans, judge, LEVELS)
    units = sorted(humans)
    consensus = [int(np.floor(np.median(list(humans[u].values())) + 0.5)) for u in units]
    verdicts = [judge[u] for u in units]
    raters = sorted({r for u in units for r in humans[u]})
    matrix = [[humans[u].get(r, np.nan) for u in units] for r in raters]
    assert fig.n_items == 40
    assert fig.alpha == pytest.approx(krippendorff.alpha(reliability_data=[verdicts, consensus],
                                                         level_of_measurement="ordinal"))
    assert fig.alpha_humans == pytest.approx(krippendorff.alpha(reliability_data=matrix, level_of_measurement="ordinal"))
    assert fig.alpha_with_judge == pytest.approx(krippendorff.alpha(reliability_data=[*matrix, verdicts],
                                                                    level_of_measurement="ordinal"))
    assert fig.kappa_quadratic == pytest.approx(cohen_kappa_score(verdicts, consensus, weights="quadratic", labels=LEVELS))
    assert [list(r) for r in fig.confusion] == confusion_matrix(consensus, verdicts, labels=LEVELS).tolist()


def test_a_judge_that_is_the_consensus_agrees_perfectly_and_its_mirror_image_negatively() -> None:
    humans, _ = _random_units(3)
    consensus = {u: int(np.floor(np.median(list(v.values())) + 0.5)) for u, v in humans.items()}
    perfect = criterion_agreement("c", humans, consensus, LEVELS)
    mirror = criterion_agreement("c", humans, {u: 6 - v for u, v in consensus.items()}, LEVELS)
    assert perfect.alpha == pytest.approx(1.0) and perfect.kappa_quadratic == pytest.approx(1.0)
    assert mirror.alpha < 0 and mirror.kappa_quadratic < 0


def test_only_items_both_rated_count() -> None:
    humans, judge = _random_units(4, n=10)
    del judge[("ex00", "tuned")]
    judge[("other", "tuned")] = 3
    assert criterion_agreement("c", humans, judge, LEVELS).n_items == 9


def _rated(judged, behaviour: str, **run: object):
    path = judged.save(judged.run(behaviour, **run))
    rate_and_merge(path, judged.root / f"packet-{behaviour}")
    return path


def test_imported_ratings_keep_every_rating_for_calibration(judged) -> None:
    results = load(_rated(judged, "agree"))
    human = results.suites[0].human
    assert human is not None and human.ratings is not None
    assert len(human.ratings) == human.n_ratings == 40  # 20 items x 2 raters
    row = human.ratings[0]
    assert set(row) == {"rater", "example", "scores", "ranking"} and set(row["scores"]) == {"base", "tuned"}


def test_calibrating_writes_the_judge_identity_the_ratings_and_the_figures(judged) -> None:
    results = load(_rated(judged, "agree"))
    out = judged.root / "baselines" / "demo.judge-calibration.json"
    doc = write_calibration(results, "demo", out)
    assert json.loads(out.read_text(encoding="utf-8")) == doc == load_calibration(out)
    assert doc["identity"] == results.suites[0].judge.identity.to_dict()
    assert doc["identity"]["prompt_version"] == "ftevals-judge/1" and doc["identity"]["rubric_hash"].startswith("sha256:")
    assert set(doc["criteria"]) == {"correctness", "format", "preference"}
    assert doc["criteria"]["correctness"]["n_items"] == 40 and doc["criteria"]["preference"]["n_items"] == 20
    assert doc["criteria"]["correctness"]["alpha"] > 0.9  # the judge gives the true scores; raters nearly do
    assert len(doc["ratings"]) == 40 and len(doc["judge"]) == 40


def test_an_anti_agreeing_judge_calibrates_below_the_floor_and_its_gate_stays_refused(judged) -> None:
    results = load(_rated(judged, "anti"))
    write_calibration(results, "demo", judged.root / "baselines" / "demo.judge-calibration.json")
    suite = judged.run("anti", gates=["judge:correctness >= base"]).suites[0]
    cal = suite.judge.calibration
    assert cal.criteria["correctness"].state == "below_floor" and cal.criteria["correctness"].agreement.alpha < 0
    (gate,) = suite.gates
    assert not gate.passed and gate.message.startswith("refused: judge:correctness may not gate yet: judge-human alpha")
    assert "below the suite's floor (alpha >= 0.67 on >= 30 items" in gate.message


def test_states_missing_then_calibrated_then_stale_when_the_rubric_changes(judged) -> None:
    gates = ["judge:correctness >= base", "judge_win_rate > 0.5"]
    suite = judged.run("agree", gates=gates).suites[0]
    assert {c.state for c in suite.judge.calibration.criteria.values()} == {"missing"}
    assert all(not g.passed and "not calibrated on" in g.message and "ftevals judge calibrate" in g.message
               for g in suite.gates)

    write_calibration(load(_rated(judged, "agree")), "demo", judged.root / "baselines" / "demo.judge-calibration.json")
    suite = judged.run("agree", gates=gates).suites[0]
    states = {k: v.state for k, v in suite.judge.calibration.criteria.items()}
    # 20 rated pairs are fewer than the 30 items the win rate needs; scores have 40 items each.
    assert states == {"correctness": "calibrated", "format": "calibrated", "preference": "below_floor"}
    correctness, win = suite.gates
    assert correctness.passed and correctness.message.startswith("judge:correctness improved: tuned")
    assert not win.passed and "alpha on preference is 1.00 on 20 items" in win.message
    # A suite that accepts fewer items lets the win rate gate decide too.
    suite = judged.run("agree", gates=gates, judge=Judge("base", min_items=20)).suites[0]
    assert [g.passed for g in suite.gates] == [True, True]

    rubric = {"extends": "classification", "instructions": "Judge only whether the label is right."}
    suite = judged.run("agree", gates=gates, rubric=rubric).suites[0]
    assert {c.state for c in suite.judge.calibration.criteria.values()} == {"stale"}
    assert "differs in rubric_hash" in suite.gates[0].message


def test_calibrating_needs_ratings_and_judge_verdicts(judged) -> None:
    results = judged.run("agree")
    with pytest.raises(ResultsError, match="has no human ratings; build packets"):
        write_calibration(results, "demo", judged.root / "x.json")
    with pytest.raises(ResultsError, match="has no suite 'nope'"):
        write_calibration(results, "nope", judged.root / "x.json")
    assert not (judged.root / "x.json").exists()


def test_a_calibration_file_of_another_kind_is_refused_naming_it(tmp_path) -> None:
    path = tmp_path / "cal.json"
    path.write_text(json.dumps({"schema": "something-else"}), encoding="utf-8")
    with pytest.raises(ConfigError, match="cal.json: not a judge calibration file"):
        load_calibration(path)


def test_the_cli_writes_the_calibration_and_prints_the_figures(judged, capsys) -> None:
    path = _rated(judged, "agree")
    out = judged.root / "suites" / "baselines" / "demo.judge-calibration.json"
    assert main(["judge", "calibrate", str(path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "correctness: alpha +1.00" in printed and "-> may gate at the default floor" in printed
    assert "preference:" in printed and "n=20 items -> may not gate" in printed
    assert out.exists()
    assert main(["judge", "calibrate", str(judged.root / "missing.json"), "--out", str(out)]) == 2
