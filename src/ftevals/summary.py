"""The terminal summary: one table per suite, computed from a results record alone.

    banking77 (classification, n=200 of 3079, reference=base; gates 2/3 passed)
      model          accuracy                         macro_f1                         verdict               gates
      -------------  -------------------------------  -------------------------------  --------------------  ----------
      base           0.020                            0.010                            reference
      banking77      0.410 (+0.390 [+0.320,+0.460])   0.380 (+0.370 [+0.300,+0.440])   improved              2/2 passed
      base-fewshot8  0.150 (+0.130 [+0.080,+0.180])   0.120 (+0.110 [+0.060,+0.160])   improved              -
      [PASS] accuracy improved: banking77 0.410 vs base 0.020 (...)
      [FAIL] contamination 0.067 is above the ceiling 0.050
      baseline suites/baselines/banking77.json matches this run (6 values for 3 models)

A model prompted with raw text (completion mode: no chat template, or the suite's prompt_format)
is listed as `NAME (completion)`. A cell is the score, then its delta against the reference with
the delta's 95% CI. The verdict comes from each metric's paired test (McNemar's exact test for per-example right/wrong metrics, the
bootstrap CI for continuous ones), so a binary metric's CI can exclude 0 while the exact test does
not reject: the verdict then says "no sig. change" and shows the p-value. Rows carry terminal
markup (red for failures and regressions) for pytest's terminal writer; `summary_lines` drops it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .numbers import num, p_clause, signed
from .results import (Comparison, Decision, GateOutcome, IntegrityCheck, JudgeResult, PowerCheck, Results,
                      ScoreSummary, SuiteResult, from_data)

Markup = dict[str, bool]
Row = tuple[str, Markup]

_FAIL: Markup = {"red": True, "bold": True}
_PASS: Markup = {"green": True}
_PLAIN: Markup = {}


def summary_rows(results: Results | Mapping[str, Any], notes: Mapping[str, str] | None = None) -> list[Row]:
    """Every suite's table, as (text, markup) rows; `notes` adds a line per suite (e.g. a skip reason)."""
    record = decided(from_data(results))  # a Results passes through unchanged
    rows: list[Row] = decision_rows(record.decisions or ())
    for suite in record.suites:
        rows += suite_rows(suite, note=(notes or {}).get(suite.name))
        rows.append(("", _PLAIN))
    if record.integrity:
        rows.append((integrity_line(record.integrity), _PLAIN))
    return rows


def decided(record: Results) -> Results:
    """The record with its decisions: a file written before ftevals recorded them is decided now."""
    if record.decisions is not None:
        return record
    from .decision import decide

    return decide(record)


def decision_rows(decisions: Sequence[Decision]) -> list[Row]:
    """The decision card, first: one line per model across the run, with the reasons that decided it."""
    if not decisions:
        return []
    from .decision import decision_line

    width = max(len(d.model) for d in decisions)
    rows: list[Row] = [("decision (each model across the suites it ran in; docs/gates.md#the-decision)", {"bold": True})]
    for d in decisions:
        style = _FAIL if d.outcome == "hold" else {"yellow": True} if d.outcome == "insufficient_evidence" else _PASS
        rows.append((f"  {decision_line(d, width=width)}", style))
    rows.append(("", _PLAIN))
    return rows


def power_lines(suite: SuiteResult) -> list[str]:
    """What each base-relative gate's test could detect at the suite's n (the suite's decisions hold them)."""
    return [f"  power: {power_phrase_short(c)}" for d in suite.decisions or () for c in d.power]


def power_phrase_short(c: PowerCheck) -> str:
    """`tuned accuracy: detects 0.366 or more at n=20 (margin 0.050: NOT enough, n=658 would)`."""
    if c.mde is None:
        seen = ("cannot tell: every resampled delta was equal" if "no spread" in c.basis
                else "cannot detect even the largest change")
    else:
        seen = f"detects {num(c.mde)} or more at n={c.n}"
    if c.margin:
        verdict = "enough" if c.detectable else "NOT enough"
        need = f", n={c.n_needed:,} would" if c.n_needed and not c.detectable else ""
        seen += f" (margin {num(c.margin)}: {verdict}{need})"
    return f"{c.model} {c.metric}: {seen}"


