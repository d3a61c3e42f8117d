"""From a results dict (docs/results-schema.md) to the plain records the templates draw.

All decisions about *what* the report shows live here, as small pure functions; the templates only
lay records out. Results files are data written by other versions and other people's suites, so every
optional key may be missing or null: helpers below read defensively and a missing section simply is not
shown. Text stays raw here (escaping is the template engine's job, with autoescape on).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, ResultsError
from .diff import Segment, changed_words, word_diff
from .fmt import is_number, num
from .svg import Bar, bar_chart, delta_chart

SCHEMA = "ftevals.results"
SCHEMA_VERSION = 1
VERDICTS = ("improved", "no_significant_change", "regressed")
VERDICT_TEXT = {"improved": "improved", "no_significant_change": "no significant change", "regressed": "regressed"}
#: How many confused pairs, heat-map classes and ids per cell to show before "and N more".
TOP_PAIRS = 15
HEAT_CLASSES = 12
IDS_PER_CELL = 25


# ---------------------------------------------------------------------------------------------------
# Defensive readers


def _d(x: Any) -> Mapping[str, Any]:
    return x if isinstance(x, Mapping) else {}


def _l(x: Any) -> list[Any]:
    return list(x) if isinstance(x, (list, tuple)) else []


def _s(x: Any) -> str:
    return "" if x is None else str(x)


# ---------------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class MetricInfo:
    name: str
    higher_is_better: bool
    kind: str
    primary: bool
    value_range: list[float] | None


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
    raw: Mapping[str, Any]


@dataclass(frozen=True)
class ScoreRow:
    model: str
    is_reference: bool
    cells: list[Mapping[str, Any]]  # {"value", "ci_low", "ci_high"} per metric, {} when missing


@dataclass(frozen=True)
class Confusion:
    model: str
    metric: str
    n_labels: int
    unparseable: Any
    pairs: list[tuple[str, str, int]]
    n_pairs: int
    heat_labels: list[str]
    heat: list[list[tuple[int, str]]]  # (count, css class) per gold row x predicted column


@dataclass(frozen=True)
class F1Row:
    label: str
    support: Any
    f1: list[Any]
    deltas: list[tuple[Any, str]]  # (delta vs reference, tone) per non-reference model


@dataclass(frozen=True)
class Classification:
    confusions: list[Confusion]
    f1_models: list[str]
    f1_delta_models: list[str]
    f1_rows: list[F1Row]


@dataclass(frozen=True)
class Link:
    id: str
    anchor: str | None  # None when the id is not among the rendered examples


@dataclass(frozen=True)
class FormatKind:
    kind: str
    cells: list[tuple[Any, list[Link], int]]  # (count, first ids, how many more) per model


@dataclass(frozen=True)
class FormatView:
    metric: str
    models: list[str]
    validity: list[Mapping[str, Any]]
    kinds: list[FormatKind]


@dataclass(frozen=True)
class DroppedItem:
    link: Link
    input: str
    reference: str
    output: str
    note: str  # the per-example delta, for continuous metrics


@dataclass(frozen=True)
class Dropped:
    model: str
    metric: str
    items: list[DroppedItem]


@dataclass(frozen=True)
class UsageRow:
    model: str
    u: Mapping[str, Any]
    in_per_request: float | None
    out_per_request: float | None
    cost_per_1k: float | None
    cost_total: float | None


@dataclass(frozen=True)
class HumanView:
    criteria: list[str]
    score_rows: list[tuple[str, list[Mapping[str, Any]]]]
    wtl_rows: list[tuple[str, Mapping[str, Any]]]
    agreement: Any
    rest: dict[str, Any]


@dataclass(frozen=True)
class Output:
    idx: int
    model: str
    text: str
    segments: list[Segment] | None  # a diff against the reference output, None for plain text
    scores: list[tuple[str, str]]
    flags: list[tuple[str, str]]  # (css class, label)
    missing: bool


@dataclass(frozen=True)
class Example:
    anchor: str
    id: str
    input: str
    reference: str
    label: str | None
    outputs: list[Output]
    attrs: dict[str, str]  # data-* attributes the filter script reads
    css: str


@dataclass(frozen=True)
class Examples:
    rows: list[Example]
    counts: dict[str, int]
    labels: list[tuple[str, int]]
    models: list[tuple[int, str]]  # non-reference models, for the filter and sort menus
    primary: str | None


@dataclass(frozen=True)
class SuiteView:
    name: str
    anchor: str
    task: str
    description: str
    dataset: Mapping[str, Any]
    sampling: Mapping[str, Any]
    reference: str
    models: list[str]
    metrics: list[MetricInfo]
    primary: MetricInfo | None
    verdicts: list[VerdictRow]
    gates: list[Mapping[str, Any]]
    n_failing: int
    prompting: Prompting | None
    contamination: Mapping[str, Any] | None
    baseline: Mapping[str, Any] | None
    score_rows: list[ScoreRow]
    comparisons: list[Mapping[str, Any]]
    charts: list[tuple[Any, Any]]
    classification: Classification | None
    formats: list[FormatView]
    dropped: list[Dropped]
    usage: list[UsageRow]
    has_cost: bool
    human: HumanView | None
    other_details: list[tuple[str, str, Any]]
    examples: Examples


@dataclass(frozen=True)
class GateRef:
    suite: str
    anchor: str
    gate: Mapping[str, Any]


@dataclass(frozen=True)
class Report:
    title: str
    run: Mapping[str, Any]
    run_extra: dict[str, Any]
    models: list[Mapping[str, Any]]
    suites: list[SuiteView]
    failing_gates: list[GateRef]
    n_gates: int
    price_notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------
# Entry point


def build_report(results: Any, prices: Mapping[str, Any] | None = None) -> Report:
    _check_schema(results)
    unit_prices = normalize_prices(prices)
    run = _d(results.get("run"))
    models = _d(results.get("models"))
    suites = [_suite(i, s, models, unit_prices) for i, s in enumerate(_l(results.get("suites"))) if isinstance(s, Mapping)]
    failing = [GateRef(s.name, s.anchor, g) for s in suites for g in s.gates if g.get("passed") is not True]
    known = set(models) | {m for s in suites for m in s.models}
    notes = [f"prices were given for {name!r}, which is not a model of this run" for name in sorted(set(unit_prices) - known)]
    run_known = {"id", "started_at", "finished_at", "seed", "ftevals_version", "python", "platform", "libraries", "git", "backend", "argv", "timings"}
    return Report(
        title=f"ftevals report: {_s(run.get('id')) or 'results'}",
        run=run,
        run_extra={k: v for k, v in run.items() if k not in run_known},
        models=[{"key": k, **_d(v)} for k, v in models.items()],
        suites=suites,
        failing_gates=failing,
        n_gates=sum(len(s.gates) for s in suites),
        price_notes=notes,
    )


def _check_schema(results: Any) -> None:
    if not isinstance(results, Mapping):
        raise ResultsError(f"a results file must hold a JSON object, got {type(results).__name__}")
    schema = results.get("schema", SCHEMA)
    if schema != SCHEMA:
        raise ResultsError(f"this is not an ftevals results file (schema {schema!r}, expected {SCHEMA!r})")
    version = results.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise ResultsError(
            f"results schema_version {version!r} is not supported by this ftevals (it reads version "
            f"{SCHEMA_VERSION}); render it with the ftevals version that wrote it, or upgrade ftevals"
        )
    if "suites" in results and not isinstance(results["suites"], list):
        raise ResultsError(f'"suites" must be a list, got {type(results["suites"]).__name__}')


# ---------------------------------------------------------------------------------------------------
# Prices


_PRICE_KEYS = {"per_token": 1.0, "per_1k_tokens": 1e-3, "per_1m_tokens": 1e-6}


def normalize_prices(prices: Mapping[str, Any] | None) -> dict[str, tuple[float, float]]:
    """Prices per model as (input, output) cost per token.

    Each model accepts `input_per_1k_tokens`/`output_per_1k_tokens`, `..._per_token` or
    `..._per_1m_tokens`; the currency is whatever the caller used.
    """
    if prices is None:
        return {}
    if not isinstance(prices, Mapping):
        raise ConfigError(f"prices must map model names to price dicts, got {type(prices).__name__}")
    out: dict[str, tuple[float, float]] = {}
    for model, entry in prices.items():
        if not isinstance(entry, Mapping):
            raise ConfigError(
                f"price for model {model!r} must be a dict like "
                f'{{"input_per_1k_tokens": 0.5, "output_per_1k_tokens": 1.5}}, got {entry!r}'
            )
        out[str(model)] = (_unit_price(model, entry, "input"), _unit_price(model, entry, "output"))
    return out


def _unit_price(model: Any, entry: Mapping[str, Any], side: str) -> float:
    found = [(key, entry[f"{side}_{key}"]) for key in _PRICE_KEYS if f"{side}_{key}" in entry]
    if len(found) != 1:
        keys = ", ".join(f"{side}_{k}" for k in _PRICE_KEYS)
        what = "none" if not found else "several"
        raise ConfigError(f"price for model {model!r} gives {what} of {keys}; give exactly one")
    key, value = found[0]
    if not is_number(value) or value < 0:
        raise ConfigError(f"price {side}_{key} for model {model!r} must be a non-negative number, got {value!r}")
    return float(value) * _PRICE_KEYS[key]


# ---------------------------------------------------------------------------------------------------
# One suite


def _suite(i: int, suite: Mapping[str, Any], models: Mapping[str, Any], prices: dict[str, tuple[float, float]]) -> SuiteView:
    anchor = f"s{i}"
    scores = _d(suite.get("scores"))
    reference = _s(suite.get("reference")) or "base"
    names = [_s(m) for m in _l(suite.get("models"))] or list(scores)
    if reference in names:
        names.remove(reference)
    names.insert(0, reference)
    metrics = [_metric(m) for m in _l(suite.get("metrics")) if isinstance(m, Mapping)]
    primary = next((m for m in metrics if m.primary), metrics[0] if metrics else None)
    comparisons = [c for c in _l(suite.get("comparisons")) if isinstance(c, Mapping)]
    by_key = {(_s(c.get("model")), _s(c.get("metric"))): c for c in comparisons}
    details = _d(suite.get("details"))
    examples = [e for e in _l(suite.get("examples")) if isinstance(e, Mapping)]
    anchors = {_s(e.get("id")): f"{anchor}-e{j}" for j, e in enumerate(examples)}
    gates = [g for g in _l(suite.get("gates")) if isinstance(g, Mapping)]
    # Failing gates first: they are what blocks a promotion. sorted() is stable, so suite order stays.
    gates = sorted(gates, key=_gate_order)
    format_metrics = _format_metrics(details)
    usage = _usage(names, _d(suite.get("usage")), prices, suite)
    return SuiteView(
        name=_s(suite.get("name")) or anchor,
        anchor=anchor,
        task=_s(suite.get("task")),
        description=_s(suite.get("description")),
        dataset=_d(suite.get("dataset")),
        sampling=_d(suite.get("sampling")),
        reference=reference,
        models=names,
        metrics=metrics,
        primary=primary,
        verdicts=[_verdict(m, models, primary, by_key, metrics) for m in names[1:]],
        gates=gates,
        n_failing=sum(1 for g in gates if g.get("passed") is not True),
        prompting=_prompting(suite.get("prompting")),
        contamination=suite.get("contamination") if isinstance(suite.get("contamination"), Mapping) else None,
        baseline=suite.get("baseline") if isinstance(suite.get("baseline"), Mapping) else None,
        score_rows=[ScoreRow(m, m == reference, [_d(_d(scores.get(m)).get(x.name)) for x in metrics]) for m in names],
        comparisons=sorted(comparisons, key=lambda c: (_index(names, c.get("model")), _index([x.name for x in metrics], c.get("metric")))),
        charts=_charts(names, reference, metrics, scores, by_key),
        classification=_classification(names, reference, details),
        formats=[_format_view(metric, names, details, scores, anchors) for metric in format_metrics],
        dropped=_dropped(suite, names, primary, comparisons, examples, anchors),
        usage=usage,
        has_cost=any(u.cost_per_1k is not None for u in usage),
        human=_human(suite.get("human"), names),
        other_details=_other_details(names, details),
        examples=_examples(suite, names, reference, metrics, primary, comparisons, details, format_metrics, examples, anchors),
    )


def _gate_order(gate: Mapping[str, Any]) -> int:
    # False (failed) first, then anything unknown (not run, errored), passed last.
    passed = gate.get("passed")
    return 2 if passed is True else 0 if passed is False else 1


def _index(seq: Sequence[str], item: Any) -> int:
    return seq.index(item) if item in seq else len(seq)


def _metric(m: Mapping[str, Any]) -> MetricInfo:
    rng = m.get("range")
    return MetricInfo(
        name=_s(m.get("name")),
        higher_is_better=m.get("higher_is_better") is not False,
        kind=_s(m.get("kind")) or "continuous",
        primary=m.get("primary") is True,
        value_range=list(rng) if isinstance(rng, (list, tuple)) and len(rng) == 2 else None,
    )


def _role(model: Mapping[str, Any]) -> str:
    if model.get("adapter"):
        rank = model.get("adapter_rank")
        return f"adapter (rank {rank})" if rank else "adapter"
    if is_number(model.get("fewshot")) and model["fewshot"] > 0:
        return f"{model['fewshot']}-shot prompting"
    return ""


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


def _prompting(p: Any) -> Prompting | None:
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
    return Prompting(sentence=sentence, recommendation=_s(p.get("recommendation")), raw=p)


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


# ---------------------------------------------------------------------------------------------------
# Classification: confusion matrices and per-class F1


def _matrix(entry: Mapping[str, Any]) -> tuple[list[str], list[list[int]]] | None:
    labels = [_s(x) for x in _l(entry.get("labels"))]
    rows = _l(entry.get("confusion_matrix"))
    n = len(labels)
    if not n or len(rows) != n or any(len(_l(r)) != n for r in rows):
        return None
    matrix = [[int(v) if is_number(v) else 0 for v in r] for r in rows]
    return labels, matrix


def _confusion(model: str, metric: str, entry: Mapping[str, Any]) -> Confusion | None:
    parsed = _matrix(entry)
    if parsed is None:
        return None
    labels, matrix = parsed
    n = len(labels)
    # Rows are the reference (gold) label, columns the prediction: the scikit-learn convention.
    off = [(matrix[i][j], i, j) for i in range(n) for j in range(n) if i != j and matrix[i][j] > 0]
    off.sort(key=lambda t: (-t[0], t[1], t[2]))
    errors = [0] * n
    for count, i, j in off:
        errors[i] += count
        errors[j] += count
    # The heat map keeps the classes involved in the most confusion: with 77 classes a full matrix
    # is unreadable, and the rest is in the pairs table and per-class F1 anyway.
    keep = sorted(sorted(range(n), key=lambda k: (-errors[k], k))[:HEAT_CLASSES]) if n > HEAT_CLASSES else list(range(n))
    heat = []
    for i in keep:
        total = sum(matrix[i]) or 1
        heat.append([(matrix[i][j], _heat_css(matrix[i][j], total, i == j)) for j in keep])
    return Confusion(
        model=model,
        metric=metric,
        n_labels=n,
        unparseable=entry.get("unparseable"),
        pairs=[(labels[i], labels[j], c) for c, i, j in off[:TOP_PAIRS]],
        n_pairs=len(off),
        heat_labels=[labels[k] for k in keep],
        heat=heat,
    )


def _heat_css(count: int, row_total: int, diagonal: bool) -> str:
    if count <= 0:
        return ""
    # Five shades of the share of the gold class's examples that land in this cell (row-normalised,
    # so a rare class's confusion is as visible as a frequent one's).
    level = min(5, max(1, math.ceil(5 * count / row_total)))
    return f"{'g' if diagonal else 'h'}{level}"


def _classification(names: list[str], reference: str, details: Mapping[str, Any]) -> Classification | None:
    confusions: list[Confusion] = []
    per_class: dict[str, Mapping[str, Any]] = {}
    for m in names:
        for metric, entry in _d(details.get(m)).items():
            entry = _d(entry)
            if m not in per_class and isinstance(entry.get("per_class"), Mapping):
                per_class[m] = entry["per_class"]
            if "confusion_matrix" in entry and all(c.model != m for c in confusions):
                conf = _confusion(m, _s(metric), entry)
                if conf is not None:
                    confusions.append(conf)
    if not confusions and not per_class:
        return None
    f1_models = [m for m in names if m in per_class]
    labels: list[str] = []
    for m in f1_models:
        labels += [_s(k) for k in per_class[m] if _s(k) not in labels]
    delta_models = [m for m in f1_models if m != reference] if reference in per_class else []
    rows = []
    for label in labels:
        cells = [_d(per_class[m].get(label)) for m in f1_models]
        ref_f1 = _d(per_class.get(reference, {}).get(label)).get("f1")
        deltas = []
        for m in delta_models:
            f1 = _d(per_class[m].get(label)).get("f1")
            d = f1 - ref_f1 if is_number(f1) and is_number(ref_f1) else None
            deltas.append((d, "dn" if d is not None and d < 0 else "up" if d else ""))
        support = next((c.get("support") for c in cells if c.get("support") is not None), None)
        rows.append(F1Row(label, support, [c.get("f1") for c in cells], deltas))
    return Classification(confusions, f1_models, delta_models, rows)


# ---------------------------------------------------------------------------------------------------
# Format adherence (JSON validity, schema errors)


def _format_metrics(details: Mapping[str, Any]) -> list[str]:
    found: list[str] = []
    for per_model in details.values():
        for metric, entry in _d(per_model).items():
            if isinstance(_d(entry).get("error_kinds"), Mapping) and metric not in found:
                found.append(_s(metric))
    return found


def _format_view(
    metric: str, names: list[str], details: Mapping[str, Any], scores: Mapping[str, Any], anchors: Mapping[str, str]
) -> FormatView:
    entries = {m: _d(_d(details.get(m)).get(metric)) for m in names}
    kinds: list[str] = []
    for e in entries.values():
        kinds += [_s(k) for k in _d(e.get("error_kinds")) if _s(k) not in kinds]
    totals = {k: sum(v for e in entries.values() if is_number(v := _d(e.get("error_kinds")).get(k))) for k in kinds}
    kinds.sort(key=lambda k: -totals[k])  # stable: ties keep first-seen order
    rows = []
    for kind in kinds:
        cells = []
        for m in names:
            ids = [_s(x) for x in _l(_d(entries[m].get("examples")).get(kind))]
            links = [Link(x, anchors.get(x)) for x in ids[:IDS_PER_CELL]]
            cells.append((_d(entries[m].get("error_kinds")).get(kind), links, max(0, len(ids) - IDS_PER_CELL)))
        rows.append(FormatKind(kind, cells))
    validity = [_d(_d(scores.get(m)).get(metric)) for m in names]
    return FormatView(metric, names, validity, rows)


# ---------------------------------------------------------------------------------------------------
# Forgetting: what each adapter no longer gets right


def _dropped(
    suite: Mapping[str, Any],
    names: list[str],
    primary: MetricInfo | None,
    comparisons: list[Mapping[str, Any]],
    examples: list[Mapping[str, Any]],
    anchors: Mapping[str, str],
) -> list[Dropped]:
    if suite.get("task") != "forgetting" or primary is None:
        return []
    by_id = {_s(e.get("id")): e for e in examples}
    out = []
    for c in comparisons:
        if c.get("metric") != primary.name:
            continue
        model = _s(c.get("model"))
        if c.get("kind") == "binary" or primary.kind == "binary" or _l(c.get("regressions")):
            dropped = [(_s(x), "") for x in _l(c.get("regressions"))]
        else:
            dropped = [(_s(_d(x).get("id")), num(_d(x).get("delta"))) for x in _l(c.get("largest_drops"))]
        items = []
        for xid, note in dropped:
            e = by_id.get(xid, {})
            output = _s(_d(_d(e.get("outputs")).get(model)).get("text"))
            items.append(DroppedItem(Link(xid, anchors.get(xid)), _s(e.get("input")), _text(e.get("reference")), output, note))
        out.append(Dropped(model, primary.name, items))
    out.sort(key=lambda d: _index(names, d.model))
    return out


# ---------------------------------------------------------------------------------------------------
# Cost and speed


def _usage(names: list[str], usage: Mapping[str, Any], prices: dict[str, tuple[float, float]], suite: Mapping[str, Any]) -> list[UsageRow]:
    rows = []
    for m in names:
        u = usage.get(m)
        if not isinstance(u, Mapping):
            continue
        requests = u.get("requests")
        if not (is_number(requests) and requests > 0):
            requests = _d(suite.get("dataset")).get("n_examples")
        tin, tout = u.get("tokens_in"), u.get("tokens_out")
        per = is_number(requests) and requests > 0
        in_per = tin / requests if per and is_number(tin) else None
        out_per = tout / requests if per and is_number(tout) else None
        cost_1k = cost_total = None
        if m in prices and in_per is not None and out_per is not None:
            p_in, p_out = prices[m]
            cost_1k = 1000 * (in_per * p_in + out_per * p_out)
            cost_total = tin * p_in + tout * p_out
        rows.append(UsageRow(m, u, in_per, out_per, cost_1k, cost_total))
    return rows


# ---------------------------------------------------------------------------------------------------
# Human ratings: the shape is still being designed, so read what is recognisable and show the rest
# generically rather than guessing.


def _human(h: Any, names: list[str]) -> HumanView | None:
    if not isinstance(h, Mapping):
        return None
    used: set[str] = set()
    criteria = [_s(c.get("name") if isinstance(c, Mapping) else c) for c in _l(h.get("criteria"))]
    if "criteria" in h and criteria:
        used.add("criteria")
    scores_key = next((k for k in ("scores", "means", "models") if isinstance(h.get(k), Mapping)), None)
    score_rows: list[tuple[str, list[Mapping[str, Any]]]] = []
    if scores_key:
        per_model = h[scores_key]
        if not criteria:
            for v in per_model.values():
                criteria += [_s(c) for c in _d(v) if _s(c) not in criteria]
        ordered = [m for m in names if m in per_model] + [_s(m) for m in per_model if m not in names]
        for m in ordered:
            cells = [_score_cell(_d(per_model.get(m)).get(c)) for c in criteria]
            if any(cells):
                score_rows.append((m, cells))
        if score_rows:
            used.add(scores_key)
    wtl_key = next((k for k in ("vs_reference", "pairwise", "win_tie_loss", "preferences") if k in h), None)
    wtl_rows = _wtl(h.get(wtl_key), names) if wtl_key else []
    if wtl_rows and wtl_key:
        used.add(wtl_key)
    agreement = h.get("agreement")
    if agreement is not None:
        used.add("agreement")
    rest = {_s(k): v for k, v in h.items() if k not in used}
    return HumanView(criteria, score_rows, wtl_rows, agreement, rest)


def _score_cell(x: Any) -> Mapping[str, Any]:
    if is_number(x):
        return {"value": x}
    d = _d(x)
    value = next((d[k] for k in ("mean", "value", "score") if k in d), None)
    return {"value": value, "ci_low": d.get("ci_low"), "ci_high": d.get("ci_high"), "n": d.get("n")} if d else {}


def _wtl(x: Any, names: list[str]) -> list[tuple[str, Mapping[str, Any]]]:
    items: list[tuple[str, Mapping[str, Any]]] = []
    if isinstance(x, Mapping):
        items = [(_s(k), _d(v)) for k, v in x.items()]
    else:
        items = [(_s(_d(v).get("model")), _d(v)) for v in _l(x)]
    rows = []
    for model, v in items:
        counts = {
            "win": v.get("win", v.get("wins")),
            "tie": v.get("tie", v.get("ties")),
            "loss": v.get("loss", v.get("losses")),
            "against": v.get("reference", v.get("vs", v.get("against"))),
            "n": v.get("n"),
            "p_value": v.get("p_value"),
        }
        if any(counts[k] is not None for k in ("win", "tie", "loss")):
            rows.append((model, counts))
    rows.sort(key=lambda r: _index(names, r[0]))
    return rows


def _other_details(names: list[str], details: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """Detail entries the sections above do not draw (custom metrics), shown generically."""
    out = []
    for m in names:
        for metric, entry in _d(details.get(m)).items():
            e = _d(entry)
            known = {"labels", "confusion_matrix", "per_class", "unparseable", "error_kinds", "examples"}
            rest = {k: v for k, v in e.items() if k not in known} if e else entry
            if rest:
                out.append((m, _s(metric), rest))
    return out


# ---------------------------------------------------------------------------------------------------
# Per-example side-by-side rows


def _examples(
    suite: Mapping[str, Any],
    names: list[str],
    reference: str,
    metrics: list[MetricInfo],
    primary: MetricInfo | None,
    comparisons: list[Mapping[str, Any]],
    details: Mapping[str, Any],
    format_metrics: list[str],
    examples: list[Mapping[str, Any]],
    anchors: Mapping[str, str],
) -> Examples:
    idx = {m: i for i, m in enumerate(names)}
    regs: dict[str, dict[int, list[str]]] = {}
    fixes: dict[str, dict[int, list[str]]] = {}
    drops: dict[str, dict[int, list[str]]] = {}
    for c in comparisons:
        i = idx.get(_s(c.get("model")))
        if i is None:
            continue
        metric = _s(c.get("metric"))
        for x in _l(c.get("regressions")):
            regs.setdefault(_s(x), {}).setdefault(i, []).append(metric)
        for x in _l(c.get("fixes")):
            fixes.setdefault(_s(x), {}).setdefault(i, []).append(metric)
        for d in _l(c.get("largest_drops")):
            d = _d(d)
            drops.setdefault(_s(d.get("id")), {}).setdefault(i, []).append(f"{metric} {num(d.get('delta'))}")
    invalid = _invalid(names, details, format_metrics, examples)
    classification = suite.get("task") == "classification"
    rows = [
        _example(e, anchors[_s(e.get("id"))], names, reference, metrics, primary, classification, regs, fixes, drops, invalid)
        for e in examples
    ]
    labels: dict[str, int] = {}
    for r in rows:
        if r.label is not None:
            labels[r.label] = labels.get(r.label, 0) + 1
    counts = {key: sum(1 for r in rows if r.attrs.get(attr)) for key, attr in (("reg", "data-r"), ("fix", "data-f"), ("drop", "data-x"), ("bad", "data-b"))}
    counts["all"] = len(rows)
    return Examples(rows, counts, sorted(labels.items()), [(i, m) for i, m in enumerate(names) if i], primary.name if primary else None)


def _invalid(names: list[str], details: Mapping[str, Any], format_metrics: list[str], examples: list[Mapping[str, Any]]) -> dict[str, dict[int, str]]:
    """example id -> model index -> the kind of format error (e.g. "not_json")."""
    out: dict[str, dict[int, str]] = {}
    for i, m in enumerate(names):
        for metric in format_metrics:
            for kind, ids in _d(_d(_d(details.get(m)).get(metric)).get("examples")).items():
                for x in _l(ids):
                    out.setdefault(_s(x), {}).setdefault(i, _s(kind))
    # Lists in details may be truncated; a zero per-example score of the format metric is as good a sign.
    for e in examples:
        for i, m in enumerate(names):
            scores = _d(_d(_d(e.get("outputs")).get(m)).get("scores"))
            if any(scores.get(metric) == 0 for metric in format_metrics):
                out.setdefault(_s(e.get("id")), {}).setdefault(i, "invalid")
    return out


def _score_text(value: Any, kind: str) -> str:
    if kind == "binary" and value in (0, 1):
        return "1" if value else "0"
    return num(value)


def _example(
    e: Mapping[str, Any],
    anchor: str,
    names: list[str],
    reference: str,
    metrics: list[MetricInfo],
    primary: MetricInfo | None,
    classification: bool,
    regs: Mapping[str, Mapping[int, list[str]]],
    fixes: Mapping[str, Mapping[int, list[str]]],
    drops: Mapping[str, Mapping[int, list[str]]],
    invalid: Mapping[str, Mapping[int, str]],
) -> Example:
    xid = _s(e.get("id"))
    outputs = _d(e.get("outputs"))
    ref_out = outputs.get(reference)
    ref_text = _s(_d(ref_out).get("text")) if isinstance(ref_out, Mapping) else None
    ref_primary = _d(_d(ref_out).get("scores")).get(primary.name) if primary else None
    reg, fix, drop, bad = regs.get(xid, {}), fixes.get(xid, {}), drops.get(xid, {}), invalid.get(xid, {})
    views, deltas = [], {}
    for i, m in enumerate(names):
        o = outputs.get(m)
        missing = not isinstance(o, Mapping)
        o = _d(o)
        text = _s(o.get("text"))
        segments = None
        if i and ref_text is not None and not missing:
            diff = word_diff(ref_text, text)
            segments = diff if changed_words(diff) else None
        scores = _d(o.get("scores"))
        shown = [(x.name, _score_text(scores.get(x.name), x.kind)) for x in metrics if scores.get(x.name) is not None]
        flags = [("reg", f"regression: {', '.join(reg[i])}")] if i in reg else []
        flags += [("fix", f"fix: {', '.join(fix[i])}")] if i in fix else []
        flags += [("drop", f"largest drop: {', '.join(drop[i])}")] if i in drop else []
        flags += [("bad", bad[i])] if i in bad else []
        finish = o.get("finish_reason")
        if finish not in (None, "stop"):
            flags.append(("fin", f"finish: {finish}"))
        views.append(Output(i, m, text, segments, shown, flags, missing))
        mine = scores.get(primary.name) if primary else None
        if i and is_number(mine) and is_number(ref_primary):
            deltas[i] = mine - ref_primary
    label = None
    if classification:
        label = _s(_d(e.get("metadata")).get("label") or e.get("reference")) or None
    attrs = {
        "data-r": _ids(reg),
        "data-f": _ids(fix),
        "data-x": _ids(drop),
        "data-b": _ids(bad),
        "data-c": label or "",
    }
    # Per-model delta on the primary metric, for "worst first" sorting; `g` keeps it short in the file.
    attrs.update({f"data-d{i}": f"{d:.4g}" for i, d in sorted(deltas.items())})
    css = " ".join(x for x, on in (("reg", reg), ("fix", fix), ("bad", bad)) if on)
    return Example(
        anchor=anchor,
        id=xid,
        input=_s(e.get("input")),
        reference=_text(e.get("reference")),
        label=label,
        outputs=views,
        attrs={k: v for k, v in attrs.items() if v},
        css=css,
    )


def _ids(flags: Mapping[int, Any]) -> str:
    return " ".join(str(i) for i in sorted(flags))


def _text(x: Any) -> str:
    # References are usually strings; some suites keep several (DialogSum has three summaries).
    if isinstance(x, (list, tuple)):
        return "\n".join(f"[{k + 1}] {_s(v)}" for k, v in enumerate(x))
    if isinstance(x, Mapping):
        return json.dumps(x, ensure_ascii=False, sort_keys=True)
    return _s(x)


__all__ = ["Report", "SuiteView", "build_report", "normalize_prices"]
