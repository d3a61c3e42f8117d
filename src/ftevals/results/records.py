"""The results file as typed records: one frozen dataclass per part, in the file's own key order.

The pipeline builds a `Results`, `save` writes it, `load` reads it back; the report, packets,
plugin, re-scoring, summary and CLI read the records, never raw dicts, so a renamed field is an
attribute error in one place instead of a report section that silently vanishes. The JSON form,
its JSON Schema (`results.schema.json`) and the reader are all derived from these annotations by
`codec.py`; docs/results-schema.md explains what each field means.

Numbers: a `float` that is undefined (a metric with no defined value, a CI from one example) is
NaN in memory and `null` in the file; `float | None` fields are None when absent by design.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .codec import Json, from_json, omit_none, to_json

SCHEMA = "ftevals.results"
SCHEMA_VERSION = 1

Verdict = Literal["improved", "no_significant_change", "regressed"]
TestName = Literal["mcnemar-exact", "paired-bootstrap"]
BaselineStatus = Literal["created", "matched", "changed", "updated"]
#: How a model's prompts were rendered: its chat template, or raw text (completion mode).
PromptFormat = Literal["chat", "completion"]


class Record:
    """Shared JSON round-trip for every record (`to_dict` / `from_dict`)."""

    def to_dict(self) -> dict[str, Any]:
        return to_json(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any:
        return from_json(cls, data)


# ---------------------------------------------------------------------------------------------
# The run and its models


@dataclass(frozen=True)
class GitInfo(Record):
    """The commit the run's code came from; nulls outside a git checkout."""

    commit: str | None = None
    dirty: bool | None = None


@dataclass(frozen=True)
class BackendInfo(Record):
    """The backend that generated the outputs and every setting that shaped them."""

    name: str
    settings: Mapping[str, Json] = field(default_factory=dict)


@dataclass(frozen=True)
class RunInfo(Record):
    """Provenance of one run: when, with which code, libraries, backend and seed."""

    id: str
    started_at: str | None = None
    finished_at: str | None = None
    seed: int = 0
    ftevals_version: str = ""
    python: str = ""
    platform: str = ""
    libraries: Mapping[str, str] = field(default_factory=dict)
    git: GitInfo = field(default_factory=GitInfo)
    backend: BackendInfo | None = None
    argv: tuple[str, ...] = ()
    #: Wall times and generation counts (volatile: excluded from determinism checks).
    timings: Mapping[str, Json] = field(default_factory=dict)
    #: The hardware class the numbers came from (`cpu:x86_64:avx2:AuthenticAMD`, `cuda:NVIDIA H200`): baselines
    #: compare exactly only across runs of the same class and dtype (see baseline.py).
    hardware: str | None = omit_none()


@dataclass(frozen=True)
class ModelInfo(Record):
    """A model as it was served: its spec and the fingerprints of the weights behind it."""

    name: str
    base: str
    adapter: str | None = None
    fewshot: int = 0
    base_fingerprint: str | None = None
    adapter_fingerprint: str | None = None
    adapter_rank: int | None = None
    #: The backend that served this model when it was not the run's own (`openai:MODEL_ID`).
    backend: str | None = omit_none()


# ---------------------------------------------------------------------------------------------
# A suite's inputs


@dataclass(frozen=True)
class DatasetInfo(Record):
    """The evaluated sample and the file it came from."""

    name: str
    path: str
    fingerprint: str
    file_fingerprint: str = ""
    n_examples: int = 0
    n_total: int = 0
    sample_seed: int = 0