def economy_line(suite: SuiteResult) -> str | None:
    """`speed and cost: banking77 p50 0.081 s/request, 352 tok/s, 0.0042 per 1k requests | ...`: is it
    worth it, at a glance, for every contender side by side (None when nothing was measured or priced)."""
    costs = {d.model: d.cost_per_1k_requests for d in suite.decisions or ()}
    parts = []
    for model in suite.models:
        u = suite.usage.get(model)
        bits = []
        if u is not None and u.latency_p50_s is not None:
            # A local engine's latency is measured inside its offline batch: say so, it is no
            # serving latency (it grows with the batch).
            where = " in batch" if u.latency_basis == "in-batch" else ""
            bits.append(f"p50 {num(u.latency_p50_s)} s/request{where}")
        if u is not None and u.tokens_per_s is not None:
            bits.append(f"{u.tokens_per_s:.0f} tok/s")
        if costs.get(model) is not None:
            bits.append(f"{costs[model]:.4g} per 1k requests")
        if bits:
            parts.append(f"{model} {', '.join(bits)}")
    return f"  speed and cost: {' | '.join(parts)}" if parts else None


def integrity_line(checks: Mapping[str, IntegrityCheck]) -> str:
    """One line: each adapter was applied, and how that was seen (outputs, or the log-probability probe)."""
    parts = []
    for c in checks.values():
        how = (f"{c.changed_outputs}/{c.n_prompts} outputs differ from {c.base}" if c.probe == "outputs"
               else f"outputs equal {c.base}'s, first-token logprobs differ by up to {num(c.max_logprob_delta)}")
        parts.append(f"{c.adapter} applied ({how})")
    schedule = next(iter(checks.values())).schedule
    return f"engine integrity: {'; '.join(parts)}; {schedule}"


def summary_lines(results: Results | Mapping[str, Any], notes: Mapping[str, str] | None = None) -> list[str]:
    return [text for text, _ in summary_rows(results, notes)]


def suite_table(suite: SuiteResult) -> list[str]:
    return [text for text, _ in suite_rows(suite)]


def suite_rows(suite: SuiteResult, note: str | None = None) -> list[Row]:
    gates = suite.gates
    failing = sum(1 for g in gates if _failing(g))
    out: list[Row] = [(_header(suite), _FAIL if failing else {"bold": True})]
    out += _table(suite)
    if suite.judge is not None:
        out.append((judge_line(suite.judge), _PLAIN))
    failed = suite.failures or {}
    for g in gates:
        if g.model in failed:
            continue  # said once, on the model's own line below
        if g.passed:
            out.append((f"  [PASS] {g.message}", _PASS))
        elif g.known_failure:
            out.append((f"  [XFAIL] {g.message} (known failure: {g.known_failure})", _PLAIN))
        else:
            out.append((f"  [FAIL] {g.message}", _FAIL))
    for model, why in failed.items():
        n = sum(1 for g in gates if g.model == model)
        fails = "" if not n else " (its gate test fails)" if n == 1 else f" (its {n} gate tests fail)"
        out.append((f"  [FAILED MODEL] {model} was not evaluated{fails}: {why}", _FAIL))
    out += [(line, _PLAIN) for line in power_lines(suite)]
    economy = economy_line(suite)
    if economy is not None:
        out.append((economy, _PLAIN))
    baseline = suite.baseline
    if baseline is not None:
        # The outcome's first line names the file and what happened ("matches this run", "did not
        # exist; wrote it ... review and commit it"); the failure itself lists the changes.
        first = baseline.message or f"baseline {baseline.path}: {baseline.status}"
        out.append((f"  {first.splitlines()[0]}", _FAIL if baseline.status == "changed" else _PLAIN))
    if note:
        out.append((f"  {note}", _PLAIN))
    if suite.prompting is not None and suite.prompting.recommendation:
        out.append((f"  note: {suite.prompting.recommendation}", _PLAIN))
    return out


def judge_line(judge: JudgeResult) -> str:
    """One line: the judge's deltas and win rates against the reference, parsing, bias, calibration."""
    parts = []
    for c in judge.comparisons:
        parts.append(f"{c.model} {c.metric} {signed(c.delta)} [{signed(c.ci_low)},{signed(c.ci_high)}]")
    for model, w in judge.win_rates.items():
        parts.append(f"{model} wins {num(w.win_rate)} [{num(w.ci_low)},{num(w.ci_high)}] n={w.n}")
    p = judge.parsing
    if p is not None:
        parts.append(f"unparseable {p.unparseable_pointwise + p.unparseable_pairwise}/{p.requests}")
    if judge.position_bias is not None:
        parts.append(f"position bias {num(judge.position_bias)}")
    if judge.calibration is not None:
        states = sorted({c.state for c in judge.calibration.criteria.values()})
        parts.append("calibration " + ("calibrated" if states == ["calibrated"] else
                                       ", ".join(f"{k} {v.state}" for k, v in judge.calibration.criteria.items())))
    return f"  judge {judge.identity.model}, against {judge.reference}: " + "; ".join(parts)


