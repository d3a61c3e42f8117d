"""Verdicts and scores: each model's verdict against the reference, the prompting contender's share of
the adapter's gain (both on the summary card), and the scores section (metric table, changes against
the reference, charts).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..fmt import is_number, num
from ..svg import Bar, bar_chart, delta_chart
from .base import MetricInfo, SuiteData, _d, _index, _l, _s

VERDICTS = ("improved", "no_significant_change", "regressed")


@dataclass(frozen=True)
class VerdictRow:
    model: str
    role: str
    primary: Mapping[str, Any] | None  # the comparison on the primary metric
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
    cells: list[Mapping[str, Any]]  # {"value", "ci_low", "ci_high"} per metric, {} when missing


@dataclass(frozen=True)
class Scores:
    rows: list[ScoreRow]  # empty when the suite has no metrics
    comparisons: list[Mapping[str, Any]]  # by model, then metric, in suite order
    charts: list[tuple[Any, Any]]  # (values chart, delta chart or None) per metric with values


def metric_info(m: Mapping[str, Any]) -> MetricInfo:
    rng = m.get("range")
    return MetricInfo(
        name=_s(m.get("name")),
        higher_is_better=m.get("higher_is_better") is not False,
        kind=_s(m.get("kind")) or "continuous",
        primary=m.get("primary") is True,
        value_range=list(rng) if isinstance(rng, (list, tuple)) and len(rng) == 2 else None,
    )


# ---------------------------------------------------------------------------------------------------
# The summary card


def _role(model: Mapping[str, Any]) -> str:
    if model.get("adapter"):
        rank = model.get("adapter_rank")
        return f"adapter (rank {rank})" if rank else "adapter"
    if is_number(model.get("fewshot")) and model["fewshot"] > 0:
        return f"{model['fewshot']}-shot prompting"
    return ""


def verdicts(data: SuiteData) -> list[VerdictRow]:
    """One row per non-reference model."""
    return [_verdict(m, data.model_info, data.primary, data.by_key, data.metrics) for m in data.models[1:]]


def _verdict(
    model: str,
    models: Mapping[str, Any],
    primary: MetricInfo | None,
    by_key: Mapping[tuple[str, str], Mapping[str, Any]],
    metrics: list[MetricInfo],
) -> VerdictRow:
    comps = [by_key[(model, m.name)] for m in metrics if (model, m.name) in by_key]
    comps += [c for (m, _), c in by_key.items() if m == model and c not in comps]
    counts = {v: sum(1 for c in comps if c.get("verdict") == v) for v in VERDICTS}
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
    first = by_key.get((model, primary.name)) if primary else None
    binary = first is not None and (first.get("kind") == "binary" or (primary is not None and primary.kind == "binary"))
    return VerdictRow(
        model=model,
        role=_role(_d(models.get(model))),
        primary=first,
        overall=overall,
        counts=counts,
        fixes=len(_l(first.get("fixes"))) if binary and first is not None else None,
        regressions=len(_l(first.get("regressions"))) if binary and first is not None else None,
    )


def prompting(p: Any) -> Prompting | None:
    if not isinstance(p, Mapping):
        return None
    contender, adapter, metric = _s(p.get("contender")), _s(p.get("adapter")), _s(p.get("metric"))
    k = p.get("k")
    who = f"{contender}, {k}-shot" if k is not None else contender
    values = f"base {num(p.get('base_value'))}, prompted {num(p.get('prompted_value'))}, adapter {num(p.get('adapter_value'))}"
    share = p.get("share_of_gain")
    if is_number(share):
        sentence = (
            f"Prompting the base model ({who}) recovers {100 * share:.0f}% of the gain of adapter "
            f"{adapter} on {metric} ({values})."
        )
    else:
        sentence = f"Adapter {adapter} shows no gain over the base on {metric}, so there is no share to compare ({values})."
    return Prompting(sentence=sentence, recommendation=_s(p.get("recommendation")))


# ---------------------------------------------------------------------------------------------------
# The scores section


def scores(data: SuiteData) -> Scores:
    names, metrics = data.models, data.metrics
    rows = [ScoreRow(m, m == data.reference, [_d(_d(data.scores.get(m)).get(x.name)) for x in metrics]) for m in names]
    return Scores(
        rows=rows if metrics else [],
        comparisons=sorted(data.comparisons, key=lambda c: (_index(names, c.get("model")), _index([x.name for x in metrics], c.get("metric")))),
        charts=_charts(names, data.reference, metrics, data.scores, data.by_key),
    )


def _tone(verdict: Any) -> str:
    return {"improved": "up", "regressed": "dn", "no_significant_change": "ns"}.get(verdict, "na")


def _charts(
    names: list[str],
    reference: str,
    metrics: list[MetricInfo],
    scores: Mapping[str, Any],
    by_key: Mapping[tuple[str, str], Mapping[str, Any]],
) -> list[tuple[Any, Any]]:
    charts = []
    for metric in metrics:
        bars = []
        for m in names:
            s = _d(_d(scores.get(m)).get(metric.name))
            bars.append(Bar(m, s.get("value"), s.get("ci_low"), s.get("ci_high"), "ref" if m == reference else "m"))
        if not any(is_number(b.value) for b in bars):
            continue
        direction = "higher is better" if metric.higher_is_better else "lower is better"
        values = bar_chart(bars, title=f"{metric.name} (95% CI; {direction})", value_range=metric.value_range)
        deltas = [
            Bar(m, c.get("delta"), c.get("ci_low"), c.get("ci_high"), _tone(c.get("verdict")))
            for m in names[1:]
            if (c := by_key.get((m, metric.name))) is not None
        ]
        delta = delta_chart(deltas, title=f"{metric.name}: change vs {reference}") if deltas else None
        charts.append((values, delta))
    return charts


__all__ = ["Prompting", "ScoreRow", "Scores", "VerdictRow", "metric_info", "prompting", "scores", "verdicts"]
