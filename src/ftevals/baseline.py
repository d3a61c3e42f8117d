"""Record-then-compare baselines: a committed JSON file per suite holding the numbers a run produced.

The first run writes the file ("created"). Later runs compare against it: equal within tolerance
is "matched"; anything else is "changed", with a message that lists every difference and ends with
the command that accepts them; with `update=True` the file is rewritten ("updated").

The file holds, per model and metric, the value, its 95% CI and n, plus the dataset fingerprint
and each model's base/adapter fingerprints, so that a changed number can be traced to a changed
dataset or adapter. It is written deterministically (sorted keys, two-space indent, floats in
Python's shortest round-trip form, no timestamps) so that it diffs cleanly in git, and an update
keeps the stored entry of every value that did not change, so the diff shows only real changes.

Tolerance: by default a value has changed when it differs by more than 1e-9 in absolute terms.
That suits greedy decoding, where reruns on the same software are bit-identical, while ignoring
float summation noise. Sampled runs (or runs across hardware) can pass a larger `tolerance`, or
`use_ci=True` to accept any stored value that lies inside the current run's confidence interval.
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .results import BaselineChange, BaselineRecord, ModelInfo, Results, ScoreSummary, SuiteResult
from .errors import ConfigError, ResultsError
from .fsutil import atomic_write_text
from .settings import UPDATE_FLAG

if TYPE_CHECKING:  # pragma: no cover
    from .pipeline import PreparedSuite

BaselineStatus = Literal["created", "matched", "changed", "updated"]
ChangeKind = Literal["value", "added", "removed", "fingerprint"]

SCHEMA = "ftevals.baseline"
SCHEMA_VERSION = 1
DEFAULT_TOLERANCE = 1e-9
DEFAULT_ACCEPT_COMMAND = f"pytest suites/ {UPDATE_FLAG}"


@dataclass(frozen=True)
class ModelRecord:
    """One model in a baseline: its fingerprints ({"base": ..., "adapter": ...}) and metric -> score."""

    fingerprints: Mapping[str, str | None] = field(default_factory=dict)
    scores: Mapping[str, ScoreSummary] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    """What a run produced for one suite, in the shape of a baseline file."""

    suite: str
    dataset_fingerprint: str | None
    models: Mapping[str, ModelRecord]
    #: What the numbers were computed on: {"backend", "dtype", "hardware"} (None: not recorded,
    #: as in baselines written before ftevals recorded it). Exact comparison needs equal ones.
    environment: Mapping[str, str | None] | None = None

    @property
    def n_values(self) -> int:
        return sum(len(m.scores) for m in self.models.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "suite": self.suite,
            **({"environment": dict(self.environment)} if self.environment is not None else {}),
            "dataset_fingerprint": self.dataset_fingerprint,
            "models": {
                name: {
                    "fingerprints": dict(rec.fingerprints),
                    "metrics": {metric: s.to_dict() for metric, s in rec.scores.items()},
                }
                for name, rec in self.models.items()
            },
        }

    def to_json(self) -> str:
        """The file's text: byte-identical for equal snapshots, whatever the insertion order."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any, *, path: str = "<baseline>") -> Snapshot:
        """Read a baseline file's content; ResultsError names what is wrong."""
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise ResultsError(f"{path}: not an ftevals baseline file (expected \"schema\": \"{SCHEMA}\")")
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ResultsError(
                f"{path}: baseline schema_version {data.get('schema_version')!r} is not supported "
                f"(this ftevals reads {SCHEMA_VERSION}); rewrite it with --ftevals-update-baseline"
            )
        try:
            models = {
                str(name): ModelRecord(
                    {str(k): (None if v is None else str(v)) for k, v in (rec.get("fingerprints") or {}).items()},
                    {str(metric): ScoreSummary.from_dict(s) for metric, s in (rec.get("metrics") or {}).items()},
                )
                for name, rec in data["models"].items()
            }
            fp = data.get("dataset_fingerprint")
            env = data.get("environment")
            environment = None if env is None else {str(k): (None if v is None else str(v)) for k, v in env.items()}
            return cls(str(data["suite"]), None if fp is None else str(fp), models, environment)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ResultsError(f"{path}: malformed baseline file ({type(exc).__name__}: {exc}); "
                               "fix it or rewrite it with --ftevals-update-baseline") from None

    @classmethod
    def from_results(cls, results: Results, suite: str) -> Snapshot:
        """Build the snapshot of one suite of a whole results record."""
        entry = results.suite(suite)
        if entry is None:
            raise ResultsError(f"the results have no suite named {suite!r}")
        return cls.from_suite(entry, results.models, environment_of(results))

    @classmethod
    def from_suite(cls, entry: SuiteResult, models: Mapping[str, ModelInfo] | None = None,
                   environment: Mapping[str, str | None] | None = None) -> Snapshot:
        """Build a snapshot from one suite's results.

        Model fingerprints live in the results' top-level `models`: pass them as `models`; without
        them the baseline records no model fingerprints (only the dataset's).
        """
        n = entry.dataset.n_examples if entry.dataset else None
        records: dict[str, ModelRecord] = {}
        for name in entry.models:
            fingerprints: dict[str, str | None] = {}
            info = (models or {}).get(name)
            if models is not None:
                fingerprints = {"base": info.base_fingerprint if info else None,
                                "adapter": info.adapter_fingerprint if info else None}
            scores = {metric: replace(s, n=n) for metric, s in entry.scores.get(name, {}).items()}
            records[name] = ModelRecord(fingerprints, scores)
        return cls(entry.name, entry.dataset.fingerprint if entry.dataset else None, records, environment)


