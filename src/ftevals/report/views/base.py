"""What every section shares: the records of a suite and of the whole report, readers for the
free-form JSON parts, and `Section`, the one extension point (a view function plus the template that
draws its result).

The results file arrives as typed records (ftevals.results.records), validated once by `from_data`,
so the sections read attributes, never keys. Only the free-form parts the schema leaves open (a
metric's `details` breakdown, the statistics inside human ratings, `sampling`, `metadata`, ...) are
plain JSON whose shape varies by metric and by writer: the small readers below turn anything
unexpected there into an empty value, so an odd breakdown is simply not shown. Text stays raw
(escaping is the template engine's job, with autoescape on).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...results import (BaselineRecord, Contamination, DatasetInfo, GateOutcome, MetricInfo, ModelInfo, RunInfo,
                        ScoreSummary, SuiteResult)

if TYPE_CHECKING:
    from .scores import Prompting, VerdictRow


# ---------------------------------------------------------------------------------------------------
# Readers for the free-form JSON parts of the records (shared by the section modules of this package)


def _d(x: Any) -> Mapping[str, Any]:
    return x if isinstance(x, Mapping) else {}


def _l(x: Any) -> list[Any]:
    return list(x) if isinstance(x, (list, tuple)) else []


def _s(x: Any) -> str:
    return "" if x is None else str(x)


def _index(seq: Sequence[str], item: Any) -> int:
    return seq.index(item) if item in seq else len(seq)


def _text(x: Any) -> str:
    # References are usually strings; some suites keep several (DialogSum has three summaries).
    if isinstance(x, (list, tuple)):
        return "\n".join(f"[{k + 1}] {_s(v)}" for k, v in enumerate(x))
    if isinstance(x, Mapping):
        return json.dumps(x, ensure_ascii=False, sort_keys=True)
    return _s(x)


#: A score the suite does not have (a model or metric without a value): drawn as a dash.
NO_SCORE = ScoreSummary(value=None)


# ---------------------------------------------------------------------------------------------------
# Records shared by several sections


@dataclass(frozen=True)
class Link:
    id: str
    anchor: str | None  # None when the id is not among the rendered examples


@dataclass(frozen=True)
class SuiteData:
    """One suite of the results file and what the report derives from it once: what every section's
    view function receives. Read the suite's own parts from `suite` (a SuiteResult record)."""

    suite: SuiteResult
    anchor: str  # the suite's HTML id; example row j is f"{anchor}-e{j}"
    models: list[str]  # the reference first, then the suite's other models in its order
    anchors: Mapping[str, str]  # example id -> anchor of its first row
    model_info: Mapping[str, ModelInfo]  # the run's models (adapters, fingerprints), by name
    prices: Mapping[str, tuple[float, float]]  # model -> (input, output) cost per token
    run_id: str

    @property
    def reference(self) -> str:
        return self.suite.reference

    @property
    def metrics(self) -> tuple[MetricInfo, ...]:
        return self.suite.metrics

    @property
    def primary(self) -> MetricInfo | None:
        return self.suite.primary_metric

    def score(self, model: str, metric: str) -> ScoreSummary:
        """The model's score on the metric, NO_SCORE when the suite has none (a table cell either way)."""
        return self.suite.score(model, metric) or NO_SCORE


@dataclass(frozen=True)
class Section:
    """A part of each suite's page: `build` reads the suite, `template` draws what it returned.

    `template` names a file in ftevals/report/templates/, or is a Path to a template file elsewhere
    (a section defined outside this package). The template is included once per suite, with the
    suite's SuiteView as `s`, `build`'s result as `view` and the macros as `m`; it draws nothing
    when there is nothing to show (wrap it in `{% if view %}...{% endif %}`).
    """

    name: str
    template: str | Path
    build: Callable[[SuiteData], Any]


@dataclass(frozen=True)
class SectionView:
    name: str
    template: str  # a template name the report's loader finds (absolute for a Path)
    view: Any


@dataclass(frozen=True)
class SuiteView:
    """One suite: what its summary card draws, then its sections in page order."""

    name: str
    anchor: str
    task: str
    description: str
    dataset: DatasetInfo | None
    sampling: Mapping[str, Any]
    reference: str
    models: list[str]
    metrics: tuple[MetricInfo, ...]
    primary: MetricInfo | None
    verdicts: list[VerdictRow]
    gates: list[GateOutcome]  # failing first
    n_failing: int
    prompting: Prompting | None
    contamination: Contamination | None
    baseline: BaselineRecord | None
    n_examples: int
    sections: list[SectionView]


@dataclass(frozen=True)
class GateRef:
    suite: str
    anchor: str
    gate: GateOutcome


@dataclass(frozen=True)
class BaselineRef:
    suite: str
    anchor: str
    message: str


@dataclass(frozen=True)
class Report:
    title: str
    run: RunInfo
    models: Mapping[str, ModelInfo]
    suites: list[SuiteView]
    failing_gates: list[GateRef]
    n_gates: int
    price_notes: list[str] = field(default_factory=list)
    #: Gates that failed as documented in the suite's known_failures (expected failures).
    n_known: int = 0
    #: Suites whose committed baseline differs from this run: a failed pytest test each, so the
    #: banner must not read green while the run failed on them.
    changed_baselines: list[BaselineRef] = field(default_factory=list)
    #: The engine-integrity line (each adapter applied, and how that was seen); None: not checked.
    integrity: str | None = None
    #: Model -> how its prompts were rendered: "chat", "completion", or per suite when suites differ.
    prompt_formats: Mapping[str, str] = field(default_factory=dict)
    #: The decision card: per model, its outcome and reasons (decision.py), first on the page.
    decisions: list[DecisionView] = field(default_factory=list)


@dataclass(frozen=True)
class DecisionView:
    """One model's decision as the page shows it: the outcome, the deciding phrase, every reason."""

    model: str
    outcome: str
    label: str
    summary: str
    reasons: list[tuple[str, str, str]]
    power: list[str]


__all__ = ["BaselineRef", "DecisionView", "Link", "NO_SCORE", "Report", "Section", "SectionView", "SuiteData", "SuiteView"]
