"""The `ftevals` command line, from results files made by real (replay) pytest runs.

Commands are called in-process through `ftevals.cli.main`, which returns the exit status; one
subprocess checks that the installed console script is wired to it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ftevals.cli import main
from ftevals.results import Comparison, load

REAL_RESULTS = Path(__file__).resolve().parents[1] / "fixtures" / "real_results.json"

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestAssertRewriteWarning")


@pytest.fixture
def two_runs(project) -> tuple[Path, Path]:
    """A: tuned right on 16 of 20. B: tuned right on only 6 of base's 12 (a clear regression)."""
    project.run().assert_outcomes(passed=2)
    a = project.path / "a.json"
    shutil.copy(project.results_path, a)
    project.write_predictions({"base": 12, "tuned": 6})
    project.run("--ftevals-no-report")
    b = project.path / "b.json"
    shutil.copy(project.results_path, b)
    return a, b


def test_report_rerenders_from_the_results_file_alone(project, capsys):
    project.run("--ftevals-no-report").assert_outcomes(passed=2)
    out = project.path / "elsewhere" / "report.html"
    capsys.readouterr()  # drop the pytest run's own output

    assert main(["report", str(project.results_path), "--out", str(out)]) == 0

    assert "<html" in out.read_text(encoding="utf-8")
    printed = capsys.readouterr().out.splitlines()
    # The decision card first (the results file holds it), then the suite's table.
    assert printed[0].startswith("decision (each model across the suites it ran in")
    assert printed[1].startswith("  tuned  insufficient evidence: demo: accuracy >= base - 0.05 passed on its point "
                                 "estimate with no significant change")
    assert "demo (classification, n=20, reference=base; gates 1/1 passed)" in printed
    assert any(line.startswith("  tuned  0.800 (+0.200 [") for line in printed)
    assert printed[-1] == f"report: {out}"


def test_compare_prints_verdicts_and_fails_on_regression_when_asked(two_runs, capsys):
    a, b = two_runs
    capsys.readouterr()

    assert main(["compare", str(a), str(b), "--resamples", "400"]) == 0
    printed = capsys.readouterr().out
    assert "demo:" in printed
    assert "[!] B:tuned vs A:tuned accuracy: 0.300 vs 0.800 (-0.500, 95% CI " in printed
    assert "n=20) regressed; 10 regressions, 0 fixes" in printed
    assert "[=] B:base vs A:base accuracy: 0.600 vs 0.600 (+0.000" in printed

    assert main(["compare", str(a), str(b), "--resamples", "400", "--fail-on-regression"]) == 1
    # B against itself: nothing regressed, so the flag does not fail the command.
    assert main(["compare", str(b), str(b), "--resamples", "400", "--fail-on-regression"]) == 0


def test_compare_rescores_a_run_to_the_adjusted_verdicts_it_recorded(tmp_path, capsys):
    out = tmp_path / "rescored.json"
    # forgetting-dialogsum: banking77 regressed on ROUGE (Holm-adjusted p 0.024 and 0.008), so the flag fails.
    assert main(["compare", str(REAL_RESULTS), "--json", str(out), "--fail-on-regression"]) == 1

    printed = capsys.readouterr().out
    assert ("  [+] banking77 vs base accuracy: 0.400 vs 0.000 (+0.400, 95% CI +0.200..+0.650, n=20) improved; "
            "0 regressions, 8 fixes; holm-adjusted p=0.023 over 4 comparisons\n") in printed
    rescored = json.loads(out.read_text(encoding="utf-8"))
    run = load(REAL_RESULTS)
    assert list(rescored) == [s.name for s in run.suites]
    for suite in run.suites:
        again = [Comparison.from_dict(c) for c in rescored[suite.name]]
        assert [(c.model, c.reference, c.metric) for c in again] == [
            (c.model, c.reference, c.metric) for c in suite.comparisons]
        for new, old in zip(again, suite.comparisons):
            where = (suite.name, old.model, old.metric)
            assert old.adjustment == "holm" and old.p_adjusted is not None, where  # the run adjusted them
            assert (new.verdict, new.adjustment, new.family_size) == (old.verdict, "holm", old.family_size), where
            assert new.p_adjusted is not None and abs(new.p_adjusted - old.p_adjusted) <= 1e-12, where
            assert new.p_value is not None and abs(new.p_value - old.p_value) <= 1e-12, where


def test_compare_of_one_file_refuses_model_pairs(capsys):
    assert main(["compare", str(REAL_RESULTS), "--model-a", "base"]) == 2
    assert "ftevals: error: --model-a and --model-b pair models across two results files" in capsys.readouterr().err


def test_compare_reports_a_missing_file_as_an_error(project, capsys):
    assert main(["compare", "nope-a.json", "nope-b.json"]) == 2
    assert "ftevals: error: nope-a.json: no such results file" in capsys.readouterr().err


def test_data_validate_names_file_and_line(project, capsys):
    good = project.path / "data.jsonl"
    assert main(["data", "validate", str(good), "--labels", str(project.path / "labels.json")]) == 0
    assert f"{good}: 20 examples, fingerprint sha256:" in capsys.readouterr().out

    bad = project.path / "bad.jsonl"
    lines = good.read_text(encoding="utf-8").splitlines()
    bad.write_text("\n".join([lines[0], "{not json", lines[2]]) + "\n", encoding="utf-8")
    assert main(["data", "validate", str(bad)]) == 2
    assert f"ftevals: error: {bad}:2: " in capsys.readouterr().err


def test_run_hands_its_options_to_pytest(monkeypatch, capsys):
    calls: list[list[str]] = []
    monkeypatch.setattr(subprocess, "call", lambda cmd: calls.append(cmd) or 0)

    assert main(["run", "suites/test_banking77.py", "--limit", "5", "--backend", "replay", "--", "-x", "-n", "2"]) == 0

    assert calls == [[sys.executable, "-m", "pytest", "suites/test_banking77.py", "--ftevals-limit", "5",
                      "--ftevals-backend", "replay", "-x", "-n", "2"]]
    assert "ftevals: pytest suites/test_banking77.py --ftevals-limit 5" in capsys.readouterr().err


@pytest.mark.parametrize("command", [
    [], ["run"], ["report"], ["compare"], ["packet"], ["ratings"], ["models"], ["models", "pull-default"],
    ["models", "list"], ["models", "inspect"], ["data"], ["data", "validate"], ["data", "split"],
    ["data", "contamination"],
], ids=lambda c: " ".join(c) or "ftevals")
def test_help_works_for_every_command(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])

    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: ftevals {' '.join(command)}".rstrip())


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "commands:" in capsys.readouterr().out


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("ftevals")
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ftevals ")