def environment_of(results: Results) -> dict[str, str | None]:
    """The backend, dtype, hardware class and adapter-serving strategy a run's numbers were computed
    with: merged weights and LoRA requests round differently, like two dtypes."""
    backend = results.run.backend
    settings = backend.settings if backend is not None else {}
    env = {"backend": backend.name if backend is not None else None,
           "dtype": None if settings.get("dtype") is None else str(settings["dtype"]), "hardware": results.run.hardware}
    if settings.get("strategy") is not None:
        env["strategy"] = str(settings["strategy"])
    return env


def describe_environment(env: Mapping[str, str | None] | None) -> str:
    if not env:
        return "an unrecorded dtype and hardware"
    strategy = f", adapters {env['strategy']}" if env.get("strategy") else ""
    return f"{env.get('dtype') or '?'} on {env.get('hardware') or '?'} ({env.get('backend') or '?'}{strategy})"


def describe_change(change: BaselineChange) -> str:
    """One line for the failure message, e.g. `banking77 accuracy: 0.4 -> 0.41 (+0.01)`.

    kind "value": a metric's value moved beyond tolerance; "added"/"removed": a model or metric
    (metric None for a whole model) exists only in this run / only in the baseline;
    "fingerprint": `field` ("dataset", "base", "adapter", "suite") names what changed.
    """
    c = change
    if c.kind == "fingerprint":
        what = f"{c.model} {c.field} fingerprint" if c.model else f"{c.field} fingerprint"
        if c.field == "suite":
            what = "suite name"
        return f"{what}: {c.baseline} -> {c.current}"
    who = " ".join(x for x in (c.model, c.metric) if x)
    if c.kind == "added":
        return f"{who}: new (now {_value(c.current)})" if c.metric else f"{who}: new model"
    if c.kind == "removed":
        return f"{who}: missing from this run (was {_value(c.baseline)})" if c.metric \
            else f"{who}: model missing from this run"
    delta = ""
    if _finite(c.baseline) and _finite(c.current):
        delta = f" ({c.current - c.baseline:+.3g})"  # type: ignore[operator]
    return f"{who}: {_value(c.baseline)} -> {_value(c.current)}{delta}"


def _change(kind: ChangeKind, model: str | None, metric: str | None, baseline: Any, current: Any,
            field: str | None = None) -> BaselineChange:
    return BaselineChange(kind, model, metric, _plain(baseline), _plain(current), field)


