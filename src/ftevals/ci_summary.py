"""A markdown summary of verdicts and gates for CI pages (GitHub's job summary, a PR comment).

The same figures as the terminal summary (summary.py), as markdown: a headline, then per suite its
header, a table (model, each metric with delta and CI, verdict, gates) and every gate outcome,
after the decision card (decision.py: per model, promote / hold / insufficient evidence and why).
Written by the plugin to `--ftevals-summary-md PATH` and, when `$GITHUB_STEP_SUMMARY` is set (a
GitHub Actions step), appended there; `ftevals summary RESULTS --markdown` prints it. Exit codes are
not affected: the gates' pytest outcomes decide those.

Text from suites and gate messages is escaped for markdown tables; no model output is included.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .fsutil import atomic_write_text
from .results import Decision, Results, SuiteResult, from_data
from .summary import (decided, economy_line, gate_cell, gate_counts, integrity_line, judge_line, power_lines, score_cell, suite_header,
                      verdict_phrase)


def _escape(text: str) -> str:
    """Safe in a markdown table cell and as inline text: pipes, backticks, angle brackets, newlines."""
    out = text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`")
    return out.replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def markdown_summary(results: Results | Mapping[str, Any], *, title: str = "ftevals") -> str:
    record = decided(from_data(results))
    failing = sum(gate_counts(s)[1] for s in record.suites)
    total = sum(len(s.gates) for s in record.suites)
    head = (f"{failing} of {total} gates FAILED" if failing else
            f"all {total} gates passed" if total else "no gates")
    lines = [f"## {_escape(title)}: {len(record.suites)} suite{'s' if len(record.suites) != 1 else ''}, {head}", ""]
    lines += _decisions(record.decisions or ())
    for suite in record.suites:
        lines += _suite(suite)
    if record.integrity:
        lines += [_escape(integrity_line(record.integrity)), ""]
    return "\n".join(lines).rstrip() + "\n"


_OUTCOME_MARKS = {"promote": "✅ promote", "hold": "❌ **hold**", "insufficient_evidence": "⚠️ insufficient evidence"}


def _decisions(decisions: Sequence[Decision]) -> list[str]:
    """The decision card as a table: the same outcome and reasons as the terminal (decision.py)."""
    if not decisions:
        return []
    from .decision import decision_summary

    out = ["### Decision", "", "| model | decision | why |", "|---|---|---|"]
    for d in decisions:
        out.append(f"| {_escape(d.model)} | {_OUTCOME_MARKS[d.outcome]} | {_escape(decision_summary(d))} |")
    return [*out, ""]


def _suite(suite: SuiteResult) -> list[str]:
    failing = gate_counts(suite)[1]
    mark = "❌" if failing else "✅"
    out = [f"### {mark} {_escape(suite_header(suite))}", ""]
    metrics = [m.name for m in suite.metrics]
    per_model = any(g.model for g in suite.gates)
    header = ["model", *metrics, "verdict", *(["gates"] if per_model else [])]
    out.append("| " + " | ".join(map(_escape, header)) + " |")
    out.append("|" + "---|" * len(header))
    for model in suite.models:
        cells = [f"`{model}`" if model == suite.reference else model]
        cells += [score_cell(suite.score(model, m), suite.comparison(model, m)) for m in metrics]
        found = [c for m in metrics if (c := suite.comparison(model, m)) is not None]
        cells.append("reference" if model == suite.reference else verdict_phrase(found)[0])
        if per_model:
            cells.append(gate_cell(suite.gates, model)[0])
        out.append("| " + " | ".join(c if c.startswith("`") else _escape(c) for c in cells) + " |")
    out.append("")
    for g in suite.gates:
        if g.passed:
            out.append(f"- ✅ {_escape(g.message)}")
        elif g.known_failure:
            out.append(f"- ⚠️ known failure: {_escape(g.message)} ({_escape(g.known_failure)})")
        else:
            out.append(f"- ❌ **{_escape(g.message)}**")
    if suite.judge is not None:
        out.append(f"- ⚖️ {_escape(judge_line(suite.judge).strip())}")
    for model, why in (suite.failures or {}).items():
        out.append(f"- ❌ **{_escape(model)} was not evaluated: {_escape(why)}**")
    out += [f"- 📏 {_escape(line.strip())}" for line in power_lines(suite)]
    economy = economy_line(suite)
    if economy is not None:
        out.append(f"- ⏱️ {_escape(economy.strip())}")
    if suite.baseline is not None:
        first = (suite.baseline.message or f"baseline {suite.baseline.path}: {suite.baseline.status}").splitlines()[0]
        out.append(f"- {'❌' if suite.baseline.status == 'changed' else 'ℹ️'} {_escape(first)}")
    out.append("")
    return out


def write_markdown_summary(results: Results | Mapping[str, Any], path: Path | None) -> list[Path]:
    """Write to `path` (replacing it) and append to $GITHUB_STEP_SUMMARY when set; the paths written."""
    text = markdown_summary(results)
    written: list[Path] = []
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
        written.append(path)
    step = os.environ.get("GITHUB_STEP_SUMMARY")
    if step:
        with open(step, "a", encoding="utf-8") as f:  # GitHub collects every step's appends
            f.write(text + "\n")
        written.append(Path(step))
    return written


__all__ = ["markdown_summary", "write_markdown_summary"]
