"""The terminal summary: one table per suite (model x metric, delta vs base with CI, verdict, gates)."""

from __future__ import annotations

from typing import Any

_VERDICT = {"improved": "improved", "regressed": "REGRESSED", "no_significant_change": "no sig. change"}


def _fmt(v: Any, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _signed(v: Any, digits: int = 3) -> str:
    return "-" if v is None else f"{v:+.{digits}f}"


def summary_lines(results: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for suite in results["suites"]:
        lines += suite_table(suite)
        lines.append("")
    return lines


def suite_table(suite: dict[str, Any]) -> list[str]:
    metrics = [m["name"] for m in suite["metrics"]]
    ref = suite["reference"]
    comps = {(c["model"], c["metric"]): c for c in suite["comparisons"]}
    gates = suite.get("gates") or []
    n = suite["dataset"]["n_examples"]
    failing = sum(1 for g in gates if not g["passed"])
    gate_text = f"gates {len(gates) - failing}/{len(gates)} passed" if gates else "no gates"
    header = f"{suite['name']} ({suite['task']}, n={n}, reference={ref}; {gate_text})"
    rows = [["model", *metrics, "verdict"]]
    for model in suite["models"]:
        cells = [model]
        verdicts = []
        for metric in metrics:
            score = suite["scores"][model][metric]
            cell = _fmt(score["value"])
            comp = comps.get((model, metric))
            if comp is not None:
                cell += f" ({_signed(comp['delta'])} [{_signed(comp['ci_low'])},{_signed(comp['ci_high'])}])"
                verdicts.append(comp["verdict"])
            cells.append(cell)
        primary = comps.get((model, metrics[0])) if metrics else None
        cells.append("reference" if model == ref else _VERDICT.get(primary["verdict"], "?") if primary else "-")
        rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = [header]
    for i, row in enumerate(rows):
        out.append("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if i == 0:
            out.append("  " + "  ".join("-" * w for w in widths))
    for g in gates:
        out.append(f"  [{'PASS' if g['passed'] else 'FAIL'}] {g['message']}")
    if suite.get("prompting") and suite["prompting"].get("recommendation"):
        out.append(f"  note: {suite['prompting']['recommendation']}")
    return out


__all__ = ["suite_table", "summary_lines"]