def check_baseline(
    path: str | Path,
    current: Snapshot | SuiteResult,
    *,
    models: Mapping[str, ModelInfo] | None = None,
    environment: Mapping[str, str | None] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    use_ci: bool | None = None,
    update: bool = False,
    accept_command: str = DEFAULT_ACCEPT_COMMAND,
) -> BaselineRecord:
    """Compare `current` with the baseline at `path`, writing the file when missing or when `update`.

    `current` is a Snapshot or a suite's results; for the latter pass the results' `models` (model
    fingerprints) and `environment` (`environment_of(results)`) so that both are recorded.

    A value has changed when |current - baseline| > tolerance; with `use_ci` it has changed only
    when the baseline value is also outside the current run's CI (widened by tolerance). Undefined
    values (null) equal each other and differ from any number. `use_ci=None` (the default) decides
    per file: exact when the baseline was recorded with this run's backend, dtype and hardware
    class, within the CI otherwise (greedy outputs differ at near-ties across them). The outcome's
    message says which comparison applied.
    """
    if not isinstance(current, Snapshot):
        current = Snapshot.from_suite(current, models, environment)
    path = Path(path)
    shown = str(path)
    if not path.exists():
        atomic_write_text(path, current.to_json())
        return BaselineRecord(shown, "created", (), (
            f"baseline {shown} did not exist; wrote it with {current.n_values} values for "
            f"{len(current.models)} models: review and commit it"))
    try:
        stored = read_baseline(path)
    except ResultsError as exc:
        if not update:
            raise
        atomic_write_text(path, current.to_json())
        return BaselineRecord(shown, "updated", (), f"baseline {shown} was unreadable ({exc}); rewrote it")

    within_ci, how = comparison_mode(stored, current, use_ci)
    changes = diff_snapshots(stored, current, tolerance=tolerance, use_ci=within_ci)
    # A model the baseline does not hold (a CI job's candidate, a newly added model) has nothing to
    # be compared with: it is listed, not a change, so that adding a candidate cannot fail the run.
    new_models = tuple(c.model for c in changes if c.kind == "added" and c.metric is None and c.model)
    changes = [c for c in changes if not (c.kind == "added" and c.metric is None)]
    unheld = (f"; not in the baseline: {', '.join(new_models)} (recorded when accepted with {UPDATE_FLAG})"
              if new_models and not update else "")
    listed = new_models or None
    compared = len(current.models) - len(new_models)
    if update and stored.environment != current.environment:
        # Accepting this run's values from other hardware or dtype: record them (and where they
        # come from) wholesale, so that the next run here compares exactly.
        atomic_write_text(path, current.to_json())
        return BaselineRecord(shown, "updated", tuple(changes), (
            f"baseline {shown} re-recorded with {describe_environment(current.environment)} "
            f"(it held values from {describe_environment(stored.environment)}; {_count(changes)} beyond its CI)"),
            listed)
    if not changes and not (update and new_models):
        values = sum(len(current.models[m].scores) for m in current.models if m not in new_models)
        return BaselineRecord(shown, "matched", (), (
            f"baseline {shown} matches this run ({values} values for {compared} models; {how}){unheld}"), listed)
    lines = "\n".join(f"  {describe_change(c)}" for c in changes)
    if update:
        added = f"; added {', '.join(new_models)}" if new_models else ""
        atomic_write_text(path, _merge(stored, current, changes).to_json())
        return BaselineRecord(shown, "updated", tuple(changes),
                              f"baseline {shown} updated ({_count(changes)}{added}; {how})" + (f":\n{lines}" if lines else ""),
                              listed)
    return BaselineRecord(shown, "changed", tuple(changes), (
        f"baseline {shown} differs from this run ({_count(changes)}; {how}){unheld}:\n{lines}\n"
        f"accept the new values with: {accept_command}"), listed)


def comparison_mode(stored: Snapshot, current: Snapshot, use_ci: bool | None) -> tuple[bool, str]:
    """(compare within the run's CI?, the phrase that says which comparison applied and why)."""
    if use_ci is True:
        return True, "compared within this run's confidence intervals (use_ci)"
    if use_ci is False:
        return False, "compared exactly (use_ci off)"
    if stored.environment is not None and stored.environment == current.environment:
        return False, f"compared exactly: same dtype and hardware, {describe_environment(current.environment)}"
    return True, (f"compared within this run's confidence intervals: the baseline was recorded with "
                  f"{describe_environment(stored.environment)}, this run used {describe_environment(current.environment)}")