def _header(suite: SuiteResult) -> str:
    gates = suite.gates
    n = suite.dataset.n_examples if suite.dataset else len(suite.examples)
    total = suite.dataset.n_total if suite.dataset else 0
    size = f"n={n} of {total}" if total and total != n else f"n={n}"
    passed, failing, known = gate_counts(suite)
    if not gates:
        gate_text = "no gates"
    elif failing:
        gate_text = f"gates {passed}/{len(gates)} passed, {failing} FAILED"
    else:
        gate_text = f"gates {passed}/{len(gates)} passed"
    if known:
        gate_text += f", {known} known failure{'s' if known > 1 else ''}"
    return f"{suite.name} ({suite.task}, {size}, reference={suite.reference}; {gate_text})"


def _table(suite: SuiteResult) -> list[Row]:
    metrics = [m.name for m in suite.metrics]
    # A gates column only when some gate is per model (suite-level gates are counted in the header).
    per_model = any(g.model for g in suite.gates)
    grid: list[list[str]] = [["model", *metrics, "verdict", *(["gates"] if per_model else [])]]
    styles: list[Markup] = [_PLAIN]
    for model in suite.models:
        fmt = suite.prompt_format(model)
        cells = [model if fmt == "chat" else f"{model} ({fmt})"]
        for metric in metrics:
            cells.append(_cell(suite.score(model, metric), suite.comparison(model, metric)))
        found = [c for m in metrics if (c := suite.comparison(model, m)) is not None]
        verdict, bad = ("reference", False) if model == suite.reference else _verdict(found)
        if model in (suite.different_base or ()):
            verdict += " (different base)"
        if model in (suite.failures or {}):
            verdict, bad = "FAILED (not evaluated)", True
        gate_cell, gate_bad = _gate_cell(suite.gates, model)
        cells += [verdict, *([gate_cell] if per_model else [])]
        grid.append(cells)
        styles.append(_FAIL if bad or gate_bad else _PLAIN)
    widths = [max(len(r[i]) for r in grid) for i in range(len(grid[0]))]

    def line(cells: list[str]) -> str:
        return ("  " + "  ".join(c.ljust(w) for c, w in zip(cells, widths))).rstrip()

    out: list[Row] = [(line(grid[0]), _PLAIN), (line(["-" * w for w in widths]), _PLAIN)]
    out += [(line(cells), style) for cells, style in zip(grid[1:], styles[1:])]
    return out


def _cell(score: ScoreSummary | None, comp: Comparison | None) -> str:
    cell = num(score.value if score else None, missing="-")
    if comp is not None:
        delta, low, high = (signed(x, missing="-") for x in (comp.delta, comp.ci_low, comp.ci_high))
        cell += f" ({delta} [{low},{high}])"
    return cell


def _verdict(found: Sequence[Comparison]) -> tuple[str, bool]:
    """One phrase for the model: every significant change, or 'no sig. change' with the primary p."""
    if not found:
        return "-", False
    improved = [c.metric for c in found if c.verdict == "improved"]
    regressed = [c.metric for c in found if c.verdict == "regressed"]
    if not improved and not regressed:
        p = found[0].p_value
        return "no sig. change" + (f" ({p_clause(p)})" if p is not None else ""), False
    if len(improved) == len(found):
        return "improved", False
    if len(regressed) == len(found):
        return "REGRESSED", True
    parts = [f"{m} improved" for m in improved] + [f"{m} REGRESSED" for m in regressed]
    return ", ".join(parts), bool(regressed)


def _gate_cell(gates: Sequence[GateOutcome], model: str) -> tuple[str, bool]:
    mine = [g for g in gates if g.model == model]
    if not mine:
        return "", False
    failing = sum(1 for g in mine if _failing(g))
    known = sum(1 for g in mine if not g.passed and g.known_failure)
    if failing:
        return f"{failing}/{len(mine)} FAILED", True
    if known:
        return f"{len(mine) - known}/{len(mine)} passed, {known} known", False
    return f"{len(mine)}/{len(mine)} passed", False


def _failing(gate: GateOutcome) -> bool:
    """A gate that failed and is not a documented known failure."""
    return not gate.passed and not gate.known_failure


def gate_counts(suite: SuiteResult) -> tuple[int, int, int]:
    """(passed, failing, known failures) of a suite's gates."""
    failing = sum(1 for g in suite.gates if _failing(g))
    known = sum(1 for g in suite.gates if not g.passed and g.known_failure)
    return len(suite.gates) - failing - known, failing, known


# The pieces other renderings (ci_summary.py's markdown) share with the terminal table.
suite_header = _header
score_cell = _cell
verdict_phrase = _verdict
gate_cell = _gate_cell

__all__ = ["decided", "decision_rows", "economy_line", "gate_cell", "power_lines", "power_phrase_short", "gate_counts", "integrity_line", "score_cell", "suite_header", "summary_lines", "summary_rows",
           "suite_rows", "suite_table", "verdict_phrase"]
