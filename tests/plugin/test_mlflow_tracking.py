"""--ftevals-mlflow logs a run to a real local MLflow store (the `mlflow` package, file store)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("mlflow", reason="the [mlflow] extra; installed by scripts/test.sh (the test extra)")
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestAssertRewriteWarning")


def test_a_run_is_logged_with_params_metrics_gates_and_artifacts(project, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store in maintenance mode
    project.write_predictions({"base": 12, "tuned": 6})
    project.write_suite(gates=["accuracy >= base - 0.05", "macro_f1 >= 0.1"])

    result = project.run("--ftevals-mlflow")

    assert result.ret == pytest.ExitCode.TESTS_FAILED  # tracking does not change the outcome
    result.stdout.fnmatch_lines(["mlflow:  MLflow run * at file://*/mlruns"])
    from mlflow.tracking import MlflowClient

    client = MlflowClient((project.path / "mlruns").as_uri())
    (experiment,) = [e for e in client.search_experiments() if e.name == "ftevals"]
    (run,) = client.search_runs([experiment.experiment_id])
    results = project.results()
    assert run.info.run_name == results["run"]["id"]
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["backend"] == "replay" and params["model.tuned"] == f"default+{results['models']['tuned']['adapter']}"
    assert params["model.base.base_fingerprint"] == results["models"]["base"]["base_fingerprint"]
    suite = results["suites"][0]
    assert metrics["demo/tuned/accuracy"] == pytest.approx(suite["scores"]["tuned"]["accuracy"]["value"])
    assert metrics["demo/tuned/accuracy.ci_low"] == pytest.approx(suite["scores"]["tuned"]["accuracy"]["ci_low"])
    cmp = next(c for c in suite["comparisons"] if c["model"] == "tuned" and c["metric"] == "accuracy")
    assert metrics["demo/tuned/accuracy.delta"] == pytest.approx(cmp["delta"])
    assert metrics["demo/tuned/accuracy.p_value"] == pytest.approx(cmp["p_value"])
    assert metrics["demo/gates_failed"] == 1.0 and metrics["demo/gates_passed"] == 1.0
    assert tags["gates.demo"] == "1/2 passed, 1 FAILED" and tags["ftevals.outcome"] == "gates failed"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"results.json", "report.html", "gates.json"} <= artifacts, artifacts
    gates = json.loads((project.path / "mlruns" / experiment.experiment_id / run.info.run_id / "artifacts"
                        / "gates.json").read_text())
    assert [(g["expression"], g["passed"]) for g in gates] == [("accuracy >= base - 0.05", False), ("macro_f1 >= 0.1", True)]


def test_an_unreachable_tracking_server_is_shown_in_red_and_loses_nothing(project, monkeypatch):
    # MLflow retries a dead server for minutes by default; one quick attempt shows the same thing.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    project.write_suite(gates=["accuracy >= base - 0.05"])
    result = project.run("--ftevals-mlflow=http://127.0.0.1:9/")  # nothing listens on port 9
    result.stdout.fnmatch_lines(["mlflow:  NOT logged: *"])
    assert project.results()["suites"][0]["gates"][0]["passed"]
