"""known_failures: a documented regression is an expected failure (strict xfail), not a red run."""

from __future__ import annotations

import pytest


def test_known_failure_is_an_expected_failure_and_reads_so(project):
    project.write_predictions({"base": 12, "tuned": 6})
    project.write_suite(gates=["accuracy >= base - 0.05", "macro_f1 >= 0.1"],
                        known_failures={"tuned: accuracy >= base - 0.05": "tuned forgets half the intents"})

    result = project.run("-rx")

    result.assert_outcomes(passed=2, xfailed=1)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([
        "demo (classification, n=20, reference=base; gates 1/2 passed, 1 known failure)",
        "  [[]XFAIL[]] accuracy regressed: tuned 0.300 vs base 0.600 * (known failure: tuned forgets half the intents)",
        "XFAIL test_suite.py::demo::gate[[]tuned: accuracy >= base - 0.05[]] - tuned forgets half the intents",
    ])
    gate = project.results()["suites"][0]["gates"][0]
    assert gate["passed"] is False and gate["known_failure"] == "tuned forgets half the intents"


def test_a_known_failure_that_passes_fails_the_run(project):
    project.write_predictions({"base": 12, "tuned": 16})
    project.write_suite(gates=["accuracy >= base - 0.05"],
                        known_failures={"accuracy >= base - 0.05": "was broken in v1"})

    result = project.run()

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*XPASS(strict)*was broken in v1*"])


def test_known_failure_naming_no_gate_is_a_usage_error(project):
    project.write_predictions({"base": 12, "tuned": 16})
    project.write_suite(gates=["accuracy >= base - 0.05"],
                        known_failures={"tuned: accuracy >= base - 0.10": "typo in the gate"})

    result = project.run()

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*known_failures names 'tuned: accuracy >= base - 0.10', which matches no gate test*"])
    assert project.written_files() == []
