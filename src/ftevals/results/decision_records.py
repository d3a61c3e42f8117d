"""The promotion decision's part of the results file: `SuiteResult.decisions` and `Results.decisions`.

A decision is a record with its reasons (like pytest's TestReport: an outcome plus what explains it),
built once by ftevals/decision.py from the rest of the record, so that the terminal, the HTML report,
the CI markdown summary and any tool reading the file print the same outcome for the same reasons.
Kept apart from records.py, as judge_records.py is, so that each module stays one screen of shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .codec import omit_none
from .records import Record, TestName

#: promote: every check on the model passed with the evidence to back it; hold: something blocks it
#: (a failed gate, a changed baseline, a failed generation, contamination); insufficient_evidence:
#: nothing blocks it, but a check could not have seen the change it guards against at this n.
Outcome = Literal["promote", "hold", "insufficient_evidence"]
#: pass: a check held; block: it decides "hold"; insufficient: it decides "insufficient_evidence"
#: unless something blocks; info: context that decides nothing (a known failure, a different base).
ReasonStatus = Literal["pass", "block", "insufficient", "info"]
ReasonKind = Literal["gate", "power", "baseline", "integrity", "forgetting", "failure", "coverage",
                     "contamination", "reference", "cost"]


@dataclass(frozen=True)
class PowerCheck(Record):
    """Whether a base-relative gate's paired test could have detected the change the gate is about.

    `mde`: the smallest true change (metric units, absolute) the comparison's test detects with
    probability `power` at this `n` and two-sided `alpha` (power.py); `margin`: the change the gate
    cares about (`0.05` for `>= base - 0.05`; the wanted gain for `>= base + 0.02 significantly`;
    None for a plain "significantly better" gate); `n_needed`: the n that would detect `margin`
    with that power; `detectable`: mde <= margin (None without a margin).
    """

    gate: str
    model: str
    metric: str
    test: TestName
    n: int
    alpha: float
    power: float
    mde: float | None
    margin: float | None
    n_needed: int | None
    detectable: bool | None
    basis: str


@dataclass(frozen=True)
class DecisionReason(Record):
    """One line of a decision's evidence; `suite` names its suite in run-level decisions."""

    kind: ReasonKind
    status: ReasonStatus
    message: str
    suite: str | None = omit_none()


@dataclass(frozen=True)
class Decision(Record):
    """One model's outcome (per suite in `SuiteResult.decisions`, across the run in `Results.decisions`)."""

    model: str
    outcome: Outcome
    reasons: tuple[DecisionReason, ...] = ()
    power: tuple[PowerCheck, ...] = ()
    #: Run-level decisions: the suites the model was judged in (absent in a suite's own decisions).
    suites: tuple[str, ...] | None = omit_none()
    #: What 1,000 requests like this suite's cost with the model, from the prices in the ini
    #: (`ftevals_prices`) and the tokens it used here; absent without a price. Latency and
    #: throughput are in the suite's `usage` (volatile: measured, not computed).
    cost_per_1k_requests: float | None = omit_none()

    @property
    def blocking(self) -> tuple[DecisionReason, ...]:
        return tuple(r for r in self.reasons if r.status == "block")

    @property
    def lacking(self) -> tuple[DecisionReason, ...]:
        return tuple(r for r in self.reasons if r.status == "insufficient")


__all__ = ["Decision", "DecisionReason", "Outcome", "PowerCheck", "ReasonKind", "ReasonStatus"]
