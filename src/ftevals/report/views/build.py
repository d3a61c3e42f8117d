"""build_report: the results (records, or a dict read into records once) -> a Report, one SuiteView
per suite with its sections.

SECTIONS below is the one place a section is registered: its order is the page order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ...errors import ResultsError
from ...results import Decision, GateOutcome, ModelInfo, Results, SuiteResult, from_data
from ...summary import integrity_line
from .base import BaselineRef, DecisionView, GateRef, Report, Section, SectionView, SuiteData, SuiteView
from .ab import ab
from .classification import classification
from .details import baseline, contamination, other_details
from .dropped import dropped
from .examples import examples
from .format_errors import format_errors
from .human import human
from .judge import judge
from .scores import prompting, scores, verdicts
from .usage import normalize_prices, usage

#: The sections of each suite's page, in page order (after the suite's heading and dataset line).
SECTIONS: tuple[Section, ...] = (
    Section("scores", "_scores.html.j2", scores),
    Section("classification", "_classification.html.j2", classification),
    Section("format_errors", "_format_errors.html.j2", format_errors),
    Section("dropped", "_dropped.html.j2", dropped),
    Section("usage", "_usage.html.j2", usage),
    Section("human", "_human.html.j2", human),
    Section("judge", "_judge.html.j2", judge),
    Section("ab", "_ab.html.j2", ab),
    Section("contamination", "_contamination.html.j2", contamination),
    Section("baseline", "_baseline.html.j2", baseline),
    Section("other_details", "_other_details.html.j2", other_details),
    Section("examples", "_examples.html.j2", examples),
)


def read(results: Results | Mapping[str, Any]) -> Results:
    """The records of `results`: a dict goes through `from_data` (migration, then the shipped JSON
    Schema), so a bad one fails here with the validator's message naming the bad place."""
    if isinstance(results, Results):
        return results
    if not isinstance(results, Mapping):
        raise ResultsError(f"a results file must hold a JSON object, got {type(results).__name__}")
    return from_data(results)


def build_report(
    results: Results | Mapping[str, Any], prices: Mapping[str, Any] | None = None, sections: Sequence[Section] = SECTIONS
) -> Report:
    """Raises ResultsError for something that is not a valid results file, ConfigError for bad prices."""
    record = read(results)
    if record.decisions is None:  # a file written before decisions were recorded: decide from it now
        from ...decision import decide

        record = decide(record)
    unit_prices = normalize_prices(prices)
    run, models = record.run, record.models
    suites = [_suite(i, s, models, unit_prices, run.id, sections) for i, s in enumerate(record.suites)]
    # Known failures (documented, xfail in pytest) are listed with their suite, not in the banner.
    failing = [GateRef(s.name, s.anchor, g) for s in suites for g in s.gates if not g.passed and not g.known_failure]
    known = set(models) | {m for s in suites for m in s.models}
    notes = [f"prices were given for {name!r}, which is not a model of this run" for name in sorted(set(unit_prices) - known)]
    return Report(
        title=f"ftevals report: {run.id or 'results'}",
        run=run,
        models=models,
        suites=suites,
        failing_gates=failing,
        n_gates=sum(len(s.gates) for s in suites),
        price_notes=notes,
        n_known=sum(1 for s in suites for g in s.gates if not g.passed and g.known_failure),
        changed_baselines=[BaselineRef(s.name, s.anchor, (s.baseline.message or "").splitlines()[0] if s.baseline.message
                                       else f"baseline {s.baseline.path} changed")
                           for s in suites if s.baseline is not None and s.baseline.status == "changed"],
        integrity=integrity_line(record.integrity) if record.integrity else None,
        prompt_formats=prompt_formats(record),
        decisions=[_decision_view(d) for d in record.decisions or ()],
    )


def _decision_view(d: Decision) -> DecisionView:
    from ...decision import OUTCOME_WORDS, decision_summary
    from ...summary import power_phrase_short

    reasons = [(r.status, r.suite or "", r.message) for r in d.reasons]
    return DecisionView(d.model, d.outcome, OUTCOME_WORDS[d.outcome], decision_summary(d), reasons,
                        [power_phrase_short(c) for c in d.power])


def prompt_formats(record: Results) -> dict[str, str]:
    """Model -> its prompt format over the run's suites: one word when every suite agrees, else
    "completion (suite-a); chat (suite-b)" (a suite's prompt_format can differ from another's)."""
    by_model: dict[str, dict[str, list[str]]] = {}
    for suite in record.suites:
        for model in suite.models:
            by_model.setdefault(model, {}).setdefault(suite.prompt_format(model), []).append(suite.name)
    return {model: next(iter(found)) if len(found) == 1
            else "; ".join(f"{fmt} ({', '.join(names)})" for fmt, names in sorted(found.items()))
            for model, found in by_model.items()}


def _suite(
    i: int,
    suite: SuiteResult,
    models: Mapping[str, ModelInfo],
    prices: dict[str, tuple[float, float]],
    run_id: str,
    sections: Sequence[Section],
) -> SuiteView:
    anchor = f"s{i}"
    reference = suite.reference
    names = list(suite.models) or list(suite.scores)
    if reference in names:
        names.remove(reference)
    names.insert(0, reference)
    # Row anchors go by position (ids are data: they may repeat or be unsafe in a URL); links to an id
    # go to its first row.
    anchors: dict[str, str] = {}
    for j, e in enumerate(suite.examples):
        anchors.setdefault(e.id, f"{anchor}-e{j}")
    data = SuiteData(suite=suite, anchor=anchor, models=names, anchors=anchors, model_info=models, prices=prices,
                     run_id=run_id)
    # Failing gates first: they are what blocks a promotion. sorted() is stable, so suite order stays.
    gates = sorted(suite.gates, key=_gate_order)
    return SuiteView(
        name=suite.name or anchor,
        anchor=anchor,
        task=suite.task,
        description=suite.description,
        dataset=suite.dataset,
        sampling=suite.sampling,
        reference=reference,
        models=names,
        metrics=suite.metrics,
        primary=suite.primary_metric,
        verdicts=verdicts(data),
        gates=gates,
        n_failing=sum(1 for g in gates if not g.passed and not g.known_failure),
        prompting=prompting(suite.prompting),
        contamination=contamination(data),
        baseline=baseline(data),
        n_examples=len(suite.examples),
        sections=[SectionView(s.name, _template_name(s.template), s.build(data)) for s in sections],
    )


def _template_name(template: str | Path) -> str:
    # A Path names a file outside the package; the report's loader finds it by its absolute path.
    return str(template.resolve()) if isinstance(template, Path) else template


def _gate_order(gate: GateOutcome) -> int:
    return 1 if gate.passed else 0  # failed first, passed last


__all__ = ["SECTIONS", "build_report", "read"]
