"""The pipeline that pytest (and the CLI) drive: prepare -> generate -> score -> compare -> gate -> results.

`prepare()` does everything that can fail on bad input *before* any model runs: it loads and
validates every dataset, few-shot pool and label set, checks metric names and parses gate
expressions, and runs the contamination check. `execute()` then resolves models (adapter folders
checked against their base), generates through one backend for all suites together, and scores.

Nothing here knows about pytest; the plugin is a thin layer over these two calls.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from .backends import Backend, make_run_backend
from .backends.routed import backend_of
from .backends.registry import loads_local_weights
from .cache import CacheMode, GenerationCache
from . import contamination as contamination_module, data as data_module, memo
from .contamination import check_contamination
from .data import Dataset, Example, fingerprint_examples, load_dataset, normalize_text
from .errors import ConfigError, DatasetError, Problem
from .fsutil import sha256_file
from .gate import Gate, parse_gate
from .generate import Plan, build_messages, choose_shots, run_generation
from .integrity import check_integrity
from .judge.calibration import load_calibration
from .judge.gates import check_judge_gate, is_judge_gate
from .judge.run import run_judges
from .packets.rubrics import load_rubric
from .metrics import Metric, get_metric
from .progress import GenerationProgress
from .models import resolve_models, unverified_models
from .prompts import PromptTemplate
from .results import ModelInfo, Results, RunInfo, new_run_info, utc_now
from .score import score_suite
from .specs import ModelSpec
from .suite import (MODEL_VALUES, SUITE_VALUES, Suite, TrainFile, check_known_failures, gate_targets,
                    resolve_reference, suite_model_names, unused_candidates)

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
    #: Models that join every suite whose reference shares their base (`suite.suite_model_names`).
    candidates: tuple[str, ...] = ()
    #: Runs that name the same group generate one at a time (the xdist workers of one session: one
    #: engine in memory, not one per worker); other runs sharing the cache claim chunks side by side.
    exclusive_group: str | None = None
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
    #: Gates on the LLM judge's verdicts (ftevals/judge/gates.py): evaluated after the judge stage.
    judge_gates: list[Gate] = field(default_factory=list)
    #: The suite's judge model, when it has one (served like any model, judged nothing itself).
    judge_model: ModelSpec | None = None

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
            for m in [*ps.models, *([ps.judge_model] if ps.judge_model is not None else [])]:
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
    suites = [resolve_reference(s, config.models) for s in suites]
    prepared = PreparedRun(config, [prepare_suite(s, config) for s in suites])
    check_candidates(suites, config)
    return prepared


def check_candidates(suites: Sequence[Suite], config: RunConfig) -> None:
    """Refuse a candidate that joins no suite: a CI job's adapter must not silently go unevaluated."""
    suites = [resolve_reference(s, config.models) for s in suites]
    unused = unused_candidates(suites, config.models, config.candidates)
    if not unused:
        return
    table = config.models
    bases = sorted({f"{s.name}: reference {s.reference!r} on {table[s.reference_name].base}"
                    + ("" if s.candidates else " (candidates=False)") for s in suites if s.reference in table})
    raise ConfigError(
        "; ".join(f"model {c!r} (a candidate: added with --ftevals-model or ini ftevals_candidates) joins no "
                  f"selected suite: its base is {table[c].base}" for c in unused)
        + f". A candidate joins the suites whose reference model has the same base ({'; '.join(bases) or 'no suite selected'}). "
        "Fix: give it an adapter of one of those bases, select a suite it belongs to, or add it to a suite's models"
    )