@dataclass(frozen=True)
class BaselinePolicy:
    """When a suite's baseline is compared, skipped, refused or rewritten, for one run.

    A baseline holds a suite's whole sample. When `limit` (`--ftevals-limit`) shrinks a suite's
    sample, its baseline is not compared (the test is skipped with `skip_reason`), and `update`
    (`--ftevals-update-baseline`) is refused outright (`refuse_partial_update`): a skip would leave
    the user believing the baseline was updated. A limit at or above a suite's size changes nothing.
    """

    #: The baseline folder, relative to each suite file's folder (ini `ftevals_baseline_dir`).
    folder: str = "baselines"
    update: bool = False
    limit: int | None = None
    #: The invocation's arguments: the accept command is this very run plus the update flag.
    argv: Sequence[str] = ()
    #: |current - baseline| above this is a change (ini ftevals_baseline_tolerance).
    tolerance: float = DEFAULT_TOLERANCE
    #: None: exact on the same dtype and hardware, within the run's CI otherwise; True/False force
    #: one (ini ftevals_baseline_use_ci = auto | true | false).
    use_ci: bool | None = None

    def path(self, suite_folder: Path, suite: str) -> Path:
        return suite_folder / self.folder / f"{suite}.json"

    def accept_command(self) -> str:
        """This very invocation plus the update flag: it evaluates the same suites on the same sample."""
        args = [a for a in self.argv if a != UPDATE_FLAG]
        return shlex.join(["pytest", *args, UPDATE_FLAG])

    def check(self, path: Path, result: SuiteResult, results: Results) -> BaselineRecord:
        """Compare (or write, or rewrite) one suite's baseline with the suite's results.

        A suite with a failed model is neither compared nor written: its baseline test fails naming
        the model and the cause, and the file keeps what it held (an update must never drop a model
        because it failed this time)."""
        if result.failures:
            return BaselineRecord(str(path), "changed", (), (
                f"baseline {path} not compared and left as it is: {', '.join(result.failures)} "
                f"{'was' if len(result.failures) == 1 else 'were'} not evaluated (the cause is on "
                f"{'its' if len(result.failures) == 1 else 'their'} gate tests)"))
        return check_baseline(path, result, models=results.models, environment=environment_of(results),
                              tolerance=self.tolerance, use_ci=self.use_ci, update=self.update,
                              accept_command=self.accept_command())

    def skip_reason(self, ps: PreparedSuite) -> str | None:
        """Why the suite's baseline is not compared in this run (None: it is compared)."""
        evaluated, full = _sample_sizes(ps)
        if self.limit is None or evaluated >= full:
            return None
        return (f"baseline not compared: --ftevals-limit {self.limit} evaluates {evaluated} of the "
                f"{full} examples the baseline is for")

    def refuse_partial_update(self, ps: PreparedSuite) -> None:
        """ConfigError when this run would update the suite's baseline from a shrunk sample."""
        evaluated, full = _sample_sizes(ps)
        if self.update and self.limit is not None and evaluated < full:
            raise ConfigError(
                f"{UPDATE_FLAG} cannot be combined with --ftevals-limit {self.limit}: suite {ps.name!r} would evaluate "
                f"{evaluated} of the {full} examples its baseline is for; drop --ftevals-limit to update baselines"
            )


def _sample_sizes(ps: PreparedSuite) -> tuple[int, int]:
    """(examples this run evaluates, examples the suite's baseline is for: its own limit, not the run's)."""
    return len(ps.dataset), min(ps.suite.limit or ps.n_total, ps.n_total)


