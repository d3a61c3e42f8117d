"""The markdown summary for CI pages: from a results file, from a run, and into $GITHUB_STEP_SUMMARY."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ftevals.ci_summary import markdown_summary
from ftevals.cli import main
from ftevals.results import load

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "real_results.json"
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestAssertRewriteWarning")


def test_markdown_has_a_headline_a_table_per_suite_and_every_gate():
    results = load(FIXTURE)
    text = markdown_summary(results)
    total = sum(len(s.gates) for s in results.suites)
    failing = sum(1 for s in results.suites for g in s.gates if not g.passed and not g.known_failure)
    assert text.startswith(f"## ftevals: {len(results.suites)} suites, {failing} of {total} gates FAILED\n")
    for suite in results.suites:
        assert f"### {'❌' if any(not g.passed and not g.known_failure for g in suite.gates) else '✅'} {suite.name} (" in text
        assert "| model | " + " | ".join(m.name for m in suite.metrics) + " | verdict" in text
    gate_lines = [line for line in text.splitlines() if line.startswith(("- ✅", "- ❌", "- ⚠️"))]
    assert len(gate_lines) == total + sum(1 for s in results.suites if s.baseline is not None and s.baseline.status == "changed")
    # The decision card comes first, decided from the file (written before decisions were recorded).
    assert text.index("### Decision") < text.index("### ✅ banking77")
    # A known failure is neither a pass nor a failure, in the table as in the list.
    forgetting = text.split("forgetting-dialogsum (", 1)[1].split("###", 1)[0]
    assert re.search(r"\n\| banking77 \| [0-9.]+ \([-+][0-9.]+ \[[-+][0-9.]+,[-+][0-9.]+\]\) \| .* \| 0/1 passed, 1 known \|\n",
                     forgetting), forgetting
    assert "- ⚠️ known failure: rougeL regressed: banking77" in text


def test_suite_text_cannot_break_the_markdown():
    from dataclasses import replace

    results = load(FIXTURE)
    suite = results.suites[0]
    gate = replace(suite.gates[0], message="a | b <script>alert(1)</script> `x`\nnext", passed=False)
    bad = replace(results, suites=(replace(suite, gates=(gate,)),))
    text = markdown_summary(bad)
    assert "a \\| b &lt;script&gt;alert(1)&lt;/script&gt; \\`x\\` next" in text and "<script>" not in text


def test_cli_prints_markdown(capsys):
    assert main(["summary", str(FIXTURE), "--markdown"]) == 0
    assert capsys.readouterr().out == markdown_summary(load(FIXTURE))
    assert main(["summary", str(FIXTURE)]) == 0
    assert "banking77 (classification, n=20 of 3079" in capsys.readouterr().out


def test_a_run_writes_the_summary_and_appends_to_the_github_step_summary(project, monkeypatch, tmp_path):
    step = tmp_path / "step_summary.md"
    step.write_text("earlier step\n", encoding="utf-8")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    project.write_predictions({"base": 12, "tuned": 6})
    project.write_suite(gates=["accuracy >= base - 0.05", "macro_f1 >= 0.1"])

    result = project.run("--ftevals-summary-md", "out/summary.md")

    assert result.ret == pytest.ExitCode.TESTS_FAILED  # unchanged by the summary
    result.stdout.fnmatch_lines(["summary: out/summary.md", f"summary: {step}"])
    written = (project.path / "out" / "summary.md").read_text(encoding="utf-8")
    assert written.startswith("## ftevals: 1 suite, 1 of 2 gates FAILED")
    assert "- ❌ **accuracy regressed: tuned 0.300 vs base 0.600" in written
    assert step.read_text(encoding="utf-8") == "earlier step\n" + written + "\n"
