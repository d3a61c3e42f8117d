"""Re-score saved outputs from a results file, with no model: the engine behind `ftevals compare`.

A results file keeps every example (prompt, reference, metadata) and every model's text, plus the
metric parameters, so any metric, corpus-level ones included, can be recomputed exactly and two
runs compared with the same paired statistics a run uses internally: the comparisons go through
`multiplicity.compare_suite`, as a run's do, with the settings (resamples, seed, alpha, multiplicity
method) the results file records, so a re-scored verdict is the run's verdict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from . import compare as cmp
from .data import Example, Message
from .errors import ConfigError
from .metrics import Scored, get_metric
from .multiplicity import Method, compare_suite, recorded_method
from .results import Comparison, Results, SuiteResult, from_data


def examples_of(suite: SuiteResult) -> list[Example]:
    return [
        Example(
            id=row.id,
            messages=tuple(Message(m["role"], m["content"]) for m in row.messages),
            reference=row.reference,
            metadata=dict(row.metadata),
        )
        for row in suite.examples
    ]


def rescore(suite: SuiteResult, model: str, ids: Sequence[str]) -> dict[str, Scored]:
    """Every metric of the suite for one model's saved outputs, on the examples `ids` (in order)."""
    by_id = {row.id: row for row in suite.examples}
    examples = {ex.id: ex for ex in examples_of(suite)}
    texts = [by_id[i].outputs[model].text for i in ids]
    exs = [examples[i] for i in ids]
    out = {}
    for m in suite.metrics:
        params = dict(suite.metric_params.get(m.name, {}))
        out[m.name] = get_metric(m.name)(texts, exs, **params)
    return out


@dataclass(frozen=True)
class ComparisonSettings:
    """How a suite's comparisons are made: the bootstrap, the significance level, the multiplicity."""

    resamples: int
    seed: int
    alpha: float
    multiplicity: Method

    def given(self, resamples: int | None, seed: int | None, alpha: float | None) -> ComparisonSettings:
        """These settings with the ones a caller gave (None: keep the recorded one)."""
        return replace(self, resamples=self.resamples if resamples is None else resamples,
                       seed=self.seed if seed is None else seed, alpha=self.alpha if alpha is None else alpha)


def recorded_settings(*suites: SuiteResult) -> ComparisonSettings:
    """The settings a run compared with, read from its results: every comparison records its
    resamples, seed and alpha, and each adjusted one its multiplicity method.

    The first of `suites` that holds comparisons gives resamples, seed and alpha; the method is the
    first one recorded (a suite that adjusted nothing, "none" or a family of one, records none, so
    the other run's method is used when it recorded one). A run's defaults when nothing is recorded.
    """
    compared = [s for s in suites if s.comparisons]
    methods = (recorded_method(s.comparisons, f"suite {s.name!r}") for s in compared)
    method: Method = next((m for m in methods if m != "none"), "none")
    if not compared:
        return ComparisonSettings(cmp.DEFAULT_RESAMPLES, 0, cmp.DEFAULT_ALPHA, method)
    first = compared[0].comparisons[0]
    return ComparisonSettings(first.resamples, first.bootstrap_seed, first.alpha, method)


def rescore_results(results: Results | Mapping[str, Any], *, suites: Sequence[str] | None = None,
                    resamples: int | None = None, seed: int | None = None,
                    alpha: float | None = None) -> dict[str, list[Comparison]]:
    """Each suite's comparisons recomputed from its saved outputs: every model against the suite's
    reference, on the run's examples in the run's order, with the settings the run recorded unless
    given. With none given this reaches the comparisons (and adjusted verdicts) the run recorded."""
    by_name = {s.name: s for s in from_data(results).suites}
    unknown = [n for n in suites or () if n not in by_name]
    if unknown:
        raise ConfigError(f"the results file has no suite {unknown[0]!r} (suites: {', '.join(by_name) or 'none'}); "
                          "pick one of those with --suite")
    out: dict[str, list[Comparison]] = {}
    for name, suite in by_name.items():
        if suites and name not in suites:
            continue
        if suite.reference not in suite.models:
            out[name] = []  # its reference failed: the run compared nothing either
            continue
        ids = [row.id for row in suite.examples]
        settings = recorded_settings(suite).given(resamples, seed, alpha)
        scores = {m: rescore(suite, m, ids) for m in suite.models}
        out[name] = _compare(scores, suite.reference, suite, ids, settings)
    return out


def compare_results(a: Results | Mapping[str, Any], b: Results | Mapping[str, Any], *, model_a: str | None = None,
                    model_b: str | None = None, suites: Sequence[str] | None = None, resamples: int | None = None,
                    seed: int | None = None, alpha: float | None = None) -> dict[str, list[Comparison]]:
    """Compare B's outputs against A's (the reference), suite by suite, on the examples both hold.

    Settings not given are the ones run A recorded (the multiplicity method: A's, else B's), so the
    verdicts are adjusted over the suite's comparisons as a run adjusts them.
    """
    a_suites = {s.name: s for s in from_data(a).suites}
    b_suites = {s.name: s for s in from_data(b).suites}
    common = [n for n in a_suites if n in b_suites and (not suites or n in suites)]
    if not common:
        raise ConfigError(f"the two results files share no suite{' among ' + ', '.join(suites) if suites else ''} "
                          f"(A: {', '.join(a_suites) or 'none'}; B: {', '.join(b_suites) or 'none'})")
    out: dict[str, list[Comparison]] = {}
    for name in common:
        sa, sb = a_suites[name], b_suites[name]
        pairs = [(model_a, model_b or model_a)] if model_a else [(m, m) for m in sa.models if m in sb.models]
        for ma, mb in pairs:
            if ma not in sa.models or mb not in sb.models:
                raise ConfigError(f"suite {name!r}: model {ma!r} not in A or {mb!r} not in B")
        ids = sorted({row.id for row in sa.examples} & {row.id for row in sb.examples})
        if not ids:
            raise ConfigError(f"suite {name!r}: the two runs share no example ids; compare runs on the same dataset")
        scores: dict[str, dict[str, Scored]] = {}
        for ma, mb in pairs:
            scores[f"A:{ma}"], scores[f"B:{mb}"] = rescore(sa, ma, ids), rescore(sb, mb, ids)
        settings = recorded_settings(sa, sb).given(resamples, seed, alpha)
        out[name] = _compare(scores, {f"B:{mb}": f"A:{ma}" for ma, mb in pairs}, sa, ids, settings)
    return out


def _compare(scores: Mapping[str, Mapping[str, Scored]], reference: str | Mapping[str, str], suite: SuiteResult,
             ids: Sequence[str], settings: ComparisonSettings) -> list[Comparison]:
    # The metric's kind and direction come from the code that recomputed the scores.
    metrics = [get_metric(m.name) for m in suite.metrics]
    return compare_suite(scores, reference=reference, metrics=metrics, ids=ids, multiplicity=settings.multiplicity,
                         resamples=settings.resamples, seed=settings.seed, alpha=settings.alpha)


__all__ = ["ComparisonSettings", "compare_results", "examples_of", "recorded_settings", "rescore", "rescore_results"]
