"""Misconfiguration is a usage error (exit code 4) with one precise message, and leaves nothing behind.

pytest's convention: exit 1 means tests failed, 2 interrupted (e.g. a collection error), 4 usage
error. A bad option, a bad ini value, a suite that names an unknown model or metric, a malformed
gate, a missing or broken dataset are all usage errors, found before anything is generated: no
results file, no report, no cache folder.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestAssertRewriteWarning")

SUITE = "from ftevals import Suite\n\ndemo = Suite(name='demo', task='classification', dataset='data.jsonl', " \
        "labels='labels.json', models=['base', 'tuned'], gates=['accuracy >= base - 0.05'])\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(("--ftevals-limit", "0"), "*argument --ftevals-limit: must be >= 1, got 0", id="limit-zero"),
        pytest.param(("--ftevals-limit", "ten"), "*argument --ftevals-limit: expected a whole number, got 'ten'",
                     id="limit-not-a-number"),
        pytest.param(("--ftevals-resamples", "10"),
                     "*argument --ftevals-resamples: must be >= 100 for a meaningful 95% CI, got 10", id="resamples"),
        pytest.param(("--ftevals-backend", "nope"), "*argument --ftevals-backend: invalid choice: 'nope'*",
                     id="backend-option"),
        pytest.param(("-o", "ftevals_backend=nope"),
                     "ERROR: ftevals: ini ftevals_backend: unknown backend 'nope'; expected one of vllm, hf, openai, replay",
                     id="backend-ini"),
        pytest.param(("--ftevals-model", "broken"),
                     "ERROR: ftevals: --ftevals-model: 'broken' is not 'NAME = SPEC' (e.g. 'tuned = base+adapters/v2')",
                     id="model-spec"),
        pytest.param(("--ftevals-model", "x=base@shots=3"),
                     "ERROR: ftevals: --ftevals-model: model 'x': bad option '@shots=3'*", id="model-option"),
        pytest.param(("--ftevals-backend-option", "colour=blue"),
                     "ERROR: ftevals: backend 'replay' has no setting 'colour'; its settings are: path*",
                     id="backend-setting"),
        pytest.param(("--ftevals-backend-option", "path=nowhere.jsonl"),
                     "ERROR: ftevals: */nowhere.jsonl: cannot read the predictions file*", id="predictions-missing"),
    ],
)
def test_bad_options_are_usage_errors(project, args, message):
    result = project.run(*args)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert project.written_files() == []


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        pytest.param("'accuracy >= base - 0.05'", "'accuracy >> 0.7'",
                     "ERROR: ftevals: test_suite.py: suite 'demo': gate 'accuracy >> 0.7': unknown operator '>>'; "
                     "expected one of >=, >, <=, <", id="malformed-gate"),
        pytest.param("'accuracy >= base - 0.05'", "'acuracy >= 0.7'",
                     "ERROR: ftevals: test_suite.py: suite 'demo': gate 'acuracy >= 0.7': unknown metric 'acuracy'; "
                     "did you mean 'accuracy'?*", id="unknown-metric-in-gate"),
        pytest.param("task='classification'", "task='classification', metrics=['acuracy']",
                     "ERROR: ftevals: test_suite.py: suite 'demo': *unknown metric 'acuracy'*", id="unknown-metric"),
        pytest.param("'base', 'tuned'", "'base', 'tuned', 'ghost'",
                     "ERROR: ftevals: test_suite.py: suite 'demo' names unknown model(s) ghost; known models: base, "
                     "tuned (define them with ftevals_models in pyproject.toml/pytest.ini or --ftevals-model NAME=SPEC)",
                     id="unknown-model"),
        pytest.param("'accuracy >= base - 0.05'", "'ghost: accuracy >= 0.5'",
                     "ERROR: ftevals: test_suite.py: suite 'demo': gate 'ghost: accuracy >= 0.5' names model 'ghost', "
                     "which the suite does not run (models: base, tuned)", id="unknown-model-in-gate"),
        pytest.param("'data.jsonl'", "'missing.jsonl'",
                     "ERROR: ftevals: test_suite.py: suite 'demo': */missing.jsonl: file not found*",
                     id="missing-dataset"),
        pytest.param("'labels.json'", "'nolabels.json'",
                     "ERROR: ftevals: test_suite.py: suite 'demo': cannot read labels file */nolabels.json*",
                     id="missing-labels"),
    ],
)
def test_bad_suites_are_usage_errors(project, old, new, message):
    assert old in SUITE
    project.write_suite(body=SUITE.replace(old, new))

    result = project.run()

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert project.written_files() == []


def test_bad_dataset_row_names_file_and_line(project):
    lines = (project.path / "data.jsonl").read_text(encoding="utf-8").splitlines()
    lines[2] = '{"id": "x", "messages": [{"role": "user", "content": "hi"}]}'
    (project.path / "data.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

    result = project.run()

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: ftevals: test_suite.py: suite 'demo': */data.jsonl:3: \"messages\" must end with an assistant turn*"])
    assert project.written_files() == []


def test_two_suites_with_one_name_are_a_usage_error(project):
    project.pytester.makepyfile(test_copy=SUITE.replace("gates=", "metrics=['accuracy'], gates="))

    result = project.run()

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: ftevals: two different suites are named 'demo' (test_copy.py and "
                                 "test_suite.py); suite names must be unique*"])
    assert project.written_files() == []


def test_a_suite_file_that_fails_to_import_stops_before_generating(project):
    """An exception while importing a suite file is a collection error, as for any test module
    (exit 2); the other suites are not evaluated for nothing."""
    project.pytester.makepyfile(test_broken=SUITE.replace("'classification'", "'sorting'").replace("demo", "broken"))

    result = project.run()

    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*ConfigError: suite 'broken': unknown task 'sorting'*",
                                 "*Interrupted: 1 error during collection*"])
    assert project.written_files() == []


def test_a_model_that_cannot_be_generated_costs_only_that_model(project):
    # No predictions for `tuned`: the backend fails while generating it, after `base` was served.
    project.write_predictions({"base": 12, "other": 14})
    other_suite = ("\n\nother = Suite(name='other', task='classification', dataset='data.jsonl', labels='labels.json', "
                   "models=['base'], gates=['base: accuracy >= 0.5'])\n")
    project.write_suite()
    (project.path / "test_suite.py").write_text((project.path / "test_suite.py").read_text() + other_suite)

    result = project.run()

    # tuned's gate and its suite's baseline fail; the other suite passes and everything is written.
    result.assert_outcomes(passed=2, failed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "ftevals: tuned FAILED, the other models go on: *preds.jsonl has no prediction for 20 of 20 requests*",
        "*_ demo::gate[[]tuned: accuracy >= base - 0.05[]] _*",
        "tuned was not evaluated: *preds.jsonl has no prediction for 20 of 20 requests: (tuned, banking77-test-*",
        "*_ demo::baseline _*",
        "baseline baselines/demo.json not compared and left as it is: tuned was not evaluated (the cause is on its gate tests)",
        "*= ftevals =*",
        "  tuned  HOLD: demo: tuned was not evaluated: *",
        "  [[]FAILED MODEL[]] tuned was not evaluated (its gate test fails): *preds.jsonl has no prediction*",
        "other (classification, n=20, reference=base; gates 1/1 passed)",
    ])
    results = project.results()
    demo, other = results["suites"]
    assert demo["models"] == ["base"] and "tuned" in demo["failures"]
    assert demo["scores"]["base"]["accuracy"]["value"] == pytest.approx(0.6)
    assert other["gates"][0]["passed"] and "failures" not in other
    assert not (project.path / "baselines" / "demo.json").exists()  # never written from a partial run
    assert (project.path / "baselines" / "other.json").exists()


def test_a_failed_reference_fails_every_model_of_its_suite_with_the_reason(project):
    project.write_predictions({"tuned": 16})
    result = project.run()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["tuned was not evaluated: its reference base failed: *preds.jsonl has no prediction*"])
    (demo,) = project.results()["suites"]
    assert demo["models"] == [] and set(demo["failures"]) == {"base", "tuned"}
    assert (project.path / "out" / "report.html").exists()
