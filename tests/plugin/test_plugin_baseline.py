"""Record-then-compare baselines, run after run, the way a team uses them."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestAssertRewriteWarning")


def test_baseline_workflow_create_match_change_update_match(project):
    baseline = project.path / "baselines" / "demo.json"

    # 1. No baseline yet: it is written, the test passes and the summary says so.
    first = project.run("-v")
    first.assert_outcomes(passed=2)
    first.stdout.fnmatch_lines([
        "test_suite.py::demo::baseline PASSED*",
        "  baseline baselines/demo.json did not exist; wrote it with 4 values for 2 models: review and commit it",
    ])
    stored = json.loads(baseline.read_text(encoding="utf-8"))
    assert stored["models"]["tuned"]["metrics"]["accuracy"]["value"] == pytest.approx(0.8)

    # 2. Same numbers: matched, file untouched.
    written = baseline.read_bytes()
    second = project.run()
    second.assert_outcomes(passed=2)
    second.stdout.fnmatch_lines(["  baseline baselines/demo.json matches this run (4 values for 2 models; compared exactly: *"])
    assert baseline.read_bytes() == written

    # 3. The adapter changed (it now gets 14 right, not 16): the baseline test fails, lists the
    #    changes and ends with the command that accepts them.
    project.write_predictions({"base": 12, "tuned": 14})
    third = project.run()
    third.assert_outcomes(passed=1, failed=1)
    assert third.ret == pytest.ExitCode.TESTS_FAILED
    third.stdout.fnmatch_lines([
        "*_ demo::baseline _*",
        "baseline baselines/demo.json differs from this run (2 changes; compared exactly: *):",
        "  tuned accuracy: 0.8 -> 0.7 (-0.1)",
        "  tuned macro_f1: * -> * (-*)",
        # This very invocation (pytester adds --basetemp) plus the flag.
        "accept the new values with: pytest -p no:cacheprovider -p no:hypothesispytest --ftevals-resamples 400 "
        "* --ftevals-update-baseline",
        "FAILED test_suite.py::demo::baseline - baseline baselines/demo.json differs*",
    ])
    assert baseline.read_bytes() == written
    assert project.results()["suites"][0]["baseline"]["status"] == "changed"

    # 4. Accepting: the file is rewritten and the test passes.
    fourth = project.run("--ftevals-update-baseline")
    fourth.assert_outcomes(passed=2)
    fourth.stdout.fnmatch_lines(["  baseline baselines/demo.json updated (2 changes; compared exactly: *):"])
    stored = json.loads(baseline.read_text(encoding="utf-8"))
    assert stored["models"]["tuned"]["metrics"]["accuracy"]["value"] == pytest.approx(0.7)
    # Unchanged values keep their stored entries, so the git diff shows only the real change.
    assert stored["models"]["base"] == json.loads(written)["models"]["base"]

    # 5. Back to green.
    fifth = project.run()
    fifth.assert_outcomes(passed=2)
    fifth.stdout.fnmatch_lines(["  baseline baselines/demo.json matches this run (4 values for 2 models; compared exactly: *"])
    assert project.results()["suites"][0]["baseline"]["status"] == "matched"


def test_a_limit_that_shrinks_the_sample_skips_the_baseline_with_a_reason(project):
    project.run().assert_outcomes(passed=2)
    baseline = project.path / "baselines" / "demo.json"
    written = baseline.read_bytes()

    # (With --ftevals-update-baseline the same run is refused: tests/reliability/test_bad_config.py.)
    result = project.run("--ftevals-limit", "5", "-rs")

    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines([
        "SKIPPED [[]1[]] test_suite.py: baseline not compared: --ftevals-limit 5 evaluates 5 of the 20 "
        "examples the baseline is for",
    ])
    assert baseline.read_bytes() == written
    assert project.results()["suites"][0]["baseline"] is None


def test_a_limit_that_keeps_the_whole_sample_still_compares(project):
    project.run().assert_outcomes(passed=2)

    result = project.run("--ftevals-limit", "50")

    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["  baseline baselines/demo.json matches this run (4 values for 2 models; compared exactly: *"])


def test_baseline_folder_is_configurable(project):
    project.pytester.makeini(project.path.joinpath("tox.ini").read_text(encoding="utf-8")
                             + "\nftevals_baseline_dir = golden\n")

    project.run().assert_outcomes(passed=2)

    assert (project.path / "golden" / "demo.json").is_file()
    assert not (project.path / "baselines").exists()
