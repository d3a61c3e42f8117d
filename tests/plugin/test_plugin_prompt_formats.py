"""A suite's prompt template and prompt format through the plugin: the results record, the terminal
summary and the HTML report say how each model was prompted (served by replay: no model runs; the
vLLM run of a real base model is tests/integration/test_completion_mode.py)."""

from __future__ import annotations

import html
import re

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestAssertRewriteWarning")

TEMPLATE = "Customer message: {prompt}\nIntent:"


def test_a_completion_suite_records_and_shows_its_format(project) -> None:
    project.write_suite(prompt_template=TEMPLATE, prompt_format="completion")

    result = project.run()

    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([
        "demo (classification, n=20, reference=base; gates 1/1 passed)",
        "  model               accuracy *",
        "  base (completion)   0.600 * reference*",
        "  tuned (completion)  0.800 (+0.200 *",
    ])
    (suite,) = project.results()["suites"]
    assert suite["prompt_formats"] == {"base": "completion", "tuned": "completion"}
    # Every example's user turn is the template filled in with the row's own message.
    rows = {r["id"]: r["messages"][-2]["content"] for r in project.rows}  # the user turn before the answer
    assert {e["id"]: e["messages"][-1]["content"] for e in suite["examples"]} == {
        i: TEMPLATE.format(prompt=text) for i, text in rows.items()}
    report = (project.path / "out" / "report.html").read_text(encoding="utf-8")
    # The provenance table's prompt format column, and the tag in the suite's metrics table.
    assert re.search(r"<td>base</td><td>default</td>.*?<td>completion</td>", report)
    assert "<td>tuned <small title=" in report and "(completion)</small>" in report
    assert html.escape(TEMPLATE.split("{")[0]) in report  # the templated prompt is what the examples show


def test_a_chat_suite_records_chat_and_its_summary_is_unchanged(project) -> None:
    result = project.run()

    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["  base   0.600 * reference*"])
    assert project.results()["suites"][0]["prompt_formats"] == {"base": "chat", "tuned": "chat"}
    assert "(completion)" not in result.stdout.str()
