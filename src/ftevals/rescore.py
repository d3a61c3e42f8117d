"""Re-score saved outputs from a results file, with no model: the engine behind `ftevals compare`.

A results file keeps every example (prompt, reference, metadata) and every model's text, plus the
metric parameters, so any metric, corpus-level ones included, can be recomputed exactly and two
runs compared with the same paired statistics a run uses internally.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from . import compare as cmp
from .data import Example, Message
from .errors import ConfigError
from .metrics import Scored, get_metric
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



def compare_results(a: Results | Mapping[str, Any], b: Results | Mapping[str, Any], *, model_a: str | None = None,
                    model_b: str | None = None, suites: Sequence[str] | None = None, resamples: int = 2000,
                    seed: int = 0, alpha: float = 0.05) -> dict[str, list[Comparison]]:
    """Compare B's outputs against A's (the reference), suite by suite, on the examples both hold."""
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
        rows = []
        for ma, mb in pairs:
            ref_scores, cand_scores = rescore(sa, ma, ids), rescore(sb, mb, ids)
            for m in sa.metrics:
                metric = get_metric(m.name)
                rows.append(cmp.compare_pair(cand_scores[m.name], ref_scores[m.name], model=f"B:{mb}",
                                             reference=f"A:{ma}", metric=m.name, kind=metric.kind,
                                             higher_is_better=metric.higher_is_better, ids=ids, resamples=resamples,
                                             seed=seed, alpha=alpha))
        out[name] = rows
    return out


__all__ = ["compare_results", "examples_of", "rescore"]
