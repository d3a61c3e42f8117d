"""The right reference, always, and candidates that pass against committed baselines (issue 24).

A suite whose user named its own models is compared against the model that is the base of its
adapters, never against the embedded default; a CI job that adds a candidate on the command line
passes when the candidate is good, although the committed baseline does not hold it.
"""

from __future__ import annotations

import json

import pytest
from support.miniproject import MiniProject

USER_INI = """\
[pytest]
ftevals_models =
    mistral = {root}/models/mistral
    mistral-tuned = {root}/models/mistral+adapters/v1
    qwen = {root}/models/qwen
    qwen-tuned = {root}/models/qwen+adapters/q1
ftevals_backend = replay
ftevals_backend_options = path=preds.jsonl
ftevals_cache_dir = cache
ftevals_results = out/results.json
ftevals_report = out/report.html
"""


def user_project(project: MiniProject, correct: dict[str, int]) -> None:
    project.pytester.makeini(USER_INI.format(root=project.path))
    project.write_predictions(correct)


def results(project: MiniProject) -> dict:
    return json.loads(project.results_path.read_text(encoding="utf-8"))


# -- the reference ------------------------------------------------------------------------------


def test_a_user_named_base_is_the_reference_and_the_embedded_default_never_joins(project: MiniProject) -> None:
    user_project(project, {"mistral": 12, "mistral-tuned": 16})
    project.write_suite(models=["mistral", "mistral-tuned"], gates=["accuracy >= base - 0.05"])

    result = project.run()

    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["demo (classification, n=20, reference=mistral; gates 1/1 passed)"])
    (suite,) = results(project)["suites"]
    assert suite["reference"] == "mistral"
    assert suite["models"] == ["mistral", "mistral-tuned"]  # no `base` inserted
    assert "base" not in results(project)["models"]


def test_the_reference_is_found_whatever_order_the_models_are_listed_in(project: MiniProject) -> None:
    user_project(project, {"mistral": 12, "mistral-tuned": 16})
    project.write_suite(models=["mistral-tuned", "mistral"], gates=["accuracy >= base - 0.05"])
    project.run().assert_outcomes(passed=2)
    assert results(project)["suites"][0]["models"] == ["mistral", "mistral-tuned"]


def test_two_bases_in_one_suite_stop_collection_naming_the_fix(project: MiniProject) -> None:
    user_project(project, {"mistral": 12, "mistral-tuned": 16, "qwen": 10, "qwen-tuned": 11})
    project.write_suite(models=["mistral", "mistral-tuned", "qwen", "qwen-tuned"])

    result = project.run()

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = result.stdout.str() + result.stderr.str()
    assert "cannot choose a reference model" in text
    assert "no model it lists is the common base of its adapters" in text
    assert not project.results_path.exists()


def test_a_suite_listing_only_adapters_is_told_which_base_to_add(project: MiniProject) -> None:
    user_project(project, {"mistral": 12, "mistral-tuned": 16})
    project.write_suite(models=["mistral-tuned"])
    result = project.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "add 'mistral' to the suite's models or set reference='mistral'" in result.stdout.str() + result.stderr.str()


def test_an_explicit_reference_on_another_base_is_allowed_and_said(project: MiniProject) -> None:
    user_project(project, {"mistral": 12, "mistral-tuned": 16, "qwen-tuned": 14})
    project.write_suite(models=["mistral", "mistral-tuned", "qwen-tuned"], reference="mistral",
                        gates=["accuracy >= base - 0.05"])

    result = project.run()

    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["  qwen-tuned * (different base)*"])
    suite = results(project)["suites"][0]
    assert suite["different_base"] == ["qwen-tuned"]
    reasons = {d["model"]: [r["message"] for r in d["reasons"] if r["kind"] == "reference"] for d in suite["decisions"]}
    assert reasons["mistral-tuned"] == []
    assert "a different base model" in reasons["qwen-tuned"][0]


def test_the_demo_table_keeps_base_as_the_reference(project: MiniProject) -> None:
    project.run().assert_outcomes(passed=2)
    assert results(project)["suites"][0]["reference"] == "base"


# -- baselines and candidates -------------------------------------------------------------------


def test_a_candidate_passes_against_a_committed_baseline_that_does_not_hold_it(project: MiniProject) -> None:
    project.write_predictions({"base": 12, "tuned": 16, "cand": 17})
    project.run().assert_outcomes(passed=2)  # writes baselines/demo.json for base and tuned
    committed = (project.path / "baselines" / "demo.json").read_text(encoding="utf-8")

    result = project.run("--ftevals-model", "cand=base+adapters/cand")

    result.assert_outcomes(passed=3)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["  baseline baselines/demo.json matches this run (4 values for 2 models; *); "
                                 "not in the baseline: cand (recorded when accepted with --ftevals-update-baseline)"])
    baseline = results(project)["suites"][0]["baseline"]
    assert baseline["status"] == "matched" and baseline["not_in_baseline"] == ["cand"]
    assert (project.path / "baselines" / "demo.json").read_text(encoding="utf-8") == committed  # untouched

    # Accepted: the candidate is recorded, and from then on compared like every other model.
    project.run("--ftevals-model", "cand=base+adapters/cand", "--ftevals-update-baseline").assert_outcomes(passed=3)
    stored = json.loads((project.path / "baselines" / "demo.json").read_text(encoding="utf-8"))
    assert sorted(stored["models"]) == ["base", "cand", "tuned"]
    project.write_predictions({"base": 12, "tuned": 16, "cand": 15})
    changed = project.run("--ftevals-model", "cand=base+adapters/cand")
    changed.assert_outcomes(passed=2, failed=1)
    changed.stdout.fnmatch_lines(["*cand accuracy: 0.85 -> 0.75 (-0.1)*"])


def test_a_model_the_baseline_holds_but_the_run_lacks_still_fails_it(project: MiniProject) -> None:
    project.write_predictions({"base": 12, "tuned": 16, "cand": 17})
    project.run("--ftevals-model", "cand=base+adapters/cand").assert_outcomes(passed=3)  # baseline holds cand

    result = project.run()

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*cand: model missing from this run*"])
