"""The LLM judge's part of the results file: `SuiteResult.judge` (ftevals/judge/, docs/judge.md).

Kept apart from records.py so that each module stays one screenful of shapes; records.py imports
`JudgeResult` for the `SuiteResult.judge` annotation, and the codec derives the JSON and the
schema from these type hints as for every other record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from .codec import omit_none
from .records import Comparison, Record, ScoreSummary

#: A pairwise outcome for one model against the reference on one example: "win"/"loss"/"tie" when
#: both orders (model as A, then as B) agree, "inconsistent" when they do not.
JudgeVerdict = Literal["win", "loss", "tie", "inconsistent"]
#: What one order of a pairwise question said, unblinded: the model, the reference, or a tie.
JudgeChoice = Literal["model", "reference", "tie"]
#: Why a judge gate may or may not decide: see judge/calibration.py.
CalibrationState = Literal["calibrated", "missing", "stale", "below_floor"]


@dataclass(frozen=True)
class JudgeIdentity(Record):
    """What makes two judges the same judge: its weights, its prompt wording and the rubric.

    A calibration is valid only for the identity it was measured with; the model's name in the
    model table is informational (renaming a model does not change its verdicts).
    """

    model: str
    spec: str
    base_fingerprint: str | None
    adapter_fingerprint: str | None
    prompt_version: str
    rubric_hash: str

    def same_judge(self, other: JudgeIdentity) -> list[str]:
        """The parts in which `other` differs from this identity (empty: the same judge)."""
        parts = ("spec", "base_fingerprint", "adapter_fingerprint", "prompt_version", "rubric_hash")
        return [p for p in parts if getattr(self, p) != getattr(other, p)]


@dataclass(frozen=True)
class JudgeItem(Record):
    """The judge's verdicts on one model's output for one example."""

    example: str
    model: str
    #: criterion -> score on the rubric's scale; null when the verdict could not be read (after the retry).
    scores: Mapping[str, int | None] = field(default_factory=dict)
    #: Characters of the judged output (for the length-bias figure).
    length: int = 0
    #: Pairwise, for a non-reference model: the outcome of both orders; null when either was unreadable.
    verdict: JudgeVerdict | None = omit_none()
    #: Pairwise: what each order said, [model shown as A, model shown as B]; null where unreadable.
    orders: tuple[JudgeChoice | None, ...] | None = omit_none()


@dataclass(frozen=True)
class JudgeWinRate(Record):
    """Pairwise outcomes of one model against the reference; the rate has a Wilson 95% interval.

    `n` counts examples where both orders were readable; ties and inconsistent pairs are not wins.
    """

    reference: str
    n: int
    wins: int
    losses: int
    ties: int
    inconsistent: int
    unparseable: int
    win_rate: float | None
    ci_low: float | None
    ci_high: float | None


@dataclass(frozen=True)
class JudgeParsing(Record):
    """How many verdicts could be read: requests asked, unreadable on the first try, retried, and
    unreadable in the end (recorded as null, never guessed)."""

    requests: int
    first_try_unparseable: int
    retried: int
    unparseable_pointwise: int
    unparseable_pairwise: int


@dataclass(frozen=True)
class CriterionAgreement(Record):
    """Judge-human agreement on one criterion (or "preference"), over the items both rated.

    `alpha`: Krippendorff's alpha (ordinal) of the judge against the raters' consensus (the rounded
    median); `alpha_humans`: the raters among themselves; `alpha_with_judge`: the judge added as one
    more rater. `kappa_quadratic`: Cohen's quadratic-weighted kappa, judge vs consensus. `confusion`:
    rows are the consensus level, columns the judge's, both indexed by `levels`.
    """

    criterion: str
    n_items: int
    alpha: float | None
    alpha_humans: float | None
    alpha_with_judge: float | None
    kappa_quadratic: float | None
    levels: tuple[int, ...] = ()
    confusion: tuple[tuple[int, ...], ...] = ()


@dataclass(frozen=True)
class CriterionCalibration(Record):
    """Whether one criterion's judge gates may decide, and why (the message names the figure)."""

    state: CalibrationState
    message: str
    agreement: CriterionAgreement | None = omit_none()


@dataclass(frozen=True)
class JudgeCalibration(Record):
    """The calibration file the run checked the judge's gates against, and the verdict per criterion."""

    path: str
    min_alpha: float
    min_items: int
    criteria: Mapping[str, CriterionCalibration] = field(default_factory=dict)


@dataclass(frozen=True)
class JudgeResult(Record):
    """An LLM judge's verdicts on one suite, on the suite's rubric (docs/judge.md)."""

    identity: JudgeIdentity
    mode: str
    reference: str
    scale: tuple[int, ...]
    criteria: tuple[str, ...]
    #: model -> criterion -> mean score with a bootstrap 95% CI over examples (pointwise).
    scores: Mapping[str, Mapping[str, ScoreSummary]] = field(default_factory=dict)
    #: Each model against the reference per criterion (metric `judge:CRITERION`): paired bootstrap.
    comparisons: tuple[Comparison, ...] = ()
    #: model -> pairwise outcomes against the reference.
    win_rates: Mapping[str, JudgeWinRate] = field(default_factory=dict)
    parsing: JudgeParsing | None = None
    #: Share of readable pairs where the judge picked the same position (A, A or B, B) in both orders.
    position_bias: float | None = None
    #: criterion -> Spearman correlation of the judge's score with the output's length (all models).
    length_bias: Mapping[str, float | None] = field(default_factory=dict)
    items: tuple[JudgeItem, ...] = ()
    calibration: JudgeCalibration | None = omit_none()

    def win_rate(self, model: str) -> JudgeWinRate | None:
        return self.win_rates.get(model)


__all__ = [
    "CalibrationState", "CriterionAgreement", "CriterionCalibration", "JudgeCalibration", "JudgeChoice", "JudgeIdentity",
    "JudgeItem", "JudgeParsing", "JudgeResult", "JudgeVerdict", "JudgeWinRate",
]
