"""Verdicts and scores: each model's verdict against the reference, the prompting contender's share of
the adapter's gain (both on the summary card), and the scores section (metric table, changes against
the reference, charts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...results import Comparison, MetricInfo, ModelInfo, PromptingResult, ScoreSummary
from ..fmt import is_number, num
from ..svg import Bar, bar_chart, delta_chart
from .base import SuiteData, _index

VERDICTS = ("improved", "no_significant_change", "regressed")


@dataclass(frozen=True)
class VerdictRow:
    model: str
    role: str
    primary: Comparison | None  # the comparison on the primary metric
    overall: str | None  # one of VERDICTS, None when nothing was compared
    counts: dict[str, int]
    fixes: int | None
    regressions: int | None


@dataclass(frozen=True)
class Prompting:
    sentence: str
    recommendation: str


@dataclass(frozen=True)
class ScoreRow:
    model: str
    is_reference: bool
    cells: list[ScoreSummary]  # one per metric, NO_SCORE when missing
    prompt_format: str = "chat"  # how the model was prompted in this suite (chat template or raw text)


@dataclass(frozen=True)
class Scores:
    rows: list[ScoreRow]  # empty when the suite has no metrics
    comparisons: list[Comparison]  # by model, then metric, in suite order
    charts: list[tuple[Any, Any]]  # (values chart, delta chart or None) per metric with values


# ---------------------------------------------------------------------------------------------------
# The summary card


def _role(model: ModelInfo | None) -> str:
    if model is None:
        return ""
    if model.adapter:
        return f"adapter (rank {model.adapter_rank})" if model.adapter_rank else "adapter"
    if model.fewshot > 0:
        return f"{model.fewshot}-shot prompting"
    return ""


def verdicts(data: SuiteData) -> list[VerdictRow]:
    """One row per non-reference model."""
    return [_verdict(m, data) for m in data.models[1:]]


def _verdict(model: str, data: SuiteData) -> VerdictRow:
    # The suite's metrics in their order, then any comparison on a metric the suite does not list.
    order = [m.name for m in data.metrics]
    comps = sorted((c for c in data.suite.comparisons if c.model == model), key=lambda c: _index(order, c.metric))
    counts = {v: sum(1 for c in comps if c.verdict == v) for v in VERDICTS}
    # Overall: one significant regression on any metric outweighs improvements elsewhere, because
    # the report's job is to stop a promotion that would break something.
    if counts["regressed"]:
        overall: str | None = "regressed"
    elif counts["improved"]:
        overall = "improved"
    elif comps:
        overall = "no_significant_change"
    else:
        overall = None
    primary = data.primary
    first = data.suite.comparison(model, primary.name) if primary else None
    binary = first is not None and (first.kind == "binary" or (primary is not None and primary.kind == "binary"))
    return VerdictRow(
        model=model,
        role=_role(data.model_info.get(model)),
        primary=first,
        overall=overall,
        counts=counts,
        fixes=len(first.fixes) if binary and first is not None else None,
        regressions=len(first.regressions) if binary and first is not None else None,
    )


def prompting(p: PromptingResult | None) -> Prompting | None:
    if p is None:
        return None
    who = f"{p.contender}, {p.k}-shot"
    values = f"base {num(p.base_value)}, prompted {num(p.prompted_value)}, adapter {num(p.adapter_value)}"
    if is_number(p.share_of_gain):
        sentence = (
            f"Prompting the base model ({who}) recovers {100 * p.share_of_gain:.0f}% of the gain of adapter "
            f"{p.adapter} on {p.metric} ({values})."
        )
    else:
        sentence = f"Adapter {p.adapter} shows no gain over the base on {p.metric}, so there is no share to compare ({values})."
    return Prompting(sentence=sentence, recommendation=p.recommendation or "")


# ---------------------------------------------------------------------------------------------------
# The scores section


def scores(data: SuiteData) -> Scores:
    names, metrics = data.models, data.metrics
    rows = [ScoreRow(m, m == data.reference, [data.score(m, x.name) for x in metrics], data.suite.prompt_format(m))
            for m in names]
    order = [x.name for x in metrics]
    return Scores(
        rows=rows if metrics else [],
        comparisons=sorted(data.suite.comparisons, key=lambda c: (_index(names, c.model), _index(order, c.metric))),
        charts=[chart for metric in metrics if (chart := _charts(data, metric)) is not None],
    )


def _tone(verdict: str) -> str:
    return {"improved": "up", "regressed": "dn", "no_significant_change": "ns"}.get(verdict, "na")


def _charts(data: SuiteData, metric: MetricInfo) -> tuple[Any, Any] | None:
    """The values chart and the deltas chart (None without comparisons); None without any value."""
    names, reference = data.models, data.reference
    bars = []
    for m in names:
        s = data.score(m, metric.name)
        bars.append(Bar(m, s.value, s.ci_low, s.ci_high, "ref" if m == reference else "m"))
    if not any(is_number(b.value) for b in bars):
        return None
    direction = "higher is better" if metric.higher_is_better else "lower is better"
    values = bar_chart(bars, title=f"{metric.name} (95% CI; {direction})", value_range=metric.range)
    deltas = [
        Bar(m, c.delta, c.ci_low, c.ci_high, _tone(c.verdict))
        for m in names[1:]
        if (c := data.suite.comparison(m, metric.name)) is not None
    ]
    delta = delta_chart(deltas, title=f"{metric.name}: change vs {reference}") if deltas else None
    return values, delta


__all__ = ["Prompting", "ScoreRow", "Scores", "VerdictRow", "prompting", "scores", "verdicts"]
