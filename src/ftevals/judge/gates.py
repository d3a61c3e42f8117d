"""Judge gates: `judge:CRITERION OP RHS` and `judge_win_rate OP NUMBER`, refused until calibrated.

They use the ordinary gate language and evaluation (gate.py): `judge:helpfulness >= base` reads the
judge's paired comparison of the model with the reference on that criterion, `judge:style >= 3.5`
its mean score, `judge_win_rate > 0.5 significantly` the Wilson interval of its pairwise win rate.
What is new is the refusal: while the calibration for the gate's criterion ("preference" for the
win rate) is missing, stale or below the suite's agreement floor, the gate fails with the figure
and what to do, whatever the judge said.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..gate import JUDGE_PREFIX, Gate, evaluate_gate
from ..results.judge_records import JudgeResult
from ..results.records import GateOutcome, ScoreSummary
from ..suite import Suite, gate_targets, known_failure
from .calibration import PREFERENCE

if TYPE_CHECKING:  # pragma: no cover
    from ..pipeline import PreparedSuite

WIN_RATE = "judge_win_rate"


def is_judge_gate(gate: Gate) -> bool:
    return gate.metric == WIN_RATE or gate.metric.startswith(f"{JUDGE_PREFIX}:")


def criterion_of(gate: Gate) -> str:
    """The calibration entry that licenses this gate."""
    return PREFERENCE if gate.metric == WIN_RATE else gate.metric.split(":", 1)[1]


def check_judge_gate(suite: Suite, gate: Gate, criteria: Collection[str]) -> None:
    """Refuse, at start-up, a judge gate the suite's judge cannot answer."""
    where = f"suite {suite.name!r}: gate {gate.text!r}"
    judge = suite.judge_config
    if judge is None:
        raise ConfigError(f"{where} needs an LLM judge; add judge=\"MODEL\" (or judge=Judge(...)) to the suite")
    if gate.metric == WIN_RATE:
        if not judge.pairwise:
            raise ConfigError(f"{where}: the win rate needs a pairwise judge; use Judge(mode=\"pairwise\" or \"both\")")
        if gate.relative:
            raise ConfigError(f"{where}: the judge's win rate is already against the reference; compare it with a "
                              f"number, e.g. '{WIN_RATE} {gate.op} 0.5'")
        return
    criterion = criterion_of(gate)
    if not judge.pointwise:
        raise ConfigError(f"{where}: criterion scores need a pointwise judge; use Judge(mode=\"pointwise\" or \"both\")")
    if criterion not in criteria:
        raise ConfigError(f"{where}: the suite's rubric has no criterion {criterion!r} "
                          f"(criteria: {', '.join(criteria)})")
    if gate.uses_percent:
        raise ConfigError(f"{where}: judge scores are on the rubric's scale, not 0-1; write a plain number")


def judge_gate_outcomes(ps: PreparedSuite, judge: JudgeResult) -> list[GateOutcome]:
    """One outcome per (judge gate, model), in the suite's order: refused, or evaluated."""
    suite = ps.suite
    scores: dict[str, dict[str, ScoreSummary]] = {
        m: {f"{JUDGE_PREFIX}:{c}": s for c, s in by.items()} for m, by in judge.scores.items()}
    for m, w in judge.win_rates.items():
        scores.setdefault(m, {})[WIN_RATE] = ScoreSummary(w.win_rate, w.ci_low, w.ci_high, w.n)
    states = judge.calibration.criteria if judge.calibration is not None else {}
    out = []
    for gate in ps.judge_gates:
        state = states.get(criterion_of(gate))
        for target in gate_targets(suite, ps.models, gate):
            if state is None or state.state != "calibrated":
                why = state.message if state is not None else f"no calibration for {criterion_of(gate)}"
                passed, message = False, f"refused: {gate.metric} may not gate yet: {why}"
                expression, gate_id = gate.expression, (f"{target.model}::{gate.expression}" if target.model
                                                        else gate.expression)
            else:
                result = evaluate_gate(gate, target.model, scores, judge.comparisons, {},
                                       reference=judge.reference)
                passed, message, expression, gate_id = result.passed, result.message, result.expression, result.id
            out.append(GateOutcome(gate_id, expression, target.model, passed, message, gate.text, source=target.source,
                                   known_failure=known_failure(suite, target)))
    return out


__all__ = ["WIN_RATE", "check_judge_gate", "criterion_of", "is_judge_gate", "judge_gate_outcomes"]
