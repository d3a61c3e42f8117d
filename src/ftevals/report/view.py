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
#: How many confused pairs, heat-map classes and ids per cell to show before "and N more".
TOP_PAIRS = 15
HEAT_CLASSES = 12
IDS_PER_CELL = 12


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
    heat_rows: list[str]  # gold labels
    heat_columns: list[str]  # predicted labels (plus "(unparseable)" where the metric counts it)
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
class ErrorKind:
    kind: str
    cells: list[tuple[Any, list[Link], int]]  # (count, first ids, how many more) per model


@dataclass(frozen=True)
class ErrorView:
    metric: str
    models: list[str]
    scores: list[Mapping[str, Any]]
    kinds: list[ErrorKind]
    extras: list[tuple[str, list[Any]]]  # further breakdowns (schema_errors, missing, per_field) per model


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
    title: str
    scale: Any
    header: list[tuple[str, str]]  # packet, part, raters, items, ratings, selection
    stale: str  # non-empty when the ratings were collected on another run
    criteria: list[tuple[str, str]]  # (id, label)
    score_rows: list[tuple[str, list[Mapping[str, Any]]]]
    preferences: list[tuple[str, Mapping[str, Any]]]
    agreement_stats: list[tuple[str, Any, list[Any], Any]]  # (statistic, overall, per criterion, preference)
    agreement_pairs: list[Mapping[str, Any]]
    agreement_raters: list[Mapping[str, Any]]
    agreement_rest: dict[str, Any]
    flag_items: list[tuple[Link | None, Mapping[str, Any]]]
    flag_raters: list[Mapping[str, Any]]
    comments: list[tuple[Link | None, Mapping[str, Any]]]
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
    invalid_label: str  # "Invalid JSON" when every malformed output is a JSON problem


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
    errors: list[ErrorView]
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
    #: Gates that failed as documented in the suite's known_failures (expected failures).
    n_known: int = 0


# ---------------------------------------------------------------------------------------------------
# Entry point


def build_report(results: Any, prices: Mapping[str, Any] | None = None) -> Report:
    _check_schema(results)
    unit_prices = normalize_prices(prices)
    run = _d(results.get("run"))
    models = _d(results.get("models"))
    run_id = _s(run.get("id"))
    suites = [_suite(i, s, models, unit_prices, run_id) for i, s in enumerate(_l(results.get("suites"))) if isinstance(s, Mapping)]
    # Known failures (documented, xfail in pytest) are listed with their suite, not in the banner.
    failing = [GateRef(s.name, s.anchor, g) for s in suites for g in s.gates
               if g.get("passed") is not True and not g.get("known_failure")]
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
        n_known=sum(1 for s in suites for g in s.gates if g.get("passed") is not True and g.get("known_failure")),
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


def _suite(
    i: int, suite: Mapping[str, Any], models: Mapping[str, Any], prices: dict[str, tuple[float, float]], run_id: str
) -> SuiteView:
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
    # Row anchors go by position (ids are data: they may repeat or be unsafe in a URL); links to an id
    # go to its first row.
    anchors: dict[str, str] = {}
    for j, e in enumerate(examples):
        anchors.setdefault(_s(e.get("id")), f"{anchor}-e{j}")
    gates = [g for g in _l(suite.get("gates")) if isinstance(g, Mapping)]
    # Failing gates first: they are what blocks a promotion. sorted() is stable, so suite order stays.
    gates = sorted(gates, key=_gate_order)
    error_metrics = _error_metrics(details, metrics)
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
        n_failing=sum(1 for g in gates if g.get("passed") is not True and not g.get("known_failure")),
        prompting=_prompting(suite.get("prompting")),
        contamination=suite.get("contamination") if isinstance(suite.get("contamination"), Mapping) else None,
        baseline=suite.get("baseline") if isinstance(suite.get("baseline"), Mapping) else None,
        score_rows=[ScoreRow(m, m == reference, [_d(_d(scores.get(m)).get(x.name)) for x in metrics]) for m in names],
        comparisons=sorted(comparisons, key=lambda c: (_index(names, c.get("model")), _index([x.name for x in metrics], c.get("metric")))),
        charts=_charts(names, reference, metrics, scores, by_key),
        classification=_classification(names, reference, details),
        errors=[_error_view(metric, names, details, scores, anchors) for metric in error_metrics],
        dropped=_dropped(suite, names, primary, comparisons, examples, anchors),
        usage=usage,
        has_cost=any(u.cost_per_1k is not None for u in usage),
        human=_human(suite.get("human"), names, run_id, anchors),
        other_details=_other_details(names, details),
        examples=_examples(suite, anchor, names, reference, metrics, primary, comparisons, details, error_metrics, examples),
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
    return Prompting(sentence=sentence, recommendation=_s(p.get("recommendation")))


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


