"""The pipeline that pytest (and the CLI) drive: prepare -> generate -> score -> compare -> gate -> results.

`prepare()` does everything that can fail on bad input *before* any model runs: it loads and
validates every dataset, few-shot pool and label set, checks metric names and parses gate
expressions, and runs the contamination check. `execute()` then resolves models (adapter folders
checked against their base), generates through one backend for all suites together, and scores.

Nothing here knows about pytest; the plugin is a thin layer over these two calls.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import compare as cmp
from .backends import Backend, make_backend
from .backends.registry import loads_local_weights
from .cache import CacheMode, GenerationCache
from .contamination import check_contamination
from .data import Dataset, Example, load_dataset
from .errors import ConfigError
from .gate import Gate, evaluate_gate, parse_gate
from .generate import GenerationOutcome, Plan, build_messages, choose_shots, run_generation
from .metrics import Metric, Scored, get_metric
from .models import ResolvedModel, resolve_models, unverified_models
from .results import SCHEMA, SCHEMA_VERSION, new_run_info, utc_now
from .specs import ModelSpec
from .suite import SUITE_VALUES, Suite, check_known_failures, gate_targets, known_failure

@dataclass(frozen=True)
class RunConfig:
    """Settings of one run. `models` is the model table that suites refer to by name."""

    models: Mapping[str, ModelSpec]
    backend: str = "vllm"
    backend_options: Mapping[str, Any] = field(default_factory=dict)
    cache_dir: Path = Path(".ftevals-cache")
    cache_mode: CacheMode = "use"
    seed: int = 0
    #: Cap on examples per suite (quick runs); None = each suite's own limit.
    limit: int | None = None
    resamples: int = 2000
    alpha: float = 0.05
    chunk_size: int = 128


@dataclass
class PreparedSuite:
    suite: Suite
    dataset: Dataset
    n_total: int
    models: list[ModelSpec]
    metrics: list[Metric]
    gates: list[Gate]
    shots: list[Example]
    labels: list[str] | None
    contamination: dict[str, Any] | None
    #: Fingerprint of the whole dataset file (the sample's own is `dataset.fingerprint`).
    file_fingerprint: str = ""

    @property
    def name(self) -> str:
        return self.suite.name


@dataclass
class PreparedRun:
    config: RunConfig
    suites: list[PreparedSuite]

    def model_specs(self) -> list[ModelSpec]:
        seen: dict[str, ModelSpec] = {}
        for ps in self.suites:
            for m in ps.models:
                if m.name in seen and seen[m.name] != m:
                    raise ConfigError(
                        f"model name {m.name!r} means two different things across suites ({seen[m.name]} vs {m}); "
                        "rename one of them"
                    )
                seen.setdefault(m.name, m)
        return list(seen.values())


# ---------------------------------------------------------------------------------------------
# prepare


def prepare(suites: Sequence[Suite], config: RunConfig) -> PreparedRun:
    """Validate everything that does not need a model; raise ConfigError / DatasetError early."""
    names = [s.name for s in suites]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"suite names must be unique; {', '.join(dupes)} is used more than once")
    return PreparedRun(config, [_prepare_suite(s, config) for s in suites])


def _prepare_suite(suite: Suite, config: RunConfig) -> PreparedSuite:
    labels = suite.label_set()
    full = load_dataset(suite.path(suite.dataset), labels=labels)
    limit = min(x for x in (suite.limit, config.limit) if x is not None) if (suite.limit or config.limit) else None
    dataset = full.sample(limit, seed=suite.seed)

    table = dict(config.models)
    wanted = list(suite.models) or list(table)
    if suite.reference not in wanted:
        wanted.insert(0, suite.reference)
    unknown = [m for m in wanted if m not in table]
    if unknown:
        raise ConfigError(
            f"suite {suite.name!r} names unknown model(s) {', '.join(unknown)}; known models: {', '.join(table) or 'none'} "
            "(define them with ftevals_models in pyproject.toml/pytest.ini or --ftevals-model NAME=SPEC)"
        )
    models = [table[m] for m in [suite.reference] + [m for m in wanted if m != suite.reference]]

    shots: list[Example] = []
    if suite.fewshot is not None:
        pool_path = suite.path(suite.fewshot.pool)
        if pool_path.resolve() == suite.path(suite.dataset).resolve():
            raise ConfigError(
                f"suite {suite.name!r}: the few-shot pool {pool_path} is the evaluation file; shots must come "
                "from training data, never from the eval split"
            )
        pool = load_dataset(pool_path, labels=labels)
        shots = choose_shots(
            pool.examples,
            suite.fewshot.k,
            seed=suite.fewshot.seed,
            exclude_inputs=[e.user_text for e in full.examples],
            distinct_labels=suite.fewshot.distinct_labels,
        )
        ref = table[suite.reference]
        models.append(ModelSpec(suite.fewshot.model_name(suite.reference), ref.base, ref.adapter, suite.fewshot.k))

    metrics = [get_metric(name) for name in suite.metric_names]
    for metric in metrics:
        metric.check_params(suite.metric_params.get(metric.name, {}), f"suite {suite.name!r}")
    known = {m.name for m in metrics} | set(SUITE_VALUES)
    gates = []
    for text in suite.gates:
        gate = parse_gate(text)
        gate.check_metrics(known)
        if gate.metric in SUITE_VALUES and gate.model is not None:
            raise ConfigError(f"suite {suite.name!r}: gate {text!r}: {gate.metric} is a suite-level value; drop the model name")
        if gate.model is not None and gate.model not in {m.name for m in models}:
            raise ConfigError(
                f"suite {suite.name!r}: gate {text!r} names model {gate.model!r}, which the suite does not run "
                f"(models: {', '.join(m.name for m in models)})"
            )
        gates.append(gate)

    if suite.known_failures:
        check_known_failures(suite, [t for gate in gates for t in gate_targets(suite, models, gate)])

    contamination = None
    if suite.train_files:
        train_sets = []
        for f in suite.train_files:
            path = suite.path(f)
            train_sets.append((str(f), load_dataset(path).examples))
        contamination = check_contamination(dataset.examples, train_sets).to_dict()
    return PreparedSuite(suite, dataset, len(full), models, metrics, gates, shots, labels, contamination,
                         full.fingerprint)


# ---------------------------------------------------------------------------------------------
# execute


ProgressFn = Callable[[str], None]


def execute(
    prepared: PreparedRun,
    *,
    backend: Backend | None = None,
    progress: ProgressFn | None = None,
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """Generate, score, compare and gate every prepared suite; return the results dict."""
    config = prepared.config
    t_start = time.monotonic()
    specs = prepared.model_specs()
    # Local engines need real folders (validated, fingerprinted); a server or a predictions file
    # serves models ftevals cannot open, so their specs stand in for fingerprints.
    resolved = resolve_models(specs) if loads_local_weights(config.backend) else unverified_models(specs)
    own_backend = backend is None
    if backend is None:
        backend = make_backend(config.backend, resolved, dict(config.backend_options))
    run = new_run_info(seed=config.seed, backend={"name": backend.name, "settings": backend.identity()}, argv=argv)
    cache = GenerationCache(config.cache_dir, config.cache_mode)
    try:
        plan = Plan()
        for ps in prepared.suites:
            for model in ps.models:
                shots = ps.shots if model.fewshot else []
                for ex in ps.dataset.examples:
                    plan.add(ps.name, resolved[model.name], ex, build_messages(ex, shots), ps.suite.sampling, backend)
        order = [m.name for m in prepared.model_specs()]
        outcome = run_generation(plan, backend, cache, chunk_size=config.chunk_size, progress=progress, model_order=order)
        t_generated = time.monotonic()
        suites = [_suite_result(ps, plan, outcome, config) for ps in prepared.suites]
    finally:
        cache.close()
        if own_backend:
            backend.close()
    t_end = time.monotonic()
    run["finished_at"] = utc_now()
    run["timings"] = {
        "total_s": round(t_end - t_start, 3),
        "generate_s": round(outcome.seconds, 3),
        "engine_start_s": round(float(backend.engine_start_seconds), 3),
        "backend_generate_s": round(float(backend.generate_seconds), 3),
        "score_s": round(t_end - t_generated, 3),
        "merge_s": round(float(backend.merge_seconds), 3),
        # vLLM "auto": how each adapter was served and the cost estimates behind it. Volatile, as
        # the estimates use speeds measured during the run.
        "strategy_choices": {k: v.to_dict() for k, v in backend.choices.items()},
        "backend_calls": outcome.backend_calls,
        "generated": outcome.generated,
        "cached": outcome.cached,
    }
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "run": run,
        "models": {name: r.provenance() for name, r in resolved.items()},
        "suites": suites,
    }


def _suite_result(ps: PreparedSuite, plan: Plan, outcome: GenerationOutcome, config: RunConfig) -> dict[str, Any]:
    suite = ps.suite
    keys = {(it.model, it.example_id): it.key for it in plan.items if it.suite == ps.name}
    examples = list(ps.dataset.examples)
    ids = [e.id for e in examples]
    model_names = [m.name for m in ps.models]
    texts = {m: [outcome.generations[keys[(m, e.id)]].text for e in examples] for m in model_names}
    params_base: dict[str, Any] = {"labels": ps.labels} if ps.labels else {}

    scores: dict[str, dict[str, Scored]] = {}
    for m in model_names:
        scores[m] = {}
        for metric in ps.metrics:
            params = {**params_base, **dict(suite.metric_params.get(metric.name, {}))}
            scores[m][metric.name] = metric(texts[m], examples, **params)

    seed = config.seed
    summaries: dict[str, dict[str, dict[str, Any]]] = {}
    for m in model_names:
        summaries[m] = {}
        for metric in ps.metrics:
            ci = cmp.bootstrap_ci(scores[m][metric.name], resamples=config.resamples, seed=seed, alpha=1 - 0.95)
            summaries[m][metric.name] = {"value": _num(ci.estimate), "ci_low": _num(ci.ci_low), "ci_high": _num(ci.ci_high)}
    comparisons = cmp.compare_models(
        scores, reference=suite.reference, metrics=ps.metrics, ids=ids,
        resamples=config.resamples, seed=seed, alpha=config.alpha,
    )
    comp_dicts = [c.to_dict() for c in comparisons]

    prompting = _prompting(ps, summaries)
    forgetting = _forgetting(ps, comparisons) if suite.task == "forgetting" else None
    suite_values = {"contamination": ps.contamination["rate"] if ps.contamination else None}
    gate_results = []
    for gate in ps.gates:
        for target in gate_targets(suite, ps.models, gate):
            result = evaluate_gate(gate, target.model, summaries, comparisons, suite_values,
                                   reference=suite.reference, n=len(examples)).to_dict()
            # The gate exactly as the suite wrote it: the key the plugin's test item looks up.
            result["source"] = target.source
            result["known_failure"] = known_failure(suite, target)
            gate_results.append(result)

    example_rows = []
    for i, ex in enumerate(examples):
        outputs = {}
        for m in model_names:
            g = outcome.generations[keys[(m, ex.id)]]
            outputs[m] = {
                "text": g.text,
                "scores": {met.name: _num(scores[m][met.name].per_example[i]) for met in ps.metrics},
                "tokens_in": g.tokens_in,
                "tokens_out": g.tokens_out,
                "finish_reason": g.finish_reason,
            }
        example_rows.append({
            "id": ex.id,
            "input": ex.user_text,
            "messages": [msg.to_dict() for msg in ex.messages],
            "reference": ex.reference,
            "metadata": dict(ex.metadata),
            "outputs": outputs,
        })

    return {
        "name": suite.name,
        "task": suite.task,
        "description": suite.description,
        "dataset": {
            "name": ps.dataset.name,
            "path": _display_path(suite.path(suite.dataset)),
            "fingerprint": ps.dataset.fingerprint,
            "file_fingerprint": ps.file_fingerprint,
            "n_examples": len(examples),
            "n_total": ps.n_total,
            "sample_seed": suite.seed,
        },
        "sampling": suite.sampling.to_dict(),
        "reference": suite.reference,
        "models": model_names,
        "fewshot": (
            {"model": ps.models[-1].name, "k": len(ps.shots), "pool": _display_path(suite.path(suite.fewshot.pool)),
             "shot_ids": [s.id for s in ps.shots]} if suite.fewshot else None
        ),
        "metric_params": {
            m.name: {**params_base, **dict(suite.metric_params.get(m.name, {}))} for m in ps.metrics
        },
        "metrics": [
            {"name": m.name, "higher_is_better": m.higher_is_better, "kind": m.kind, "primary": i == 0,
             "range": list(m.value_range)}
            for i, m in enumerate(ps.metrics)
        ],
        "scores": summaries,
        "details": {m: {met: s.details for met, s in by.items() if s.details} for m, by in scores.items()},
        "comparisons": comp_dicts,
        "prompting": prompting,
        "forgetting": forgetting,
        "gates": gate_results,
        "contamination": ps.contamination,
        "baseline": None,
        "usage": _suite_usage(ps, keys, outcome, examples),
        "examples": example_rows,
        "rubric": dict(suite.rubric) if suite.rubric else None,
        "human": None,
    }


def _prompting(ps: PreparedSuite, summaries: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any] | None:
    suite = ps.suite
    if suite.fewshot is None:
        return None
    contender = suite.fewshot.model_name(suite.reference)
    adapters = [m.name for m in ps.models if m.adapter is not None and m.fewshot == 0]
    if not adapters:
        return None
    metric = ps.metrics[0]
    adapter = adapters[0]
    base_v = summaries[suite.reference][metric.name]["value"]
    prompted_v = summaries[contender][metric.name]["value"]
    adapter_v = summaries[adapter][metric.name]["value"]
    share = cmp.prompting_share(base_v, prompted_v, adapter_v, metric.higher_is_better)
    rec = cmp.prompting_recommendation(share, metric=metric.name, prompted_value=prompted_v, adapter_value=adapter_v)
    return cmp.PromptingResult(contender, adapter, metric.name, suite.fewshot.k, base_v, prompted_v, adapter_v, share, rec).to_dict()


def _forgetting(ps: PreparedSuite, comparisons: Sequence[cmp.Comparison]) -> dict[str, Any]:
    """Per model on this held-out task: the drop against the base (positive = worse), its CI and
    the examples behind it, for the suite's primary metric."""
    primary = ps.metrics[0]
    out: dict[str, Any] = {"metric": primary.name, "reference": ps.suite.reference, "models": {}}
    for c in comparisons:
        if c.metric != primary.name:
            continue
        sign = -1.0 if primary.higher_is_better else 1.0
        low, high = sorted((sign * c.ci_low, sign * c.ci_high))
        worse = (lambda d: d < 0) if primary.higher_is_better else (lambda d: d > 0)
        flipped = list(c.regressions) if c.kind == "binary" else [d.id for d in c.largest_drops if worse(d.delta)]
        out["models"][c.model] = {
            "drop": _num(sign * c.delta), "ci_low": _num(low), "ci_high": _num(high), "n": c.n,
            "forgot": c.verdict == "regressed", "flipped": flipped,
        }
    return out


def _suite_usage(ps: PreparedSuite, keys: dict[tuple[str, str], str], outcome: GenerationOutcome,
                 examples: list[Example]) -> dict[str, Any]:
    """Token counts for this suite's generations; time apportioned from the model's whole-run rate."""
    out: dict[str, Any] = {}
    for m in ps.models:
        gens = [outcome.generations[keys[(m.name, e.id)]] for e in examples]
        total = outcome.usage.get(m.name)
        tokens_out = sum(g.tokens_out for g in gens)
        rate = None
        if total is not None and total.wall_s > 0:
            generated_tokens = total.tokens_out
            rate = generated_tokens / total.wall_s if generated_tokens else None
        lat = [g.latency_s for g in gens if g.latency_s is not None]
        row = {
            "requests": len(gens),
            "cached": total.cached if total else 0,
            "tokens_in": sum(g.tokens_in for g in gens),
            "tokens_out": tokens_out,
            "wall_s": round(tokens_out / rate, 3) if rate else None,
            "tokens_per_s": round(rate, 2) if rate else None,
        }
        row.update(_percentiles(lat))
        out[m.name] = row
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


def _display_path(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


__all__ = ["PreparedRun", "PreparedSuite", "RunConfig", "execute", "prepare"]