def read_baseline(path: str | Path) -> Snapshot:
    """Load a baseline file; ResultsError when it is unreadable or not a baseline."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{path}: cannot read the baseline ({exc}); fix it or rewrite it with "
                           "--ftevals-update-baseline") from None
    return Snapshot.from_dict(data, path=str(path))


def diff_snapshots(
    stored: Snapshot, current: Snapshot, *, tolerance: float = DEFAULT_TOLERANCE, use_ci: bool = False
) -> list[BaselineChange]:
    """Every difference between a stored baseline and this run, in a stable (sorted) order."""
    if tolerance < 0 or not math.isfinite(tolerance):
        raise ConfigError(f"baseline tolerance must be a finite number >= 0, got {tolerance!r}; set "
                          "ftevals_baseline_tolerance (default 1e-9) to such a number")
    changes: list[BaselineChange] = []
    if stored.suite != current.suite:
        changes.append(_change("fingerprint", None, None, stored.suite, current.suite, "suite"))
    if stored.dataset_fingerprint != current.dataset_fingerprint:
        changes.append(_change("fingerprint", None, None, stored.dataset_fingerprint,
                                      current.dataset_fingerprint, "dataset"))
    for model in sorted(set(stored.models) | set(current.models)):
        old, new = stored.models.get(model), current.models.get(model)
        if old is None:
            changes.append(_change("added", model, None, None, None))
            continue
        if new is None:
            changes.append(_change("removed", model, None, None, None))
            continue
        for key in sorted(set(old.fingerprints) | set(new.fingerprints)):
            if old.fingerprints.get(key) != new.fingerprints.get(key):
                changes.append(_change("fingerprint", model, None, old.fingerprints.get(key),
                                              new.fingerprints.get(key), key))
        for metric in sorted(set(old.scores) | set(new.scores)):
            before, after = old.scores.get(metric), new.scores.get(metric)
            if before is None:
                changes.append(_change("added", model, metric, None, after.value if after else None))
            elif after is None:
                changes.append(_change("removed", model, metric, before.value, None))
            elif _value_changed(before.value, after, tolerance, use_ci):
                changes.append(_change("value", model, metric, before.value, after.value))
    return changes


def _value_changed(stored: float | None, current: ScoreSummary, tolerance: float, use_ci: bool) -> bool:
    old_defined, new_defined = _finite(stored), _finite(current.value)
    if not old_defined or not new_defined:
        return old_defined != new_defined
    old, new = float(stored), float(current.value)  # type: ignore[arg-type]
    if abs(new - old) <= tolerance:
        return False
    if use_ci and _finite(current.ci_low) and _finite(current.ci_high):
        low, high = _interval(current)
        return not (low - tolerance <= old <= high + tolerance)
    return True


def _interval(current: ScoreSummary) -> tuple[float, float]:
    """The run's CI; for a rate at 0 or 1 (every example scored the same) the Wilson interval, since a
    bootstrap interval collapses to the point there and would call one example's difference a change."""
    low, high = float(current.ci_low), float(current.ci_high)  # type: ignore[arg-type]
    value, n = float(current.value), int(current.n or 0)  # type: ignore[arg-type]
    if low == high == value and value in (0.0, 1.0) and n > 0:
        from .agreement import wilson_interval

        return wilson_interval(round(value * n), n)
    return low, high


def _merge(stored: Snapshot, current: Snapshot, changes: list[BaselineChange]) -> Snapshot:
    """The current snapshot, but keeping the stored entry of every value that did not change.

    Recorded on other hardware or dtype, the stored values are not kept: the next run here
    compares exactly, against values computed here."""
    if stored.environment is None or stored.environment != current.environment:
        return current
    changed = {(c.model, c.metric) for c in changes if c.kind == "value"}
    models: dict[str, ModelRecord] = {}
    for name, rec in current.models.items():
        old = stored.models.get(name)
        scores = dict(rec.scores)
        if old is not None:
            for metric, summary in old.scores.items():
                if metric in scores and (name, metric) not in changed:
                    scores[metric] = summary
        models[name] = ModelRecord(rec.fingerprints, scores)
    return Snapshot(current.suite, current.dataset_fingerprint, models, current.environment)


def _count(changes: list[BaselineChange]) -> str:
    return f"{len(changes)} change{'s' if len(changes) != 1 else ''}"


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _value(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "undefined"
    return f"{x:.6g}" if isinstance(x, float) else str(x)


def _plain(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


__all__ = [
    "DEFAULT_ACCEPT_COMMAND",
    "DEFAULT_TOLERANCE",
    "BaselineChange",
    "BaselineRecord",
    "describe_change",
    "BaselinePolicy",
    "BaselineStatus",
    "ModelRecord",
    "Snapshot",
    "check_baseline",
    "comparison_mode",
    "describe_environment",
    "diff_snapshots",
    "environment_of",
    "read_baseline",
]