def prepare_suite(suite: Suite, config: RunConfig) -> PreparedSuite:
    suite = resolve_reference(suite, config.models)
    labels = suite.label_set()
    template = (PromptTemplate.parse(suite.prompt_template, owner=f"suite {suite.name!r}", labels=labels)
                if suite.prompt_template is not None else None)
    full = load_dataset(suite.path(suite.dataset), labels=labels, columns=suite.columns, system_prompt=suite.system_prompt,
                        prompt_template=template)
    limit = min(x for x in (suite.limit, config.limit) if x is not None) if (suite.limit or config.limit) else None
    dataset = full.sample(limit, seed=suite.seed)

    table = dict(config.models)
    wanted = suite_model_names(suite, table, config.candidates)
    unknown = [m for m in wanted if m not in table]
    if unknown:
        raise ConfigError(
            f"suite {suite.name!r} names unknown model(s) {', '.join(unknown)}; known models: {', '.join(table) or 'none'} "
            "(define them with ftevals_models in pyproject.toml/pytest.ini or --ftevals-model NAME=SPEC)"
        )
    models = [table[m] for m in wanted]

    shots: list[Example] = []
    if suite.fewshot is not None:
        pool_path = suite.path(suite.fewshot.pool)
        if pool_path.resolve() == suite.path(suite.dataset).resolve():
            raise ConfigError(
                f"suite {suite.name!r}: the few-shot pool {pool_path} is the evaluation file; shots must come "
                "from training data, never from the eval split"
            )
        fewshot = suite.fewshot

        def pick() -> list[Example]:
            pool = load_dataset(pool_path, labels=labels, columns=suite.columns, system_prompt=suite.system_prompt,
                                prompt_template=template)
            return choose_shots(_unseen(suite, pool, pool_path, template), fewshot.k, seed=fewshot.seed,
                                exclude_inputs=[e.user_text for e in full.examples],
                                distinct_labels=fewshot.distinct_labels)

        # Validating and ranking a large training pool is most of a warm re-run: the shots are a pure
        # function of the two files, the suite's settings and this code, so they are memoised (memo.py).
        key = memo.memo_key(_file_hash(pool_path), _file_hash(suite.path(suite.dataset)), full.fingerprint,
                            _loader_args(suite, labels, template),
                            [fewshot.k, fewshot.seed, fewshot.distinct_labels], _prepare_code())
        shots = memo.memoised("shots", key, pick)
        models.append(fewshot.contender(table[suite.reference_name]))

    metrics = [get_metric(name) for name in suite.metric_names]
    for metric in metrics:
        metric.check_params(suite.metric_params.get(metric.name, {}), f"suite {suite.name!r}")
    known = {m.name for m in metrics} | set(SUITE_VALUES) | set(MODEL_VALUES)
    judge_model, criteria = _prepare_judge(suite, table)
    gates, judge_gates = [], []
    for text in suite.gates:
        gate = parse_gate(text)
        if is_judge_gate(gate):
            check_judge_gate(suite, gate, criteria)
        else:
            gate.check_metrics(known)
        if gate.metric in SUITE_VALUES and gate.model is not None:
            raise ConfigError(f"suite {suite.name!r}: gate {text!r}: {gate.metric} is a suite-level value; drop the model name")
        if gate.model is not None and gate.model not in {m.name for m in models}:
            raise ConfigError(
                f"suite {suite.name!r}: gate {text!r} names model {gate.model!r}, which the suite does not run "
                f"(models: {', '.join(m.name for m in models)})"
            )
        if gate.metric in MODEL_VALUES:
            _check_integrity_gate(suite, gate, models)
        (judge_gates if is_judge_gate(gate) else gates).append(gate)

    if suite.known_failures:
        check_known_failures(suite, [t for gate in [*gates, *judge_gates] for t in gate_targets(suite, models, gate)])

    contamination = None
    if suite.train_files:
        written = _as_written(suite, dataset, template)
        train_files = suite.training_files()
        # Pure in its inputs, and a second or more on large training files: memoised (memo.py), keyed
        # by the training files' bytes and how each is read, so that a re-run need not even load them
        # and a changed column mapping recomputes.
        files = [(f.path, _file_hash(suite.path(f.path)), dict(suite.train_columns(f) or {})) for f in train_files]
        key = memo.memo_key(fingerprint_examples(written), files, suite.system_prompt, _prepare_code())
        contamination = memo.memoised("contamination", key, lambda: check_contamination(
            written, [(f.path, _train_examples(suite, f)) for f in train_files]).to_dict())
    return PreparedSuite(suite, dataset, len(full), models, metrics, gates, shots, labels, contamination,
                         full.fingerprint, judge_gates, judge_model)


