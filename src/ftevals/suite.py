"""`Suite`: what a suite file declares. The pytest plugin collects every `Suite` in `suites/*.py`.

A suite is data: which dataset, which models, which metrics, which gates. The plugin turns each
gate into one pytest test; generation for all collected suites runs together through one engine
per base model. A suite file reads like this::

    from ftevals import FewShot, Suite

    banking77 = Suite(
        name="banking77",
        task="classification",
        dataset="../data/banking77/test.jsonl",
        labels="../data/banking77/labels.json",
        models=["base", "banking77"],
        fewshot=FewShot(k=8, pool="../data/banking77/train.jsonl"),
        gates=["accuracy > base significantly", "macro_f1 >= 0.30"],
    )

Relative paths are resolved against the folder of the suite file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from .errors import ConfigError, FtevalsError
from .prompts import PromptFormatChoice, check_prompt_format
from .specs import DEFAULT_BASE, ModelSpec, SamplingSpec, check_name

if TYPE_CHECKING:  # pragma: no cover
    from .gate import Gate

Task = Literal["classification", "generation", "extraction", "forgetting", "custom"]

#: Metrics a task gets when the suite names none. The first one is the primary metric.
DEFAULT_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "macro_f1"),
    "generation": ("rougeL", "rouge1", "rouge2"),
    "extraction": ("field_f1", "json_valid", "schema_valid", "field_exact"),
    "forgetting": ("accuracy",),
    "custom": ("exact_match",),
}

#: Suite-level values that gates may name besides metrics: one test per suite, not per model.
SUITE_VALUES = ("contamination",)
#: Per-model values that are not metrics: `integrity`, the share of an adapter's greedy outputs in
#: the run that differ from its base model's (integrity.py), for gates such as "integrity >= 0.2".
MODEL_VALUES = ("integrity",)


@dataclass(frozen=True)
class FewShot:
    """The prompting baseline: the reference model prompted with `k` solved examples.

    Shots come from `pool` (a training file), never from the evaluation set: the suite refuses a
    pool that is the evaluation file, and drops any shot whose input also appears in the eval set.
    """

    k: int = 8
    pool: str = ""
    name: str | None = None
    seed: int = 0
    #: Prefer shots with distinct labels (classification), so k shots show k classes.
    distinct_labels: bool = True

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ConfigError(f"FewShot.k must be >= 1, got {self.k}")
        if not self.pool:
            raise ConfigError("FewShot.pool must name a training file to draw shots from")

    def model_name(self, reference: str) -> str:
        return self.name or f"{reference}-fewshot{self.k}"

    def contender(self, reference: ModelSpec) -> ModelSpec:
        """The contender's spec: the reference model, prompted with `k` shots."""
        return ModelSpec(self.model_name(reference.name), reference.base, reference.adapter, self.k, reference.backend)


#: Agreement floor a judge criterion must reach against the human raters before a judge gate may
#: decide anything (docs/judge.md): Krippendorff's alpha (ordinal, judge vs the raters' consensus)
#: of at least 0.67, Krippendorff's own lowest bar for tentative conclusions, on at least 30 items,
#: below which alpha's interval is too wide to tell 0.5 from 0.8.
JUDGE_MIN_ALPHA = 0.67
JUDGE_MIN_ITEMS = 30