@dataclass(frozen=True)
class FewShotInfo(Record):
    """The few-shot contender: the prompted base model and the training shots it saw."""

    model: str
    k: int
    pool: str
    shot_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class MetricInfo(Record):
    """A metric as the suite used it; the first one is the suite's primary metric."""

    name: str
    higher_is_better: bool = True
    kind: str = "continuous"
    primary: bool = False
    range: tuple[float, ...] = (0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# Scores and comparisons


@dataclass(frozen=True)
class ScoreSummary(Record):
    """One model's value on one metric with its bootstrap CI (and, in baselines, the sample size)."""

    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = omit_none()


@dataclass(frozen=True)
class ExampleDelta(Record):
    """One example's per-example values for both models; `delta` = model - reference (raw sign)."""

    id: str
    delta: float
    reference: float = math.nan
    model: float = math.nan


@dataclass(frozen=True)
class Comparison(Record):
    """One model against the reference on one metric (see compare.py for how each field is made).

    `delta` = model_value - reference_value; `ci_low..ci_high` is its paired bootstrap CI at
    level 1 - alpha. `test` names what decided the verdict: "mcnemar-exact" for binary metrics,
    "paired-bootstrap" for continuous ones. `fixes`/`regressions` (binary) list example ids the
    model newly gets right/wrong; `largest_drops` (continuous) the examples where it got worst.
    """

    model: str
    reference: str
    metric: str
    kind: str
    higher_is_better: bool
    model_value: float
    reference_value: float
    delta: float
    ci_low: float
    ci_high: float
    n: int
    test: TestName
    p_value: float | None
    resamples: int
    bootstrap_seed: int
    alpha: float
    verdict: Verdict
    fixes: tuple[str, ...] = ()
    regressions: tuple[str, ...] = ()
    largest_drops: tuple[ExampleDelta, ...] = ()
    #: The p-value adjusted over the suite's family of comparisons (multiplicity.py); absent when
    #: nothing was adjusted (a single comparison, or multiplicity="none"). The verdict uses it.
    p_adjusted: float | None = omit_none()
    #: "holm" or "bonferroni", with `family_size` comparisons adjusted together.
    adjustment: str | None = omit_none()
    family_size: int | None = omit_none()

    @property
    def significant_direction(self) -> int:
        """+1 if the delta is significantly positive, -1 if significantly negative, 0 otherwise."""
        if self.verdict == "no_significant_change":
            return 0
        good = 1 if self.higher_is_better else -1
        return good if self.verdict == "improved" else -good


@dataclass(frozen=True)
class PromptingResult(Record):
    """The few-shot prompted base against the adapter on the primary metric.

    `share_of_gain` = (prompted - base) / (adapter - base): the share of the adapter's gain that
    prompting recovers; None when the adapter has no gain (or a value is undefined).
    """

    contender: str
    adapter: str
    metric: str
    k: int
    base_value: float | None
    prompted_value: float | None
    adapter_value: float | None
    share_of_gain: float | None
    recommendation: str | None = None


@dataclass(frozen=True)
class ForgettingModel(Record):
    """One model's drop on a held-out task (positive = worse than the reference) and its flips."""

    drop: float
    ci_low: float
    ci_high: float
    n: int
    forgot: bool
    flipped: tuple[str, ...] = ()


@dataclass(frozen=True)
class ForgettingResult(Record):
    """A forgetting suite's reading of its primary metric's comparisons, per model."""

    metric: str
    reference: str
    models: Mapping[str, ForgettingModel] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Gates, contamination, baselines, usage


@dataclass(frozen=True)
class GateOutcome(Record):
    """One gate applied to one model (or to the suite): one pytest test."""

    id: str
    expression: str
    model: str | None
    passed: bool
    message: str
    text: str | None = omit_none()
    #: The gate exactly as the suite wrote it: the key the plugin's test item looks up.
    source: str | None = omit_none()
    #: The documented reason when the suite declares this gate a known failure (strict xfail).
    known_failure: str | None = None


@dataclass(frozen=True)
class ContaminationMatch(Record):
    """An evaluation example found (exactly or nearly) in a training file."""

    eval_id: str
    train_id: str
    train_file: str
    kind: Literal["exact", "near"]
    overlap: float


@dataclass(frozen=True)
class Contamination(Record):
    """The contamination check of the evaluated sample against the suite's training files."""

    train_files: tuple[str, ...]
    n_eval: int
    exact: int
    near: int
    rate: float
    threshold: float
    ngram: int
    matches: tuple[ContaminationMatch, ...] = ()


@dataclass(frozen=True)
class BaselineChange(Record):
    """One difference between the committed baseline and this run."""

    kind: str
    model: str | None
    metric: str | None
    baseline: Json
    current: Json
    field: str | None = omit_none()


@dataclass(frozen=True)
class BaselineRecord(Record):
    """How this run compared with the suite's committed baseline."""

    path: str
    status: BaselineStatus
    changes: tuple[BaselineChange, ...] = ()
    message: str | None = omit_none()
    #: Models this run evaluated that the baseline does not hold (a CI candidate, a newly added
    #: model): listed, never a change; recorded when accepted with --ftevals-update-baseline.
    not_in_baseline: tuple[str, ...] | None = omit_none()

    @property
    def passed(self) -> bool:
        """False only for "changed": a created baseline is a new file to review and commit."""
        return self.status != "changed"


@dataclass(frozen=True)
class Usage(Record):
    """One model's requests and tokens in one suite; times are apportioned, so volatile."""

    requests: int
    cached: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    wall_s: float | None = None
    tokens_per_s: float | None = None
    latency_p50_s: float | None = None
    latency_p90_s: float | None = None
    latency_p99_s: float | None = None
    #: What the latencies measure: "request" (a server's answer, one request at a time as a user
    #: sees it) or "in-batch" (a local engine's offline batch: first scheduled to last token, so
    #: it grows with the batch and is no serving latency). Absent in older files.
    latency_basis: Literal["request", "in-batch"] | None = omit_none()


@dataclass(frozen=True)
class IntegrityCheck(Record):
    """Whether an adapter was really applied by the engine (integrity.py), checked before scoring.

    `changed_outputs` of `n_prompts` greedy outputs differ from its base model's on the same
    prompts; when none does, `probe` "first-token-logprobs" compares the two models' first-token
    log-probabilities on a few of those prompts (`max_logprob_delta`). `schedule` says how base and
    adapter requests were batched (the batch-invariance half of the check).
    """

    adapter: str
    base: str
    n_prompts: int
    changed_outputs: int
    applied: bool
    probe: str = "outputs"
    max_logprob_delta: float | None = omit_none()
    schedule: str = "one model per engine call"
    seconds: float = 0.0


# ---------------------------------------------------------------------------------------------
# Examples and outputs


@dataclass(frozen=True)
class Output(Record):
    """What one model answered for one example, and its per-example scores (untrusted text)."""

    text: str
    scores: Mapping[str, float | None] = field(default_factory=dict)
    tokens_in: int = 0
    tokens_out: int = 0
    finish_reason: str | None = None


@dataclass(frozen=True)
class ExampleResult(Record):
    """One evaluated example: its prompt, reference, metadata and every model's output."""

    id: str
    input: str
    messages: tuple[Mapping[str, str], ...] = ()
    reference: Json = None
    metadata: Mapping[str, Json] = field(default_factory=dict)
    outputs: Mapping[str, Output] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Human ratings


@dataclass(frozen=True)
class ABOutcome(Record):
    """One production outcome compared between two arms of an A/B test (unpaired: different requests)."""

    outcome: str
    #: "proportion" (a yes/no outcome: two-proportion test) or "score" (a number: Mann-Whitney U).
    kind: str
    higher_is_better: bool
    n_control: int
    n_treatment: int
    control_value: float
    treatment_value: float
    #: treatment - control, with its CI at the run's level (Newcombe for proportions, bootstrap for scores).
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str
    verdict: str


@dataclass(frozen=True)
class ABResult(Record):
    """An online A/B test of the suite's models, beside the offline verdict (abtest.py)."""

    source: str
    control: str
    treatment: str
    outcomes: tuple[ABOutcome, ...]
    alpha: float = 0.05
    #: Rows of the outcome file not used, by reason.
    dropped: Mapping[str, int] = field(default_factory=dict)
    #: The suite's own comparison of the same two models on its primary metric.
    offline_metric: str | None = None
    offline_verdict: str | None = None
    #: "agree", "disagree" or "inconclusive" (one side has no significant change).
    agreement: str | None = None


@dataclass(frozen=True)
class HumanRatings(Record):
    """Ratings merged back from blinded packets (docs/packets.md): scores, preferences, agreement.

    The statistical blocks keep the shape packets/stats.py gives them (documented in
    docs/results-schema.md); their keys vary with the rubric's criteria and the raters.
    """

    schema: Literal["ftevals.human"]
    version: int
    packet_id: str
    part: str
    source_run: str | None
    rubric: Mapping[str, Json]
    reference: str
    models: tuple[str, ...]
    raters: tuple[str, ...]
    n_items: int
    n_ratings: int
    selection: Json = None
    methods: Mapping[str, Json] = field(default_factory=dict)
    scores: Mapping[str, Json] = field(default_factory=dict)
    preferences: Mapping[str, Json] = field(default_factory=dict)
    agreement: Mapping[str, Json] = field(default_factory=dict)
    flags: Mapping[str, Json] = field(default_factory=dict)
    comments: tuple[Mapping[str, Json], ...] = ()
    #: Every unblinded rating: {"rater", "example", "scores": {model: {criterion: int}}, "ranking":
    #: [[model, ...], ...]}. What a judge is calibrated against; absent in files imported before.
    ratings: tuple[Mapping[str, Json], ...] | None = omit_none()


# ---------------------------------------------------------------------------------------------
# A suite and the whole file


@dataclass(frozen=True)
class SuiteResult(Record):
    """Everything one suite produced: inputs, scores, comparisons, gates and every output."""

    name: str
    models: tuple[str, ...]
    metrics: tuple[MetricInfo, ...]
    scores: Mapping[str, Mapping[str, ScoreSummary]]
    examples: tuple[ExampleResult, ...]
    task: str = "custom"
    description: str = ""
    dataset: DatasetInfo | None = None
    sampling: Mapping[str, Json] = field(default_factory=dict)
    #: Per model, how its prompts were rendered ("chat" or "completion"). Per suite, not per model of
    #: the run: a suite's prompt_format can send one model raw text while another suite chats with it.
    #: Absent in files written before completion mode existed, when every model was prompted "chat".
    prompt_formats: Mapping[str, PromptFormat] | None = omit_none()
    reference: str = "base"
    fewshot: FewShotInfo | None = None
    metric_params: Mapping[str, Mapping[str, Json]] = field(default_factory=dict)
    #: Per model, per metric: the metric's JSON breakdown (confusion matrix, error kinds, ...).
    details: Mapping[str, Mapping[str, Json]] = field(default_factory=dict)
    comparisons: tuple[Comparison, ...] = ()
    prompting: PromptingResult | None = None
    forgetting: ForgettingResult | None = None
    gates: tuple[GateOutcome, ...] = ()
    contamination: Contamination | None = None
    baseline: BaselineRecord | None = None
    usage: Mapping[str, Usage] = field(default_factory=dict)
    #: The suite's own rubric for human raters (a dict, a packaged rubric name, or null).
    rubric: Json = None
    human: HumanRatings | None = None
    #: Production A/B outcomes of two of the suite's models (ftevals ab), when imported.
    ab: ABResult | None = omit_none()
    #: The LLM judge's verdicts on the suite's rubric (Suite(judge=...)), when the suite has a judge.
    judge: JudgeResult | None = omit_none()
    #: Models compared with a reference on another base model (an explicit `reference=`): their
    #: verdicts say "different base".
    different_base: tuple[str, ...] | None = omit_none()
    #: Per non-reference model: promote / hold / insufficient evidence, with the reasons (decision.py).
    decisions: tuple[Decision, ...] | None = omit_none()
    #: Models of the suite that could not be generated or scored, with the cause: their gates fail,
    #: every other model is scored as usual (one model's fault costs only that model).
    failures: Mapping[str, str] | None = omit_none()

    # The file's key order (the pipeline has always written name, task, ... human).
    __json_keys__ = ("name", "task", "description", "dataset", "sampling", "prompt_formats", "reference", "models",
                     "different_base", "decisions", "failures", "fewshot", "metric_params", "metrics", "scores", "details", "comparisons", "prompting", "forgetting",
                     "gates", "contamination", "baseline", "usage", "examples", "rubric", "human")

    @property
    def primary_metric(self) -> MetricInfo | None:
        return next((m for m in self.metrics if m.primary), self.metrics[0] if self.metrics else None)

    def metric(self, name: str) -> MetricInfo | None:
        return next((m for m in self.metrics if m.name == name), None)

    def prompt_format(self, model: str) -> str:
        """How the model's prompts were rendered in this suite ("chat" for files that do not say)."""
        return (self.prompt_formats or {}).get(model, "chat")

    def score(self, model: str, metric: str) -> ScoreSummary | None:
        return self.scores.get(model, {}).get(metric)

    def comparison(self, model: str, metric: str) -> Comparison | None:
        return next((c for c in self.comparisons if c.model == model and c.metric == metric), None)

    def example(self, example_id: str) -> ExampleResult | None:
        return next((e for e in self.examples if e.id == example_id), None)


@dataclass(frozen=True)
class Results(Record):
    """A whole results file: the run, the models it served and every suite, in collection order."""

    run: RunInfo
    models: Mapping[str, ModelInfo]
    suites: tuple[SuiteResult, ...]
    schema: Literal["ftevals.results"] = SCHEMA
    schema_version: int = SCHEMA_VERSION
    #: Adapter name -> the engine-integrity check of that adapter (absent for backends that serve
    #: no local adapter: replay, openai).
    integrity: Mapping[str, IntegrityCheck] | None = omit_none()
    #: Per model across every suite it was judged in (decision.py): what a promotion check reads first.
    decisions: tuple[Decision, ...] | None = omit_none()

    __json_keys__ = ("schema", "schema_version", "run", "decisions", "models", "integrity", "suites")

    def suite(self, name: str) -> SuiteResult | None:
        return next((s for s in self.suites if s.name == name), None)


# At the end: judge_records builds on the records above (Record, ScoreSummary, Comparison), and
# SuiteResult's `judge` annotation is resolved by name when the codec first reads the hints.
from .judge_records import *  # noqa: E402,F403
from .judge_records import __all__ as _judge_all  # noqa: E402
from .decision_records import *  # noqa: E402,F403
from .decision_records import __all__ as _decision_all  # noqa: E402


def undefined(x: float | None) -> bool:
    """True for None and NaN: a number the results file stores as null."""
    return x is None or (isinstance(x, float) and math.isnan(x))


__all__ = [
    "ABOutcome", "ABResult", "BackendInfo", "BaselineChange", "BaselineRecord", "BaselineStatus", "Comparison", "Contamination",
    "ContaminationMatch", "DatasetInfo", "ExampleDelta", "ExampleResult", "FewShotInfo", "ForgettingModel",
    "ForgettingResult", "GateOutcome", "GitInfo", "HumanRatings", "IntegrityCheck", "MetricInfo", "ModelInfo", "Output",
    "PromptFormat", "PromptingResult", "Record", "Results", "RunInfo", "SCHEMA", "SCHEMA_VERSION", "ScoreSummary", "SuiteResult",
    "TestName", "Usage", "Verdict", "undefined", *_judge_all, *_decision_all,
]
