"""build_report: the results dict -> a Report, one SuiteView per suite with its sections.

SECTIONS below is the one place a section is registered: its order is the page order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ...errors import ResultsError
from ...results import SCHEMA, SCHEMA_VERSION, Results
from .base import GateRef, Report, Section, SectionView, SuiteData, SuiteView, _d, _l, _s
from .classification import classification
from .details import baseline, contamination, other_details
from .dropped import dropped
from .examples import examples
from .format_errors import format_errors
from .human import human
from .scores import metric_info, prompting, scores, verdicts
from .usage import normalize_prices, usage

#: The sections of each suite's page, in page order (after the suite's heading and dataset line).
SECTIONS: tuple[Section, ...] = (
    Section("scores", "_scores.html.j2", scores),
    Section("classification", "_classification.html.j2", classification),
    Section("format_errors", "_format_errors.html.j2", format_errors),
    Section("dropped", "_dropped.html.j2", dropped),
    Section("usage", "_usage.html.j2", usage),
    Section("human", "_human.html.j2", human),
    Section("contamination", "_contamination.html.j2", contamination),
    Section("baseline", "_baseline.html.j2", baseline),
    Section("other_details", "_other_details.html.j2", other_details),
    Section("examples", "_examples.html.j2", examples),
)

_RUN_KEYS = {"id", "started_at", "finished_at", "seed", "ftevals_version", "python", "platform", "libraries", "git", "backend", "argv", "timings"}


def build_report(results: Any, prices: Mapping[str, Any] | None = None, sections: Sequence[Section] = SECTIONS) -> Report:
    """Raises ResultsError for something that is not a version-1 results dict, ConfigError for bad prices."""
    if isinstance(results, Results):
        results = results.to_dict()
    _check_schema(results)
    unit_prices = normalize_prices(prices)
    run = _d(results.get("run"))
    models = _d(results.get("models"))
    run_id = _s(run.get("id"))
    suites = [
        _suite(i, s, models, unit_prices, run_id, sections) for i, s in enumerate(_l(results.get("suites"))) if isinstance(s, Mapping)
    ]
    # Known failures (documented, xfail in pytest) are listed with their suite, not in the banner.
    failing = [GateRef(s.name, s.anchor, g) for s in suites for g in s.gates
               if g.get("passed") is not True and not g.get("known_failure")]
    known = set(models) | {m for s in suites for m in s.models}
    notes = [f"prices were given for {name!r}, which is not a model of this run" for name in sorted(set(unit_prices) - known)]
    return Report(
        title=f"ftevals report: {_s(run.get('id')) or 'results'}",
        run=run,
        run_extra={k: v for k, v in run.items() if k not in _RUN_KEYS},
        models=[{"key": k, **_d(v)} for k, v in models.items()],
        suites=suites,
        failing_gates=failing,
        n_gates=sum(len(s.gates) for s in suites),
        price_notes=notes,
        n_known=sum(1 for s in suites for g in s.gates if g.get("passed") is not True and g.get("known_failure")),
    )


def _check_schema(results: Any) -> None:
    # Laxer than ftevals.results.validate_results (which every file read from disk has passed): a
    # dict built in memory may lack the schema keys and any section, and still renders.
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


def _suite(
    i: int,
    suite: Mapping[str, Any],
    models: Mapping[str, Any],
    prices: dict[str, tuple[float, float]],
    run_id: str,
    sections: Sequence[Section],
) -> SuiteView:
    anchor = f"s{i}"
    reference = _s(suite.get("reference")) or "base"
    names = [_s(m) for m in _l(suite.get("models"))] or list(_d(suite.get("scores")))
    if reference in names:
        names.remove(reference)
    names.insert(0, reference)
    metrics = [metric_info(m) for m in _l(suite.get("metrics")) if isinstance(m, Mapping)]
    primary = next((m for m in metrics if m.primary), metrics[0] if metrics else None)
    comparisons = [c for c in _l(suite.get("comparisons")) if isinstance(c, Mapping)]
    examples = [e for e in _l(suite.get("examples")) if isinstance(e, Mapping)]
    # Row anchors go by position (ids are data: they may repeat or be unsafe in a URL); links to an id
    # go to its first row.
    anchors: dict[str, str] = {}
    for j, e in enumerate(examples):
        anchors.setdefault(_s(e.get("id")), f"{anchor}-e{j}")
    data = SuiteData(
        raw=suite,
        anchor=anchor,
        models=names,
        reference=reference,
        metrics=metrics,
        primary=primary,
        scores=_d(suite.get("scores")),
        comparisons=comparisons,
        by_key={(_s(c.get("model")), _s(c.get("metric"))): c for c in comparisons},
        details=_d(suite.get("details")),
        examples=examples,
        anchors=anchors,
        model_info=models,
        prices=prices,
        run_id=run_id,
    )
    # Failing gates first: they are what blocks a promotion. sorted() is stable, so suite order stays.
    gates = sorted((g for g in _l(suite.get("gates")) if isinstance(g, Mapping)), key=_gate_order)
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
        verdicts=verdicts(data),
        gates=gates,
        n_failing=sum(1 for g in gates if g.get("passed") is not True and not g.get("known_failure")),
        prompting=prompting(suite.get("prompting")),
        contamination=contamination(data),
        baseline=baseline(data),
        n_examples=len(examples),
        sections=[SectionView(s.name, _template_name(s.template), s.build(data)) for s in sections],
    )


def _template_name(template: str | Path) -> str:
    # A Path names a file outside the package; the report's loader finds it by its absolute path.
    return str(template.resolve()) if isinstance(template, Path) else template


def _gate_order(gate: Mapping[str, Any]) -> int:
    # False (failed) first, then anything unknown (not run, errored), passed last.
    passed = gate.get("passed")
    return 2 if passed is True else 0 if passed is False else 1


__all__ = ["SECTIONS", "build_report"]
