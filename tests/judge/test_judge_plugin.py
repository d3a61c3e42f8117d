"""Judge gates as a user meets them through the pytest plugin: refused (a failing test naming the
figure and what to do) until the calibration file beside the suite says the judge agrees with
the raters; then evaluated like any gate."""

from __future__ import annotations

import json

import pytest
from support.miniproject import MiniProject
from support.scriptedjudge import CRITERIA, judge_rows, rate_and_merge

from ftevals.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestAssertRewriteWarning")

GATES = ["accuracy >= base - 0.05", "judge:correctness >= base"]


def _with_judge(project: MiniProject, behaviour: str = "agree") -> None:
    path = project.write_predictions({"base": 12, "tuned": 16})
    rows = judge_rows(project.ids, ["base", "tuned"], "base", CRITERIA, behaviour)
    with path.open("a", encoding="utf-8") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in rows))
    project.write_suite(gates=GATES, judge="base")


def test_an_uncalibrated_judge_gate_fails_with_the_reason_and_the_fix(project: MiniProject) -> None:
    _with_judge(project)

    result = project.run()

    result.assert_outcomes(passed=2, failed=1)  # accuracy, baseline; the judge gate is refused
    result.stdout.fnmatch_lines([
        "*tuned: judge:correctness >= base*",
        "*refused: judge:correctness may not gate yet: the judge is not calibrated on correctness "
        "(no baselines/demo.judge-calibration.json)*ftevals judge calibrate RESULTS --suite demo*",
        "  judge base, against base: tuned judge:correctness *; tuned wins * n=20; unparseable 0/120; "
        "position bias 0.000; calibration correctness missing, format missing, preference missing",
    ])
    html = (project.path / "out" / "report.html").read_text(encoding="utf-8")
    assert "LLM judge" in html and "not calibrated on correctness" in html


def test_with_agreeing_ratings_and_a_calibration_file_the_same_gate_runs_and_passes(project: MiniProject) -> None:
    _with_judge(project)
    project.run()
    results = project.results_path
    rate_and_merge(results, project.path / "packet")
    out = project.path / "baselines" / "demo.judge-calibration.json"
    assert main(["judge", "calibrate", str(results), "--out", str(out)]) == 0

    result = project.run()

    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines([
        "*calibration correctness calibrated, format calibrated, preference below_floor",
        "*[[]PASS[]] judge:correctness improved: tuned * vs base * (+*, 95% CI +*..+*, n=20; required >= 0)",
    ])


def test_a_judge_that_disagrees_with_the_raters_stays_refused_after_calibration(project: MiniProject) -> None:
    _with_judge(project, "anti")
    project.run()
    rate_and_merge(project.results_path, project.path / "packet")
    assert main(["judge", "calibrate", str(project.results_path), "--out",
                 str(project.path / "baselines" / "demo.judge-calibration.json")]) == 0

    result = project.run()

    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*refused: judge:correctness may not gate yet: judge-human alpha on correctness is -0.* "
                                 "on 40 items, below the suite's floor (alpha >= 0.67 on >= 30 items*"])


def test_under_xdist_the_judge_block_and_its_refused_gate_reach_the_results_file(project: MiniProject) -> None:
    _with_judge(project)

    result = project.run_subprocess("-n", "2")

    result.assert_outcomes(passed=2, failed=1)
    suite = project.results()["suites"][0]
    assert suite["judge"]["identity"]["model"] == "base" and suite["judge"]["win_rates"]["tuned"]["n"] == 20
    (refused,) = [g for g in suite["gates"] if not g["passed"]]
    assert refused["id"] == "tuned::judge:correctness >= base" and refused["message"].startswith("refused: ")