def _check_integrity_gate(suite: Suite, gate: Gate, models: Sequence[ModelSpec]) -> None:
    """An `integrity` gate checks adapters against a number; refuse one that could check nothing."""
    where = f"suite {suite.name!r}: gate {gate.text!r}"
    if gate.relative or gate.significantly:
        raise ConfigError(f"{where}: integrity is the share of an adapter's outputs that differ from its base "
                          "model's, with no reference value or interval; compare it with a number, e.g. "
                          "'integrity >= 0.2'")
    named = [m for m in models if m.name == gate.model]
    if named and (named[0].adapter is None or named[0].fewshot):
        raise ConfigError(f"{where}: {gate.model!r} is not an adapter, so it has no integrity check; "
                          "name an adapter model, or drop the model name to check every adapter")
    if gate.model is None and not gate_targets(suite, models, gate):
        raise ConfigError(f"{where}: the suite runs no adapter whose integrity is checked (models: "
                          f"{', '.join(m.name for m in models)}); drop the gate or add an adapter")


def _prepare_judge(suite: Suite, table: Mapping[str, ModelSpec]) -> tuple[ModelSpec | None, list[str]]:
    """The judge's model spec and the rubric's criteria; a bad judge or calibration file stops the run here."""
    judge = suite.judge_config
    if judge is None:
        return None, []
    if judge.model not in table:
        raise ConfigError(f"suite {suite.name!r}: the judge {judge.model!r} is not in the model table (known models: "
                          f"{', '.join(table) or 'none'}); declare it in ftevals_models or with --ftevals-model")
    rubric = load_rubric(suite.rubric, task=suite.task, where=f"suite {suite.name!r} rubric")
    path = suite.judge_calibration_path()
    if path is not None and path.exists():
        load_calibration(path)
    return table[judge.model], [c.id for c in rubric.criteria]


def _file_hash(path: Path) -> str:
    """sha256 of a file's bytes; a missing file hashes to its error, and loading it says what is wrong."""
    try:
        return sha256_file(path)
    except OSError as exc:
        return f"unreadable: {exc}"


def _loader_args(suite: Suite, labels: Sequence[str] | None, template: PromptTemplate | None) -> list[Any]:
    return [list(labels) if labels is not None else None, dict(suite.columns or {}), suite.system_prompt,
            [template.text, template.labels] if template is not None else None]


def _prepare_code() -> str:
    """The code whose output the preparation memos hold: loading, shots, contamination."""
    from . import data_csv, generate, prompts

    return memo.code_key(__file__, data_module.__file__, data_csv.__file__, prompts.__file__, generate.__file__,
                         contamination_module.__file__)


def _as_written(suite: Suite, dataset: Dataset, template: PromptTemplate | None) -> tuple[Example, ...]:
    """The sample's examples without the prompt template: training files hold inputs as written, and
    a template's wording (a label list, instructions) would hide every overlap from the check.
    Ids do not depend on the template, so the same ids pick the same rows."""
    if template is None:
        return dataset.examples
    raw = load_dataset(suite.path(suite.dataset), columns=suite.columns, system_prompt=suite.system_prompt)
    wanted = {e.id for e in dataset.examples}
    return tuple(e for e in raw.examples if e.id in wanted)


def _train_examples(suite: Suite, train_file: TrainFile) -> tuple[Example, ...]:
    """A training file read like the dataset as written (`_as_written`: the suite's or its own columns,
    no prompt template, which would hide every overlap). A file that cannot be read says which
    suite's training file it is and which mapping it was read with, so the fix is found."""
    path = suite.path(train_file.path)
    columns = suite.train_columns(train_file)
    try:
        return load_dataset(path, columns=columns, system_prompt=suite.system_prompt).examples
    except DatasetError as exc:
        first, *rest = exc.problems
        hint = _train_file_hint(suite, train_file, columns)
        raise DatasetError([Problem(first.path, first.line, f"{first.message}; {hint}"), *rest], path=path) from None