@dataclass(frozen=True)
class Judge:
    """An LLM judge on the suite's own rubric (ftevals/judge/, docs/judge.md).

    `model` is a name from the model table (the embedded base, a local adapter, `openai:ID`).
    "pointwise" scores every output on every rubric criterion; "pairwise" asks, blinded and in both
    orders, whether a model's output beats the reference model's; "both" does both. A judge gate
    (`judge:helpfulness >= base`, `judge_win_rate > 0.5`) is refused until a calibration file shows
    the judge agrees with the human raters on that criterion: alpha >= `min_alpha` on >= `min_items`.
    """

    model: str
    mode: Literal["pointwise", "pairwise", "both"] = "both"
    #: Tokens a verdict may take: a number or a letter, with room for a weak judge's preamble.
    max_tokens: int = 16
    #: Ask once more, with a stricter reminder, when a verdict cannot be read (never guessed).
    retry: bool = True
    min_alpha: float = JUDGE_MIN_ALPHA
    min_items: int = JUDGE_MIN_ITEMS
    #: The calibration file; default `baselines/<suite>.judge-calibration.json` beside the suite file.
    calibration: str | None = None

    def __post_init__(self) -> None:
        check_name("judge model", self.model)
        if self.mode not in ("pointwise", "pairwise", "both"):
            raise ConfigError(f"judge {self.model!r}: mode must be 'pointwise', 'pairwise' or 'both', got {self.mode!r}")
        if self.max_tokens < 1:
            raise ConfigError(f"judge {self.model!r}: max_tokens must be >= 1, got {self.max_tokens}")
        if not -1.0 <= self.min_alpha <= 1.0:
            raise ConfigError(f"judge {self.model!r}: min_alpha must be in [-1, 1], got {self.min_alpha}")
        if self.min_items < 2:
            raise ConfigError(f"judge {self.model!r}: min_items must be >= 2 (agreement needs pairs), got {self.min_items}")

    @property
    def pointwise(self) -> bool:
        return self.mode in ("pointwise", "both")

    @property
    def pairwise(self) -> bool:
        return self.mode in ("pairwise", "both")


@dataclass(frozen=True)
class TrainFile:
    """A fine-tuning file for the contamination check whose layout differs from the dataset's.

    A plain path in `Suite.train_files` is read with the suite's `columns`, the way the evaluation
    file is; `TrainFile(path, columns={...})` gives the file its own CSV column mapping ({} for the
    default `prompt`/`reference` columns). Columns map a CSV header only: JSONL rows name their
    fields themselves, so a JSONL file needs no TrainFile.
    """

    path: str
    #: {field: column} for prompt, reference, id and label (as `Suite.columns`); None = the suite's.
    columns: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.path, os.PathLike):
            object.__setattr__(self, "path", os.fspath(self.path))
        if not isinstance(self.path, str) or not self.path.strip():
            raise ConfigError(f"TrainFile path must be a file path, got {self.path!r}")
        if self.columns is not None:
            object.__setattr__(self, "columns", _checked_columns(self.path, self.columns))


def _checked_columns(path: str, columns: Any) -> dict[str, str]:
    """A TrainFile's column mapping, checked where it is written rather than when the file is read."""
    from .data_csv import CSV_FIELDS

    where = f"TrainFile({path!r})"
    if not isinstance(columns, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in columns.items()):
        raise ConfigError(f"{where}: columns must map field names to CSV column names, e.g. "
                          f"{{'prompt': 'text', 'reference': 'category'}}, got {columns!r}")
    unknown = sorted(set(columns) - set(CSV_FIELDS))
    if unknown:
        raise ConfigError(f"{where}: unknown column mapping key(s) {', '.join(map(repr, unknown))}; expected some "
                          f"of {', '.join(CSV_FIELDS)} (e.g. columns={{'prompt': 'text', 'reference': 'category'}})")
    if columns and Path(path).suffix.lower() != ".csv":
        # The loader ignores a mapping for JSONL; silently ignoring the user's would hide a mistake.
        raise ConfigError(f"{where}: columns map a CSV header, but {path} is read as JSONL (its rows name their "
                          "fields: prompt/reference or messages); drop columns, or give a .csv file")
    return dict(columns)


def _train_file_entry(suite: str, entry: Any) -> str | TrainFile:
    """A `train_files` entry as given (a path string or a TrainFile); a Path becomes its string."""
    if isinstance(entry, os.PathLike):
        entry = os.fspath(entry)
    if isinstance(entry, TrainFile) or (isinstance(entry, str) and entry.strip()):
        return entry
    raise ConfigError(f"suite {suite!r}: train_files entry {entry!r} is neither a file path nor a TrainFile; "
                      "give paths, or TrainFile(path, columns={...}) for a file of another layout")


