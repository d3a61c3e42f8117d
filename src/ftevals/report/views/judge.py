"""The LLM judge's section (SuiteResult.judge, docs/judge.md): scores and win rates with CIs, its
agreement with the human raters beside the raters' own, the items where they disagree most, and
the judge's biases. Every text here is data (model outputs, ids): the template escapes it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...judge.calibration import agreement_figures, disagreements
from ...results import Comparison, CriterionAgreement, CriterionCalibration, JudgeResult, ScoreSummary
from ...errors import ResultsError
from .base import Link, SuiteData


@dataclass(frozen=True)
class JudgeView:
    judge: JudgeResult
    criteria: list[str]
    score_rows: list[tuple[str, list[ScoreSummary | None], list[Comparison | None]]]
    win_rows: list[tuple[str, Any]]
    #: criterion -> (the gate's verdict on it, the figures the calibration file holds)
    calibration: list[tuple[str, CriterionCalibration]]
    #: criterion -> this results file's own judge-human figures, when it holds ratings
    here: list[CriterionAgreement]
    disagreements: list[tuple[Link | None, dict[str, Any]]]


def judge(data: SuiteData) -> JudgeView | None:
    j = data.suite.judge
    if j is None:
        return None
    rows = []
    for m in data.models:
        if m in j.scores:
            rows.append((m, [j.scores[m].get(c) for c in j.criteria],
                         [next((x for x in j.comparisons if x.model == m and x.metric == f"judge:{c}"), None)
                          for c in j.criteria]))
    here: list[CriterionAgreement] = []
    far: list[tuple[Link | None, dict[str, Any]]] = []
    if data.suite.human is not None and data.suite.human.ratings is not None:
        try:
            here = list(agreement_figures(data.suite).values())
        except ResultsError:
            here = []
        far = [(Link(r["example"], data.anchors.get(r["example"])), r) for r in disagreements(data.suite)]
    return JudgeView(
        judge=j,
        criteria=list(j.criteria),
        score_rows=rows,
        win_rows=[(m, w) for m, w in j.win_rates.items()],
        calibration=list(j.calibration.criteria.items()) if j.calibration is not None else [],
        here=here,
        disagreements=far,
    )


__all__ = ["JudgeView", "judge"]
