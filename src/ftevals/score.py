"""Score stage: one suite's generations -> its `SuiteResult` record.

Scores every model's outputs with the suite's metrics, summarises each with a bootstrap CI,
compares every model with the reference (compare.py), reads a forgetting suite's comparisons as
drops, checks the gates (gate.py) and records usage. Pure: no backend, no files; the pipeline
calls it once per suite after generation, and `ftevals` re-scoring calls the same metrics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from . import compare as cmp
from .fsutil import display_path
from .gate import GateResult, evaluate_gate
from .generate import GenerationOutcome, Plan
from .metrics import Scored
from .multiplicity import compare_suite
from .results.records import (Comparison, Contamination, DatasetInfo, ExampleResult, FewShotInfo, ForgettingResult,
                              GateOutcome, IntegrityCheck, MetricInfo, Output, PromptingResult, ScoreSummary,
                              SuiteResult, Usage)
from .suite import gate_targets, known_failure, same_base

if TYPE_CHECKING:  # pragma: no cover
    from .data import Example
    from .pipeline import PreparedSuite, RunConfig

#: Level of the per-model score CIs (comparisons use the run's alpha).
SCORE_CI_LEVEL = 0.95


def score_suite(ps: PreparedSuite, plan: Plan, outcome: GenerationOutcome, config: RunConfig,
                integrity: Mapping[str, IntegrityCheck] | None = None,
                failures: Mapping[str, str] | None = None) -> SuiteResult:
    """Score, compare and gate one suite. `integrity`: the run's engine-integrity checks per adapter
    (integrity.py), the values of `integrity` gates. `failures`: model -> why it could not be
    generated or checked (generation and integrity): every other model is scored as usual, and each
    gate test of a failed model fails with the cause (one model's fault costs only that model)."""
    failed = _failed_models(ps, failures or {})
    if not failed:
        return _score(ps, plan, outcome, config, integrity)
    live = [m for m in ps.models if m.name not in failed]
    result = _score(replace(ps, models=live), plan, outcome, config, integrity) if live else _empty(ps)
    outcomes = {(g.source, g.model): g for g in result.gates}
    gates = []
    for gate in ps.gates:
        for target in gate_targets(ps.suite, ps.models, gate):
            found = outcomes.get((target.source, target.model))
            if found is None and target.model in failed:
                found = GateOutcome(f"{target.model}::{gate.expression}", gate.expression, target.model, False,
                                    f"{target.model} was not evaluated: {failed[target.model]}", gate.text,
                                    source=target.source, known_failure=None)
            if found is not None:
                gates.append(found)
    return replace(result, gates=tuple(gates), failures=failed)


def _failed_models(ps: PreparedSuite, failures: Mapping[str, str]) -> dict[str, str]:
    """The suite's models that cannot be scored: those that failed, and every model when its
    reference failed (nothing to compare with)."""
    ref = ps.suite.reference_name
    if ref in failures:
        return {m.name: failures[m.name] if m.name in failures else f"its reference {ref} failed: {failures[ref]}"
                for m in ps.models}
    return {m.name: failures[m.name] for m in ps.models if m.name in failures}


def _empty(ps: PreparedSuite) -> SuiteResult:
    """A suite none of whose models could be scored (its reference failed): what it is, no numbers."""
    suite = ps.suite
    return SuiteResult(
        name=suite.name, models=(), metrics=tuple(MetricInfo(m.name, m.higher_is_better, m.kind, i == 0,
                                                             tuple(m.value_range)) for i, m in enumerate(ps.metrics)),
        scores={}, examples=(), task=suite.task, description=suite.description,
        dataset=DatasetInfo(name=ps.dataset.name, path=display_path(suite.path(suite.dataset)),
                            fingerprint=ps.dataset.fingerprint, file_fingerprint=ps.file_fingerprint,
                            n_examples=len(ps.dataset), n_total=ps.n_total, sample_seed=suite.seed),
        sampling=suite.sampling.to_dict(), reference=suite.reference_name)


def _score(ps: PreparedSuite, plan: Plan, outcome: GenerationOutcome, config: RunConfig,
           integrity: Mapping[str, IntegrityCheck] | None) -> SuiteResult:
    suite = ps.suite
    keys = {(it.model, it.example_id): it.key for it in plan.items if it.suite == ps.name}
    examples = list(ps.dataset.examples)
    ids = [e.id for e in examples]
    model_names = [m.name for m in ps.models]
    texts = {m: [outcome.generations[keys[(m, e.id)]].text for e in examples] for m in model_names}
    params_base: dict[str, Any] = {"labels": ps.labels} if ps.labels else {}
    metric_params = {m.name: {**params_base, **dict(suite.metric_params.get(m.name, {}))} for m in ps.metrics}

    scores: dict[str, dict[str, Scored]] = {
        m: {metric.name: metric(texts[m], examples, **metric_params[metric.name]) for metric in ps.metrics}
        for m in model_names
    }
    summaries = {
        m: {name: _summary(scored, config) for name, scored in by_metric.items()} for m, by_metric in scores.items()
    }
    comparisons: list[Comparison] = compare_suite(
        scores, reference=suite.reference_name, metrics=ps.metrics, ids=ids, multiplicity=suite.multiplicity,
        resamples=config.resamples, seed=config.seed, alpha=config.alpha,
    )
    contamination = Contamination.from_dict(ps.contamination) if ps.contamination else None
    suite_values = {"contamination": contamination.rate if contamination else None}
    gate_scores = _with_integrity(summaries, integrity) if any(g.metric == "integrity" for g in ps.gates) else summaries
    gates = []
    for gate in ps.gates:
        for target in gate_targets(suite, ps.models, gate):
            if gate.metric == "integrity" and "integrity" not in gate_scores.get(target.model or "", {}):
                result = GateResult(gate, target.model, False,
                                    f"{target.model} has no engine-integrity check in this run (replayed outputs, or "
                                    "a model its backend cannot compare with a base); the gate cannot pass")
            else:
                result = evaluate_gate(gate, target.model, gate_scores, comparisons, suite_values,
                                       reference=suite.reference_name, n=len(examples))
            gates.append(GateOutcome(result.id, result.expression, result.model, result.passed, result.message,
                                     result.gate.text, source=target.source, known_failure=known_failure(suite, target)))

    return SuiteResult(
        name=suite.name,
        task=suite.task,
        description=suite.description,
        dataset=DatasetInfo(
            name=ps.dataset.name, path=display_path(suite.path(suite.dataset)), fingerprint=ps.dataset.fingerprint,
            file_fingerprint=ps.file_fingerprint, n_examples=len(examples), n_total=ps.n_total, sample_seed=suite.seed,
        ),
        sampling=suite.sampling.to_dict(),
        prompt_formats={m: plan.formats.get((ps.name, m), "chat") for m in model_names},
        reference=suite.reference_name,
        models=tuple(model_names),
        fewshot=(
            FewShotInfo(suite.fewshot.model_name(suite.reference_name), len(ps.shots), display_path(suite.path(suite.fewshot.pool)),
                        tuple(s.id for s in ps.shots)) if suite.fewshot else None
        ),
        metric_params=metric_params,
        metrics=tuple(
            MetricInfo(m.name, m.higher_is_better, m.kind, i == 0, tuple(m.value_range)) for i, m in enumerate(ps.metrics)
        ),
        scores=summaries,
        details={m: {met: s.details for met, s in by.items() if s.details} for m, by in scores.items()},
        comparisons=tuple(comparisons),
        prompting=_prompting(ps, summaries),
        forgetting=_forgetting(ps, comparisons) if suite.task == "forgetting" else None,
        gates=tuple(gates),
        contamination=contamination,
        baseline=None,
        usage=_usage(ps, keys, outcome, examples, config.backend),
        examples=tuple(_example(i, ex, model_names, keys, outcome, scores) for i, ex in enumerate(examples)),
        rubric=dict(suite.rubric) if suite.rubric else None,
        human=None,
        different_base=_different_base(ps),
    )


def _different_base(ps: PreparedSuite) -> tuple[str, ...] | None:
    """Models on another base model than the reference's (an explicit `reference=` allows it): their
    deltas mix the adapter's effect with the change of base, and every rendering says so."""
    ref = next(m for m in ps.models if m.name == ps.suite.reference_name)
    other = tuple(m.name for m in ps.models
                  if m.name != ref.name and not m.served_elsewhere and not same_base(m, ref))
    return other or None


def _with_integrity(summaries: dict[str, dict[str, ScoreSummary]],
                    integrity: Mapping[str, IntegrityCheck] | None) -> dict[str, dict[str, ScoreSummary]]:
    """The scores gates read, plus each checked adapter's `integrity`: the share of its greedy outputs
    in the run that differ from its base model's (over `n_prompts`)."""
    out = {m: dict(by) for m, by in summaries.items()}
    for name, check in (integrity or {}).items():
        if name in out and check.n_prompts:
            out[name]["integrity"] = ScoreSummary(check.changed_outputs / check.n_prompts, None, None, check.n_prompts)
    return out


def _summary(scored: Scored, config: RunConfig) -> ScoreSummary:
    ci = cmp.bootstrap_ci(scored, resamples=config.resamples, seed=config.seed, alpha=1 - SCORE_CI_LEVEL)
    return ScoreSummary(_num(ci.estimate), _num(ci.ci_low), _num(ci.ci_high))


def _example(i: int, ex: Example, model_names: Sequence[str], keys: Mapping[tuple[str, str], str],
             outcome: GenerationOutcome, scores: Mapping[str, Mapping[str, Scored]]) -> ExampleResult:
    outputs = {}
    for m in model_names:
        g = outcome.generations[keys[(m, ex.id)]]
        outputs[m] = Output(
            text=g.text,
            scores={name: _num(scored.per_example[i]) for name, scored in scores[m].items()},
            tokens_in=g.tokens_in, tokens_out=g.tokens_out, finish_reason=g.finish_reason,
        )
    return ExampleResult(id=ex.id, input=ex.user_text, messages=tuple(msg.to_dict() for msg in ex.messages),
                         reference=ex.reference, metadata=dict(ex.metadata), outputs=outputs)


def _prompting(ps: PreparedSuite, summaries: Mapping[str, Mapping[str, ScoreSummary]]) -> PromptingResult | None:
    """The few-shot contender against the first adapter, on the primary metric."""
    suite = ps.suite
    if suite.fewshot is None:
        return None
    adapters = [m.name for m in ps.models if m.adapter is not None and m.fewshot == 0]
    if not adapters:
        return None
    metric, adapter = ps.metrics[0], adapters[0]
    contender = suite.fewshot.model_name(suite.reference_name)
    if contender not in summaries:  # the contender failed (its failure is recorded with the suite)
        return None
    return cmp.prompting_summary(
        contender=contender, adapter=adapter, metric=metric.name, k=suite.fewshot.k,
        base_value=summaries[suite.reference_name][metric.name].value,
        prompted_value=summaries[contender][metric.name].value,
        adapter_value=summaries[adapter][metric.name].value,
        higher_is_better=metric.higher_is_better,
    )


def _forgetting(ps: PreparedSuite, comparisons: Sequence[Comparison]) -> ForgettingResult:
    """Per model on this held-out task: the drop against the reference on the primary metric."""
    primary = ps.metrics[0].name
    return ForgettingResult(primary, ps.suite.reference_name,
                            {c.model: cmp.forgetting_of(c) for c in comparisons if c.metric == primary})


#: Backends whose latencies are measured inside an offline batch (see `Usage.latency_basis`).
IN_BATCH_LATENCY = frozenset({"vllm", "hf"})


def _usage(ps: PreparedSuite, keys: Mapping[tuple[str, str], str], outcome: GenerationOutcome,
           examples: list[Example], run_backend: str = "") -> dict[str, Usage]:
    """Token counts for this suite's generations; time apportioned from the model's whole-run rate."""
    out: dict[str, Usage] = {}
    for m in ps.models:
        suite_keys = [keys[(m.name, e.id)] for e in examples]
        gens = [outcome.generations[k] for k in suite_keys]
        total = outcome.usage.get(m.name)
        tokens_out = sum(g.tokens_out for g in gens)
        rate = total.tokens_out / total.wall_s if total is not None and total.wall_s > 0 and total.tokens_out else None
        lat = [g.latency_s for g in gens if g.latency_s is not None]
        out[m.name] = Usage(
            requests=len(gens),
            # This suite's own cache hits (the whole run's count used to be repeated in every suite).
            cached=sum(1 for k in suite_keys if k in outcome.cached_keys),
            tokens_in=sum(g.tokens_in for g in gens),
            tokens_out=tokens_out,
            wall_s=round(tokens_out / rate, 3) if rate else None,
            tokens_per_s=round(rate, 2) if rate else None,
            **_percentiles(lat),
            latency_basis=(("in-batch" if (m.backend or run_backend) in IN_BATCH_LATENCY else "request")
                           if lat else None),
        )
    return out


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"latency_p50_s": None, "latency_p90_s": None, "latency_p99_s": None}
    arr = np.asarray(values)
    return {f"latency_p{q}_s": round(float(np.percentile(arr, q)), 4) for q in (50, 90, 99)}


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


__all__ = ["SCORE_CI_LEVEL", "score_suite"]
