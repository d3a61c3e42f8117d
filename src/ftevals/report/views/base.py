"""What every section shares: the defensive readers, the records of a suite and of the whole report,
and `Section`, the one extension point (a view function plus the template that draws its result).

Results files are data written by other versions and other people's suites, so every optional key may
be missing or null: the readers below turn anything unexpected into an empty value, and a missing part
simply is not shown. Text stays raw (escaping is the template engine's job, with autoescape on).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .scores import Prompting, VerdictRow


# ---------------------------------------------------------------------------------------------------
# Defensive readers (shared by the section modules of this package)


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


# ---------------------------------------------------------------------------------------------------
# Records shared by several sections


@dataclass(frozen=True)
class MetricInfo:
    name: str
    higher_is_better: bool
    kind: str
    primary: bool
    value_range: list[float] | None


@dataclass(frozen=True)
class Link:
    id: str
    anchor: str | None  # None when the id is not among the rendered examples


@dataclass(frozen=True)
class SuiteData:
    """One suite of the results file, read once: what every section's view function receives."""

    raw: Mapping[str, Any]  # the suite as in the file, for the keys only one section reads
    anchor: str  # the suite's HTML id; example row j is f"{anchor}-e{j}"
    models: list[str]  # the reference first
    reference: str
    metrics: list[MetricInfo]
    primary: MetricInfo | None
    scores: Mapping[str, Any]
    comparisons: list[Mapping[str, Any]]  # in file order
    by_key: Mapping[tuple[str, str], Mapping[str, Any]]  # (model, metric) -> comparison
    details: Mapping[str, Any]
    examples: list[Mapping[str, Any]]
    anchors: Mapping[str, str]  # example id -> anchor of its first row
    model_info: Mapping[str, Any]  # the results file's "models" (names, adapters, fingerprints)
    prices: Mapping[str, tuple[float, float]]  # model -> (input, output) cost per token
    run_id: str


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
    n_examples: int
    sections: list[SectionView]


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


__all__ = ["Link", "MetricInfo", "Report", "Section", "SectionView", "SuiteData", "SuiteView"]