def _train_file_hint(suite: Suite, train_file: TrainFile, columns: Mapping[str, str] | None) -> str:
    where = f"{train_file.path} is a training file of suite {suite.name!r} (train_files)"
    if train_file.columns is not None:
        return f"{where}, read with its own column mapping {dict(columns or {})}"
    if columns:
        return (f"{where}, read like the dataset with the suite's column mapping {dict(columns)}; a training file "
                f"of another layout takes its own: TrainFile({train_file.path!r}, columns={{...}})")
    return where


def _unseen(suite: Suite, pool: Dataset, pool_path: Path, template: PromptTemplate | None) -> tuple[Example, ...]:
    """The pool without rows whose input, as written, is an evaluation input. `choose_shots` drops
    those by the (templated) user text; a template that adds another field of the row ("{channel}:
    {text}") would let the same question through as a shot, with its answer."""
    if template is None:
        return pool.examples
    raw_eval = load_dataset(suite.path(suite.dataset), columns=suite.columns, system_prompt=suite.system_prompt)
    raw_pool = load_dataset(pool_path, columns=suite.columns, system_prompt=suite.system_prompt)
    banned = {normalize_text(e.user_text) for e in raw_eval.examples}
    seen = {e.id for e in raw_pool.examples if normalize_text(e.user_text) in banned}
    return tuple(e for e in pool.examples if e.id not in seen)


# ---------------------------------------------------------------------------------------------
# execute


ProgressFn = Callable[[str], None]


def execute(
    prepared: PreparedRun,
    *,
    backend: Backend | None = None,
    progress: ProgressFn | GenerationProgress | None = None,
    argv: list[str] | None = None,
) -> Results:
    """Generate, score, compare and gate every prepared suite; return the results record."""
    config = prepared.config
    t_start = time.monotonic()
    specs = prepared.model_specs()
    # Local engines need real folders (validated, fingerprinted); a server or a predictions file
    # serves models ftevals cannot open, so their specs stand in for fingerprints.
    # A model's spec can name its own backend (`openai:MODEL_ID` beside local adapters).
    local = [s for s in specs if loads_local_weights(backend_of(s, config.backend))]
    resolved = {**resolve_models(local), **unverified_models([s for s in specs if s not in local])}
    resolved = {s.name: resolved[s.name] for s in specs}
    own_backend = backend is None
    if backend is None:
        backend = make_run_backend(config.backend, resolved, dict(config.backend_options))
    run = new_run_info(seed=config.seed, backend={"name": backend.name, "settings": backend.identity()}, argv=argv)
    cache = GenerationCache(config.cache_dir, config.cache_mode)
    try:
        plan = Plan()
        for ps in prepared.suites:
            for model in ps.models:
                shots = ps.shots if model.fewshot else []
                for ex in ps.dataset.examples:
                    plan.add(ps.name, resolved[model.name], ex, build_messages(ex, shots), ps.suite.sampling, backend,
                             ps.suite.prompt_format)
        order = [m.name for m in prepared.model_specs()]
        outcome = run_generation(plan, backend, cache, chunk_size=config.chunk_size, progress=progress, model_order=order,
                                 exclusive_group=config.exclusive_group)
        # Before anything is scored: an adapter the engine did not apply fails (alone) here.
        # Local engines, and servers (which may report log-probabilities); not a predictions file.
        failures = dict(outcome.failures)
        integrity = check_integrity(prepared.suites, plan, outcome, backend,
                                    checked=lambda m: loads_local_weights(backend_of(m, config.backend))
                                    or backend_of(m, config.backend) == "openai",
                                    on_failure=failures.__setitem__)
        t_generated = time.monotonic()
        suites = tuple(score_suite(ps, plan, outcome, config, integrity, failures) for ps in prepared.suites)
        suites, judged = run_judges(prepared.suites, suites, resolved, backend, cache, config, progress)
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
    if any(judged.values()):  # a run with an LLM judge: its answers, generated and from the cache
        run["timings"].update(judge_generated=judged["generated"], judge_cached=judged["cached"])
    return Results(
        run=RunInfo.from_dict(run),
        models={name: ModelInfo.from_dict(r.provenance()) for name, r in resolved.items()},
        suites=suites,
        integrity=integrity or None,
    )


__all__ = ["PreparedRun", "PreparedSuite", "RunConfig", "execute", "prepare"]