@dataclass(frozen=True)
class Suite:
    name: str
    dataset: str
    task: Task = "custom"
    description: str = ""
    #: Model names from the model table (pyproject `ftevals_models`, `--ftevals-model`); empty = all.
    #: The run's candidates join a suite that lists its models too (see `candidates`).
    models: tuple[str, ...] = ()
    #: The model every other model is compared with. None (the default): the suite's model that is
    #: the common base of its adapters (`base` when listed); see `resolve_reference`.
    reference: str | None = None
    metrics: tuple[str, ...] = ()
    metric_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    gates: tuple[str, ...] = ()
    #: Known failures, documented: {"MODEL: GATE" or "GATE": reason}. Those gate tests are marked
    #: xfail(strict=True): they are reported as expected failures, and one that starts passing
    #: fails the run, so the entry gets removed once the regression is fixed.
    known_failures: Mapping[str, str] = field(default_factory=dict)
    #: Which models unqualified gates apply to: "adapters" (default) or "all" non-reference models.
    gate_models: Literal["adapters", "all"] = "adapters"
    sampling: SamplingSpec = field(default_factory=SamplingSpec)
    limit: int | None = None
    seed: int = 0
    labels: str | Sequence[str] | None = None
    #: CSV column mapping {field: column} for prompt, reference, id and label, e.g.
    #: {"prompt": "text", "reference": "category"} (data.py); applies to the few-shot pool too.
    columns: Mapping[str, str] | None = None
    #: A system prompt put before every row's question (CSV rows and prompt/reference JSONL rows).
    system_prompt: str | None = None
    #: The user turn as a `str.format` template over the row's fields, e.g. "Message: {text}\nIntent:"
    #: (CSV: columns by header; JSONL: top-level and metadata fields; both: {prompt}/{input}, and
    #: {labels} for a suite with labels). Applies to the few-shot pool too; see docs/suites.md.
    prompt_template: str | None = None
    #: "auto": chat when the model's tokenizer has a chat template, else completion (raw text, for
    #: base models); "chat" refuses a model without a template; "completion" always sends raw text.
    prompt_format: PromptFormatChoice = "auto"
    fewshot: FewShot | None = None
    #: Fine-tuning files to check for contamination against the eval set (exact + near duplicates):
    #: paths, read like the dataset (its `columns`, as written: no prompt template), or `TrainFile`s
    #: with a column mapping of their own for a file of another layout.
    train_files: tuple[str | TrainFile, ...] = ()
    #: Rubric for human raters (see docs/packets.md); None = the task's default rubric.
    rubric: Mapping[str, Any] | None = None
    #: Whether the run's candidates (models added with --ftevals-model, or ini ftevals_candidates)
    #: join this suite when they share its reference's base model. False: only `models` run here.
    candidates: bool = True
    #: How the suite's significance calls (every contender x metric) are adjusted together:
    #: "holm" (default), "bonferroni" or "none" (see ftevals/multiplicity.py, docs/gates.md).
    multiplicity: Literal["holm", "bonferroni", "none"] = "holm"
    #: An LLM judge on this suite's rubric: a model name (shorthand for `Judge(model=NAME)`) or a
    #: `Judge`; None = no judge. Its gates are refused until calibrated (docs/judge.md).
    judge: Judge | str | None = None
    #: Folder against which relative paths resolve; set by the plugin from the suite file.
    root: str = ""

    def __post_init__(self) -> None:
        check_name("suite", self.name)
        for attr in ("models", "metrics", "gates"):
            value = getattr(self, attr)
            if isinstance(value, str):
                object.__setattr__(self, attr, (value,))
            else:
                object.__setattr__(self, attr, tuple(value))
        files = self.train_files
        files = (files,) if isinstance(files, (str, os.PathLike, TrainFile)) else tuple(files)
        object.__setattr__(self, "train_files", tuple(_train_file_entry(self.name, f) for f in files))
        if self.task not in DEFAULT_METRICS:
            raise ConfigError(f"suite {self.name!r}: unknown task {self.task!r}; expected one of {', '.join(DEFAULT_METRICS)}")
        if self.multiplicity not in ("holm", "bonferroni", "none"):
            raise ConfigError(f"suite {self.name!r}: multiplicity must be 'holm', 'bonferroni' or 'none', "
                              f"got {self.multiplicity!r}")
        check_prompt_format(self.prompt_format, f"suite {self.name!r}")
        if isinstance(self.judge, str):
            object.__setattr__(self, "judge", Judge(model=self.judge))
        elif self.judge is not None and not isinstance(self.judge, Judge):
            raise ConfigError(f"suite {self.name!r}: judge must be a model name or a Judge, got {type(self.judge).__name__}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"suite {self.name!r}: limit must be >= 1, got {self.limit}")
        if self.reference is not None:
            check_name("reference model", self.reference)
        if self.reference is not None and self.reference in self.models[1:] and self.models[0] != self.reference:
            # Keep the reference first so tables read base-first.
            object.__setattr__(self, "models", (self.reference, *[m for m in self.models if m != self.reference]))

    # -- resolved views -----------------------------------------------------------------------

    @property
    def reference_name(self) -> str:
        """The reference model's name, once resolved (`resolve_reference`); stages after collection
        only see resolved suites, so an unresolved one here is a bug of the caller."""
        if self.reference is None:
            raise ConfigError(f"suite {self.name!r}: the reference model is not resolved yet "
                              "(ftevals.suite.resolve_reference)")
        return self.reference

    @property
    def metric_names(self) -> tuple[str, ...]:
        return self.metrics or DEFAULT_METRICS[self.task]

    @property
    def primary_metric(self) -> str:
        return self.metric_names[0]

    def path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() or not self.root else (Path(self.root) / p)

    def training_files(self) -> tuple[TrainFile, ...]:
        """Every `train_files` entry as a TrainFile (a path given alone has columns None)."""
        return tuple(f if isinstance(f, TrainFile) else TrainFile(f) for f in self.train_files)

    def train_columns(self, train_file: TrainFile) -> Mapping[str, str] | None:
        """The CSV column mapping a training file is read with: its own, else the dataset's."""
        return train_file.columns if train_file.columns is not None else self.columns

    def label_set(self) -> list[str] | None:
        if self.labels is None:
            return None
        if isinstance(self.labels, str):
            path = self.path(self.labels)
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ConfigError(f"suite {self.name!r}: cannot read labels file {path}: {exc}") from None
            if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
                raise ConfigError(f"suite {self.name!r}: {path} must hold a JSON list of label strings")
            return data
        return [str(x) for x in self.labels]

    @property
    def judge_config(self) -> Judge | None:
        """The judge, typed (`judge` is normalised to a `Judge` when the suite is built)."""
        return self.judge if isinstance(self.judge, Judge) else None

    def judge_calibration_path(self) -> Path | None:
        judge = self.judge_config
        if judge is None:
            return None
        return self.path(judge.calibration or f"baselines/{self.name}.judge-calibration.json")

    def with_root(self, root: str | Path) -> Suite:
        return replace(self, root=str(root))


def suite_model_names(suite: Suite, table: Mapping[str, ModelSpec], candidates: Sequence[str] = ()) -> list[str]:
    """The models a suite evaluates, reference first: the one rule, used at collection and preparation.

    The suite's `models` (when it lists none: every model of the table that runs on the reference's
    base model, or is served elsewhere), plus each candidate that shares the reference's base model
    (an adapter of the same base, or the same base prompted differently) or is served elsewhere
    (`openai:MODEL_ID`: a managed fine-tune, whose base cannot be seen), unless the suite opts out
    with `candidates=False`. Names missing from the table are kept: preparation refuses them by name.
    An unresolved reference (see `resolve_reference`) is resolved here, or left out when it cannot be.
    """
    try:
        ref_name: str | None = resolve_reference(suite, table).reference
    except ConfigError:
        ref_name = suite.reference  # preparation reports why; collection only needs a best guess
    reference = table.get(ref_name) if ref_name is not None else None
    if suite.models:
        wanted = list(suite.models)
    elif reference is not None:
        wanted = [n for n, spec in table.items() if same_base(spec, reference) or spec.served_elsewhere]
    else:
        wanted = list(table)
    if ref_name is not None and ref_name not in wanted:
        wanted.insert(0, ref_name)
    if suite.candidates and reference is not None:
        wanted += [c for c in candidates if c not in wanted and c in table
                   and (same_base(table[c], reference) or table[c].served_elsewhere)]
    if ref_name is None:
        return wanted
    return [ref_name] + [m for m in wanted if m != ref_name]


def resolve_reference(suite: Suite, table: Mapping[str, ModelSpec]) -> Suite:
    """The suite with its reference model named: the one rule for which model every other is compared with.

    An explicit `reference=` is kept as written, even when its base differs from an adapter's (the
    summary then says "different base" beside that model's verdict). Otherwise the reference is the
    suite's plain model (no adapter, no few-shot, served locally) that is the base of every adapter
    the suite lists; when several are, `base` if the suite lists it. Nothing is ever inserted that
    the suite did not name: no such model, or more than one, is a ConfigError naming the fix.
    A suite with no `models` chooses among every model of the table the same way.
    """
    if suite.reference is not None:
        return suite
    names = list(suite.models) or list(table)
    specs = [table[n] for n in names if n in table]
    adapters = [s for s in specs if s.adapter is not None and not s.served_elsewhere]
    plain = [s for s in specs if s.adapter is None and s.fewshot == 0 and not s.served_elsewhere]
    fits = [p for p in plain if all(same_base(a, p) for a in adapters)]
    if len(fits) > 1 and "base" in suite.models and any(p.name == "base" for p in fits):
        fits = [p for p in fits if p.name == "base"]
    if len(fits) == 1:
        return replace(suite, reference=fits[0].name)
    where = f"suite {suite.name!r}"
    listed = ", ".join(names) or "none"
    if not fits:
        bases = sorted({a.base for a in adapters})
        if not plain:
            why = (f"none of its models ({listed}) is a base model without an adapter, so none can be the "
                   f"reference; its adapters run on {', '.join(bases) or 'no local base'}")
        else:
            why = (f"no model it lists is the common base of its adapters (adapters on {', '.join(bases)}; "
                   f"base models listed: {', '.join(p.name + ' = ' + p.base for p in plain)})")
        hint = next((n for n, s in table.items() if s.adapter is None and s.fewshot == 0 and not s.served_elsewhere
                     and adapters and all(same_base(a, s) for a in adapters)), None)
        fix = (f"add {hint!r} to the suite's models or set reference={hint!r}" if hint is not None
               else "add the adapters' base model to the model table and the suite's models, or set reference=NAME")
        raise ConfigError(f"{where}: cannot choose a reference model: {why}. Fix: {fix}")
    raise ConfigError(
        f"{where}: cannot choose a reference model: {', '.join(p.name for p in fits)} could each be the reference "
        f"(models: {listed}). Fix: set reference=NAME on the suite")


def same_base(a: ModelSpec, b: ModelSpec) -> bool:
    """Whether two specs run on the same base weights (folders compared after resolving links)."""
    def where(base: str) -> str:
        return base if base == DEFAULT_BASE else os.path.realpath(base)

    return where(a.base) == where(b.base)


def unused_candidates(suites: Sequence[Suite], table: Mapping[str, ModelSpec], candidates: Sequence[str]) -> list[str]:
    """Candidates that join none of `suites`: a CI job's adapter that would silently not run."""
    used = {m for s in suites for m in suite_model_names(s, table, candidates)}
    return [c for c in candidates if c not in used]


def gated_model_names(suite: Suite, models: Sequence[Any]) -> list[str]:
    """The models an unqualified gate of `suite` applies to, given the suite's ModelSpecs.

    "adapters": every adapter that is not a few-shot contender (falling back to every
    non-reference model when the suite has no adapter); "all": every non-reference model.
    """
    reference = _reference_among(suite, models)
    others = [m for m in models if m.name != reference]
    if suite.gate_models == "adapters":
        # A managed fine-tune (served elsewhere) is gated like an adapter: it is one, behind an API.
        adapters = [m for m in others if (m.adapter is not None or m.served_elsewhere) and m.fewshot == 0]
        return [m.name for m in (adapters or others)]
    return [m.name for m in others]


def _reference_among(suite: Suite, models: Sequence[Any]) -> str | None:
    """The suite's reference, resolved among the given ModelSpecs when the suite leaves it implicit."""
    if suite.reference is not None:
        return suite.reference
    try:
        return resolve_reference(suite, {m.name: m for m in models}).reference
    except ConfigError:
        return None


class GateTarget(NamedTuple):
    """One gate test: the model it checks (None: a suite-level value), its label (`gate[LABEL]` in
    the test id, the key of `known_failures`) and the gate as the suite wrote it."""

    model: str | None
    label: str
    source: str


def gate_targets(suite: Suite, models: Sequence[Any], gate: Gate) -> list[GateTarget]:
    """The tests one parsed gate of `suite` becomes, given the suite's ModelSpecs.

    The one rule for which models a gate checks and what its tests are called, shared by the
    plugin (one test item per target, at collection) and the pipeline (one gate result per
    target, and the known-failure labels): a suite-level value (`contamination`) or a gate that
    names its model is one test labelled with the gate's text; any other gate is one test per
    gated model (`gated_model_names`), labelled `MODEL: GATE`.
    """
    if gate.metric in SUITE_VALUES:
        return [GateTarget(None, gate.text, gate.text)]
    if gate.model is not None:
        return [GateTarget(gate.model, gate.text, gate.text)]
    if gate.metric in MODEL_VALUES:  # only adapters on a local engine or a server have an integrity check
        reference = _reference_among(suite, models)
        checked = [m.name for m in models if m.name != reference and m.adapter is not None and m.fewshot == 0]
        return [GateTarget(m, f"{m}: {gate.text}", gate.text) for m in checked]
    return [GateTarget(m, f"{m}: {gate.text}", gate.text) for m in gated_model_names(suite, models)]


def known_failure(suite: Suite, target: GateTarget) -> str | None:
    """The documented reason a gate test is expected to fail, if any: `known_failures` may name
    the test (`"tuned: accuracy >= 0.7"`) or the gate for every model it checks."""
    return suite.known_failures.get(target.label, suite.known_failures.get(target.source))


def check_known_failures(suite: Suite, targets: Sequence[GateTarget]) -> None:
    """Refuse a `known_failures` key that matches no gate test (a typo would silently xfail nothing)."""
    labels = [t.label for t in targets]
    stale = [k for k in suite.known_failures if k not in labels and k not in suite.gates]
    if stale:
        raise ConfigError(
            f"suite {suite.name!r}: known_failures names {', '.join(map(repr, stale))}, which matches no gate "
            f"test; expected one of: {', '.join(map(repr, labels))}"
        )


def collection_targets(suite: Suite, text: str, table: Mapping[str, ModelSpec],
                       candidates: Sequence[str] = ()) -> list[GateTarget]:
    """`gate_targets` before preparation, from the model table: the plugin's test items for one gate.

    Items must exist at collection time (for -k, --co and xdist scheduling). A gate that does not
    parse, or a suite naming unknown models, gets one item here (model None): preparation then
    stops the run with a usage error that says why. A gate left with no model to check also gets
    one, which fails as not evaluated.
    """
    from .gate import parse_gate  # lazily: it imports numpy, and suite files import this module

    try:
        gate = parse_gate(text)
    except FtevalsError:
        return [GateTarget(None, text, text)]
    try:
        suite = resolve_reference(suite, table)
    except ConfigError:
        return [GateTarget(None, text, text)]  # preparation stops the run with the reason
    specs = [table[n] for n in suite_model_names(suite, table, candidates) if n in table]
    if suite.fewshot is not None and suite.reference in table:
        specs.append(suite.fewshot.contender(table[suite.reference_name]))
    return gate_targets(suite, specs, gate) or [GateTarget(None, text, text)]


__all__ = [
    "DEFAULT_METRICS",
    "MODEL_VALUES",
    "SUITE_VALUES",
    "FewShot",
    "GateTarget",
    "JUDGE_MIN_ALPHA",
    "JUDGE_MIN_ITEMS",
    "Judge",
    "Suite",
    "Task",
    "TrainFile",
    "check_known_failures",
    "collection_targets",
    "gate_targets",
    "gated_model_names",
    "known_failure",
    "resolve_reference",
    "same_base",
    "suite_model_names",
    "unused_candidates",
]
