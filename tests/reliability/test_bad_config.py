"""Contradictory options and unknown option values are usage errors (exit 4) that name the option,
found before anything is generated or written.

Unknown metrics, malformed gates, unknown models and bad ini values are covered by
tests/plugin/test_plugin_errors.py and tests/test_gate.py; this file adds what they do not: options
that contradict each other, and bad values of backend settings.
"""

from __future__ import annotations

import pytest
from brokenmodels import GOOD_ADAPTER
from support.miniproject import MiniProject


@pytest.fixture
def project(pytester: pytest.Pytester) -> MiniProject:
    return MiniProject.create(pytester)


def assert_refused(project: MiniProject, result: pytest.RunResult, message: str) -> None:
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    result.stderr.fnmatch_lines([message])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert project.written_files() == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(("--ftevals-no-report", "--ftevals-report", "out/mine.html"),
                     "ERROR: ftevals: --ftevals-no-report and --ftevals-report out/mine.html contradict each other; "
                     "drop one of them", id="no-report-and-report"),
        pytest.param(("--ftevals-results", "out/run.json", "--ftevals-report", "out/run.json"),
                     "ERROR: ftevals: the results file and the HTML report would both be written to */out/run.json; "
                     "give them different paths (--ftevals-results, --ftevals-report)", id="results-is-report"),
        pytest.param(("--ftevals-update-baseline", "--ftevals-limit", "5"),
                     "ERROR: ftevals: --ftevals-update-baseline cannot be combined with --ftevals-limit 5: suite 'demo' "
                     "would evaluate 5 of the 20 examples its baseline is for; drop --ftevals-limit to update baselines",
                     id="update-baseline-from-a-partial-sample"),
    ],
)
def test_contradictory_options_are_refused(project: MiniProject, args: tuple[str, ...], message: str) -> None:
    assert_refused(project, project.run(*args), message)


def test_the_ini_report_path_with_no_report_is_not_a_contradiction(project: MiniProject) -> None:
    # The ini names a report; --ftevals-no-report on the command line overrides it, as options do.
    result = project.run("--ftevals-no-report")
    assert result.ret == 0, result.stdout.str()
    assert (project.path / "out" / "results.json").is_file() and not (project.path / "out" / "report.html").exists()


def test_update_baseline_is_refused_from_a_partial_sample_only(project: MiniProject) -> None:
    assert project.run().ret == 0  # writes baselines/demo.json
    baseline = project.path / "baselines" / "demo.json"
    before = baseline.read_bytes()

    refused = project.run("--ftevals-update-baseline", "--ftevals-limit", "5")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    assert baseline.read_bytes() == before

    # A limit at or above the suite's size evaluates the whole sample: updating is fine.
    project.write_predictions({"base": 12, "tuned": 18})
    accepted = project.run("--ftevals-update-baseline", "--ftevals-limit", "20")
    assert accepted.ret == 0, accepted.stdout.str()
    assert baseline.read_bytes() != before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(("--ftevals-cache", "sometimes"), "*argument --ftevals-cache: invalid choice: 'sometimes'*",
                     id="cache-mode"),
        pytest.param(("--ftevals-seed", "abc"), "*argument --ftevals-seed: invalid int value: 'abc'", id="seed"),
        pytest.param(("--ftevals-backend-option", "delay_s=-1"),
                     "ERROR: ftevals: replay backend: delay_s must be a number of seconds >= 0, got -1", id="replay-delay"),
        pytest.param(("--ftevals-backend", "openai", "--ftevals-backend-option", "concurrency=0"),
                     "ERROR: ftevals: openai backend: concurrency must be a whole number >= 1, got 0",
                     id="openai-concurrency"),
        pytest.param(("--ftevals-backend", "openai", "--ftevals-backend-option", "base_urls=ftp://models.example"),
                     "ERROR: ftevals: openai backend: 'ftp://models.example' is not an http(s) URL; expected e.g. "
                     "http://127.0.0.1:8000/v1", id="openai-url"),
        pytest.param(("--ftevals-backend", "openai", "--ftevals-backend-option", "timeout=5"),
                     "ERROR: ftevals: backend 'openai' has no setting 'timeout'; its settings are: base_urls, *timeout_s*",
                     id="openai-unknown-setting"),
    ],
)
def test_unknown_option_values_are_usage_errors(project: MiniProject, args: tuple[str, ...], message: str) -> None:
    if "--ftevals-backend" in args:
        args = ("-o", "ftevals_backend_options=", *args)  # the ini's replay settings mean nothing to another backend
    assert_refused(project, project.run(*args), message)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        pytest.param("strategy=fastest", "ERROR: ftevals: vLLM strategy 'fastest' is unknown; expected one of "
                                         "multi-lora, merged, auto", id="strategy"),
        pytest.param("dtype_=float32", "ERROR: ftevals: backend 'vllm' has no setting 'dtype_'; its settings are: dtype*",
                     id="misspelt-setting"),
    ],
)
def test_bad_vllm_settings_stop_the_run_before_an_engine_starts(project: MiniProject, no_engine: list[str], option: str,
                                                                message: str) -> None:
    result = project.run("-o", "ftevals_backend_options=", "--ftevals-backend", "vllm",
                         "--ftevals-model", f"tuned=base+{GOOD_ADAPTER}", "--ftevals-backend-option", option)
    assert_refused(project, result, message)