def _matrix(entry: Mapping[str, Any]) -> tuple[list[str], list[str], list[list[int]]] | None:
    """(gold labels, predicted columns, counts), or None when the shapes do not agree.

    Rows are the gold label and columns the prediction (the scikit-learn convention). The metrics
    add columns beyond the labels (an "(unparseable)" column) and say so in `columns`.
    """
    labels = [_s(x) for x in _l(entry.get("labels"))]
    columns = [_s(x) for x in _l(entry.get("columns"))] or labels
    rows = _l(entry.get("confusion_matrix"))
    if not labels or len(rows) != len(labels) or any(len(_l(r)) != len(columns) for r in rows):
        return None
    return labels, columns, [[int(v) if is_number(v) else 0 for v in r] for r in rows]


def _confusion(model: str, metric: str, entry: Mapping[str, Any]) -> Confusion | None:
    parsed = _matrix(entry)
    if parsed is None:
        return None
    labels, columns, matrix = parsed
    off = [
        (matrix[i][j], i, j)
        for i in range(len(labels))
        for j in range(len(columns))
        if columns[j] != labels[i] and matrix[i][j] > 0
    ]
    off.sort(key=lambda t: (-t[0], t[1], t[2]))
    # How much confusion each class is part of, as gold label or as prediction.
    errors = {label: 0 for label in labels}
    for count, i, j in off:
        errors[labels[i]] += count
        if columns[j] in errors:
            errors[columns[j]] += count
    # The heat map keeps the classes involved in the most confusion: with 77 classes a full matrix
    # is unreadable, and the rest is in the pairs table and per-class F1 anyway.
    ranked = sorted(range(len(labels)), key=lambda k: (-errors[labels[k]], k))
    keep = sorted(ranked[:HEAT_CLASSES])
    col_of = {c: j for j, c in enumerate(columns)}
    heat_cols = [col_of[labels[k]] for k in keep if labels[k] in col_of]
    # Extra columns ("(unparseable)") are shown when the kept classes have any count there.
    heat_cols += [j for j, c in enumerate(columns) if c not in errors and any(matrix[i][j] for i in keep)]
    heat = []
    for i in keep:
        total = sum(matrix[i]) or 1
        heat.append([(matrix[i][j], _heat_css(matrix[i][j], total, columns[j] == labels[i])) for j in heat_cols])
    return Confusion(
        model=model,
        metric=metric,
        n_labels=len(labels),
        unparseable=entry.get("unparseable"),
        pairs=[(labels[i], columns[j], c) for c, i, j in off[:TOP_PAIRS]],
        n_pairs=len(off),
        heat_rows=[labels[k] for k in keep],
        heat_columns=[columns[j] for j in heat_cols],
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
# Errors by kind (JSON validity, schema errors, missing keys, wrong values, ...)

#: Kinds that mean the output is malformed (the "Invalid JSON" filter), as opposed to a well-formed
#: output with a wrong value ("mismatch", "wrong").
INVALID_KINDS = frozenset({"not_json", "not_object", "schema", "missing_keys", "no_match", "too_short", "too_long", "too_few_words", "too_many_words", "no_number"})
JSON_KINDS = frozenset({"not_json", "not_object", "schema", "missing_keys"})
_ERROR_KEYS = frozenset({"error_kinds", "examples", "n"})


def _error_metrics(details: Mapping[str, Any], metrics: list[MetricInfo]) -> list[str]:
    """Metrics whose details classify failures (`error_kinds`), in the suite's metric order."""
    found: list[str] = []
    for per_model in details.values():
        for metric, entry in _d(per_model).items():
            if isinstance(_d(entry).get("error_kinds"), Mapping) and _s(metric) not in found:
                found.append(_s(metric))
    order = [m.name for m in metrics]
    return sorted(found, key=lambda m: _index(order, m))


def _error_view(
    metric: str, names: list[str], details: Mapping[str, Any], scores: Mapping[str, Any], anchors: Mapping[str, str]
) -> ErrorView:
    entries = {m: _d(_d(details.get(m)).get(metric)) for m in names}
    counts = {m: _d(e.get("error_kinds")) for m, e in entries.items()}
    kinds: list[str] = []
    for c in counts.values():
        kinds += [_s(k) for k in c if _s(k) not in kinds]
    totals = {k: sum(v for c in counts.values() if is_number(v := c.get(k))) for k in kinds}
    # Kinds nobody hit are noise (metrics list every kind they know, with zeros).
    kinds = sorted((k for k in kinds if totals[k]), key=lambda k: -totals[k])
    rows = []
    for kind in kinds:
        cells = []
        for m in names:
            ids = [_s(x) for x in _l(_d(entries[m].get("examples")).get(kind))]
            count = counts[m].get(kind)
            shown = ids[:IDS_PER_CELL]
            # The metrics keep only the first ids of each kind; the count is the true total.
            more = max(count if is_number(count) else 0, len(ids)) - len(shown)
            cells.append((count, [Link(x, anchors.get(x)) for x in shown], max(0, int(more))))
        rows.append(ErrorKind(kind, cells))
    extra_keys: list[str] = []
    for e in entries.values():
        extra_keys += [_s(k) for k in e if k not in _ERROR_KEYS and _s(k) not in extra_keys]
    extras = [(k, [entries[m].get(k) for m in names]) for k in extra_keys]
    return ErrorView(metric, names, [_d(_d(scores.get(m)).get(metric)) for m in names], rows, extras)


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
# Human ratings (docs/results-schema.md, "Human ratings"; written by ftevals.packets). Every key may
# be missing or null; whatever is not recognised is still shown, generically, never dropped.


def _human(h: Any, names: list[str], run_id: str, anchors: Mapping[str, str]) -> HumanView | None:
    if not isinstance(h, Mapping):
        return None
    used = {"schema", "version", "rubric", "reference", "models"}
    rubric = _d(h.get("rubric"))
    criteria = [(_s(c.get("id")), _s(c.get("label") or c.get("id"))) if isinstance(c, Mapping) else (_s(c), _s(c)) for c in _l(rubric.get("criteria") or h.get("criteria"))]
    used.add("criteria")
    scores = _d(h.get("scores"))
    if not criteria:  # no rubric: the criteria are whatever the scores name
        for per_model in scores.values():
            criteria += [(_s(c), _s(c)) for c in _d(per_model) if (_s(c), _s(c)) not in criteria]
    ordered = [m for m in names if m in scores] + [_s(m) for m in scores if m not in names]
    score_rows = [(m, [_cell(_d(scores.get(m)).get(c)) for c, _ in criteria]) for m in ordered]
    preferences = _d(h.get("preferences"))
    prefs = [(m, _d(preferences[m])) for m in [*names, *preferences] if m in preferences]
    prefs = list(dict(prefs).items())  # a model named in both lists once
    agreement = _d(h.get("agreement"))
    stats = [
        (_s(k), v.get("overall"), [_d(v.get("per_criterion")).get(c) for c, _ in criteria], v.get("preference"))
        for k, v in agreement.items()
        if isinstance(v, Mapping) and ("overall" in v or "per_criterion" in v)
    ]
    flags = _d(h.get("flags"))
    flag_items = [(_example_link(f, anchors), f) for f in (_d(x) for x in _l(flags.get("items")))]
    comments = [(_example_link(c, anchors), c) for c in (_d(x) for x in _l(h.get("comments")))]
    used |= {"scores", "preferences", "agreement", "flags", "comments", "source_run"}
    source = _s(h.get("source_run"))
    header_keys = ("packet_id", "part", "raters", "n_items", "n_ratings", "selection")
    used |= set(header_keys)
    return HumanView(
        title=_s(rubric.get("title") or rubric.get("name")),
        scale=rubric.get("scale"),
        header=[(k, _describe(h[k])) for k in header_keys if h.get(k) is not None],
        stale=f"These ratings were collected on run {source}, not on this run ({run_id})." if source and run_id and source != run_id else "",
        criteria=criteria,
        score_rows=[(m, cells) for m, cells in score_rows if any(cells)],
        preferences=prefs,
        agreement_stats=stats,
        agreement_pairs=[_d(x) for x in _l(agreement.get("cohen_kappa"))],
        agreement_raters=[_d(x) for x in _l(agreement.get("raters"))],
        agreement_rest={_s(k): v for k, v in agreement.items() if k not in {"cohen_kappa", "raters"} and not any(k == s[0] for s in stats)},
        flag_items=flag_items,
        flag_raters=[_d(x) for x in _l(flags.get("raters"))],
        comments=comments,
        rest={_s(k): v for k, v in h.items() if k not in used and v is not None},
    )


def _describe(x: Any) -> str:
    """One line for a small value: {"a": 1, "b": {"c": 2}} -> "a 1, b (c 2)"; lists comma-joined."""
    if isinstance(x, Mapping):
        parts = [f"{k} ({_describe(v)})" if isinstance(v, Mapping) else f"{k} {_describe(v)}" for k, v in x.items()]
        return ", ".join(parts)
    if isinstance(x, (list, tuple)):
        return ", ".join(_describe(v) for v in x)
    return _s(x)


def _cell(x: Any) -> Mapping[str, Any]:
    # A score is {"value", "ci_low", "ci_high", ...}; a bare number is accepted as the value.
    return {"value": x} if is_number(x) else _d(x)


def _example_link(entry: Mapping[str, Any], anchors: Mapping[str, str]) -> Link | None:
    example = entry.get("example")
    return Link(_s(example), anchors.get(_s(example))) if example is not None else None


def _other_details(names: list[str], details: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """Detail entries the sections above do not draw (custom metrics), shown generically."""
    out = []
    drawn = {"labels", "columns", "confusion_matrix", "per_class", "unparseable", "n"}
    for m in names:
        for metric, entry in _d(details.get(m)).items():
            e = _d(entry)
            if "error_kinds" in e:
                continue  # the errors-by-kind section shows all of it
            rest = {k: v for k, v in e.items() if k not in drawn} if e else entry
            if rest:
                out.append((m, _s(metric), rest))
    return out


# ---------------------------------------------------------------------------------------------------
# Per-example side-by-side rows


def _examples(
    suite: Mapping[str, Any],
    prefix: str,
    names: list[str],
    reference: str,
    metrics: list[MetricInfo],
    primary: MetricInfo | None,
    comparisons: list[Mapping[str, Any]],
    details: Mapping[str, Any],
    error_metrics: list[str],
    examples: list[Mapping[str, Any]],
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
    invalid = _invalid(names, details, error_metrics, examples)
    classification = suite.get("task") == "classification"
    rows = [
        _example(e, f"{prefix}-e{j}", names, reference, metrics, primary, classification, regs, fixes, drops, invalid)
        for j, e in enumerate(examples)
    ]
    labels: dict[str, int] = {}
    for r in rows:
        if r.label is not None:
            labels[r.label] = labels.get(r.label, 0) + 1
    counts = {key: sum(1 for r in rows if r.attrs.get(attr)) for key, attr in (("reg", "data-r"), ("fix", "data-f"), ("drop", "data-x"), ("bad", "data-b"))}
    counts["all"] = len(rows)
    kinds = {k for per in invalid.values() for ks in per.values() for k in ks}
    return Examples(
        rows=rows,
        counts=counts,
        labels=sorted(labels.items()),
        models=[(i, m) for i, m in enumerate(names) if i],
        primary=primary.name if primary else None,
        invalid_label="Invalid JSON" if kinds <= JSON_KINDS else "Invalid output",
    )


def _invalid(
    names: list[str], details: Mapping[str, Any], error_metrics: list[str], examples: list[Mapping[str, Any]]
) -> dict[str, dict[int, list[str]]]:
    """example id -> model index -> the kinds of malformed output it has (e.g. ["not_json"])."""
    found: dict[str, dict[int, set[str]]] = {}
    for i, m in enumerate(names):
        for metric in error_metrics:
            entry = _d(_d(details.get(m)).get(metric))
            for kind, ids in _d(entry.get("examples")).items():
                if kind in INVALID_KINDS:
                    for x in _l(ids):
                        found.setdefault(_s(x), {}).setdefault(i, set()).add(_s(kind))
            # The metrics list only the first ids of each kind. When every failure of a metric is
            # malformed output of a single kind, its zero per-example scores name the rest.
            hit = {_s(k): v for k, v in _d(entry.get("error_kinds")).items() if is_number(v) and v > 0}
            if len(hit) != 1 or not set(hit) <= INVALID_KINDS:
                continue
            zeros = [e for e in examples if _d(_d(_d(e.get("outputs")).get(m)).get("scores")).get(metric) == 0]
            if len(zeros) == next(iter(hit.values())):
                for e in zeros:
                    found.setdefault(_s(e.get("id")), {}).setdefault(i, set()).update(hit)
    return {x: {i: sorted(kinds) for i, kinds in per.items()} for x, per in found.items()}


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
    invalid: Mapping[str, Mapping[int, list[str]]],
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
        flags += [("bad", ", ".join(bad[i]))] if i in bad else []
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
