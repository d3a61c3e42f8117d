"""Candidates: a model added on the command line joins the suites it can, or the run stops naming it.

The CI flow of the README (`pytest suites/ --ftevals-model "candidate=base+adapters/..."`) used to
evaluate nothing for the candidate, because every example suite lists its models.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.miniproject import MiniProject

ROOT = Path(__file__).resolve().parents[2]


def suite_models(project: MiniProject) -> list[str]:
    return json.loads(project.results_path.read_text())["suites"][0]["models"]


def test_a_command_line_candidate_joins_a_suite_that_lists_its_models(project: MiniProject) -> None:
    project.write_predictions({"base": 12, "tuned": 16, "cand": 18})
    result = project.run("--ftevals-model", "cand=base+adapters/cand", "-v")
    result.assert_outcomes(passed=3)  # the gate for tuned, the gate for cand, the baseline
    result.stdout.fnmatch_lines(["*gate?cand: accuracy >= base - 0.05? PASSED*"])
    assert suite_models(project) == ["base", "tuned", "cand"]


def test_a_failing_candidate_fails_the_run(project: MiniProject) -> None:
    project.write_predictions({"base": 12, "tuned": 16, "cand": 4})
    result = project.run("--ftevals-model", "cand=base+adapters/cand")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*accuracy regressed: cand 0.200 vs base 0.600*"])


def test_a_candidate_on_another_base_is_a_usage_error_naming_it(project: MiniProject, tmp_path: Path) -> None:
    result = project.run("--ftevals-model", f"stranger={tmp_path / 'llama'}+adapters/x")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = result.stdout.str() + result.stderr.str()
    assert "model 'stranger' (a candidate" in text and "joins no selected suite" in text
    assert "demo: reference 'base' on default" in text


def test_a_suite_can_keep_candidates_out(project: MiniProject) -> None:
    project.write_suite(candidates=False)
    result = project.run("--ftevals-model", "cand=base+adapters/cand")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "(candidates=False)" in result.stdout.str() + result.stderr.str()


def test_redefining_a_table_model_on_the_command_line_is_not_a_candidate(project: MiniProject) -> None:
    project.write_suite(models=["base"], gates=[])
    project.write_predictions({"base": 12, "tuned": 16})
    # `tuned` is in the ini table: a new definition replaces it where it runs, and it runs nowhere here.
    project.run("--ftevals-model", "tuned=base+adapters/tuned-v2").assert_outcomes(passed=2)
    assert suite_models(project) == ["base"]


def test_ini_candidates(project: MiniProject) -> None:
    project.write_suite(models=["base"])
    project.write_predictions({"base": 12, "tuned": 16})
    ini = project.path / "tox.ini"  # what pytester.makeini writes
    ini.write_text(ini.read_text().rstrip("\n") + "\nftevals_candidates = tuned\n")
    project.run().assert_outcomes(passed=2)
    assert suite_models(project) == ["base", "tuned"]
    ini.write_text(ini.read_text().replace("= tuned\n", "= nobody\n"))
    result = project.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "ini ftevals_candidates: 'nobody' is not in the model table" in result.stdout.str() + result.stderr.str()


def test_the_readme_candidate_command_collects_the_candidates_gates() -> None:
    # The README's CI command, as written, on the example suites (collection only: no model runs).
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command = next(line.split("#")[0].strip() for line in readme.splitlines()
                   if line.startswith("pytest suites/") and "--ftevals-model" in line)
    args = command.split()[1:]
    assert "--ftevals-model" in args
    out = subprocess.run([sys.executable, "-m", "pytest", *[a.strip('"') for a in args], "--co", "-q",
                          "-p", "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "gate[candidate: accuracy > base significantly]" in out.stdout, out.stdout
