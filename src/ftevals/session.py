"""One test session's evaluation, with no pytest in it: what the plugin's hooks drive.

`Evaluation` holds the run's state from the checked settings to the written files: the selected
suites, the prepared run, the results (or the error every suite test fails with), the baseline
outcomes, and what the xdist workers ship to the controller. Its methods raise `ConfigError` (or
another of `USAGE_ERRORS`) for a misconfigured run; the plugin reports those as pytest usage
errors (exit code 4). `SuiteResults` is the read-only view the plugin's fixtures hand out.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, DatasetError, FtevalsError, ModelSpecError, NotFoundError
from .fsutil import display_path
from .settings import Settings
from .suite import Suite
from .progress import GenerationProgress

if TYPE_CHECKING:  # pragma: no cover
    from .baseline import BaselinePolicy
    from .results import BaselineRecord, Comparison, DatasetInfo, ExampleResult, GateOutcome, Results, ScoreSummary, SuiteResult

# Heavier modules (the pipeline, baselines, results: numpy) load when first needed, not when
# pytest loads the plugin in a session that may never see a suite.

#: Errors that mean "the run is misconfigured" rather than "a model or engine failed": reported
#: as usage errors, whether found while preparing or when the run starts.
USAGE_ERRORS = (ConfigError, DatasetError, ModelSpecError)

#: A terminal line and its markup (`{"red": True}`), as pytest's terminal reporter takes them.
Row = tuple[str, dict[str, bool]]


class Evaluation:
    """Everything one session evaluates and writes (one per process under xdist)."""

    def __init__(self, settings: Settings, argv: Sequence[str] = ()) -> None:
        self.settings = settings
        #: The invocation's arguments (without the program name), recorded in the results.
        self.argv = tuple(argv)
        #: Selected suites in collection order, with the file each came from.
        self.suites: dict[str, tuple[Suite, Path]] = {}
        self.prepared: Any = None
        self.results: Results | None = None
        #: An evaluation failure (engine crash, bug): every suite test fails with it.
        self.error: BaseException | None = None
        #: Suite name -> how it compared with its baseline, filled as baselines are checked.
        self.baselines: dict[str, BaselineRecord] = {}
        #: Suite name -> why its baseline is not compared in this run.
        self.baseline_skips: dict[str, str] = {}
        #: The usage error (as reported) that stopped this process, for the xdist controller.
        self.usage_error: str | None = None
        self.written_results: Path | None = None
        self.written_report: Path | None = None
        self.written_summaries: list[Path] = []
        self.mlflow_run: str | None = None
        self.mlflow_error: str | None = None
        self.report_error: str | None = None
        self.worker_mismatch = False

    @cached_property
    def baseline(self) -> BaselinePolicy:
        from .baseline import BaselinePolicy

        s = self.settings
        return BaselinePolicy(s.baseline_dir, s.update_baseline, s.limit, self.argv, s.baseline_tolerance,
                              s.baseline_use_ci)

    # -- selection and preparation ----------------------------------------------------------------

    def add_suite(self, suite: Suite, path: Path) -> None:
        """Select a suite, its reference model resolved (ConfigError, a usage error, when it cannot be)."""
        from .suite import resolve_reference

        try:
            suite = resolve_reference(suite, self.settings.models)
        except ConfigError as exc:
            raise ConfigError(f"{display_path(path)}: {exc}") from None
        known = self.suites.get(suite.name)
        if known is None:
            self.suites[suite.name] = (suite, path)
        elif known[0] != suite:
            raise ConfigError(
                f"two different suites are named {suite.name!r} ({display_path(known[1])} and "
                f"{display_path(path)}); suite names must be unique because results and baselines are keyed by them"
            )

    def prepare(self) -> None:
        """Validate every selected suite before any model runs (ConfigError names the suite and its
        file), and decide which baselines this run compares."""
        from .pipeline import PreparedRun, check_candidates, prepare_suite

        cfg = self.settings.run_config()
        prepared = []
        for suite, path in self.suites.values():
            try:
                prepared.append(prepare_suite(suite, cfg))
            except FtevalsError as exc:
                raise ConfigError(_locate(exc, suite, path)) from None
        check_candidates([suite for suite, _ in self.suites.values()], cfg)
        self.prepared = PreparedRun(cfg, prepared)
        self.prepared.model_specs()  # a few-shot contender's name may clash with a model of the table
        for ps in prepared:
            self.baseline.refuse_partial_update(ps)
        self.baseline_skips = {ps.name: reason for ps in prepared if (reason := self.baseline.skip_reason(ps))}

    # -- running ----------------------------------------------------------------------------------

    def execute(self, progress: Callable[[str], None] | GenerationProgress | None = None) -> None:
        """Evaluate every prepared suite together. A misconfiguration found as the run starts (missing
        adapter folder, predictions file, backend setting) is raised, as one of `USAGE_ERRORS`, before
        anything is generated; any other failure (an engine crash, a bug) is kept in `error`."""
        from .pipeline import execute

        try:
            self.results = execute(self.prepared, progress=progress, argv=["pytest", *self.argv])
        except USAGE_ERRORS:
            raise
        except Exception as exc:
            self.error = exc

    def suite_result(self, name: str) -> SuiteResult:
        if self.error is not None:
            raise self.error
        if self.results is None:
            raise FtevalsError("the suites were not evaluated (collection only, or evaluation did not run)")
        suite = self.results.suite(name)
        if suite is None:
            raise FtevalsError(f"suite {name!r} has no results")
        return suite

    def check_baseline(self, suite: Suite, folder: Path) -> BaselineRecord:
        """Compare the suite's numbers with its baseline file next to the suite file (`folder`)."""
        result = self.suite_result(suite.name)
        assert self.results is not None
        path = Path(display_path(self.baseline.path(folder, suite.name)))
        outcome = self.baseline.check(path, result, self.results)
        self.baselines[suite.name] = outcome
        self.results = _with_baselines(self.results, {suite.name: outcome})
        return outcome

    # -- session end: workers ship, the controller (or a plain session) writes ------------------

    def worker_payload(self) -> str:
        """What an xdist worker hands the controller."""
        return json.dumps({"results": None if self.results is None else self.results.to_dict(),
                           "baselines": {name: b.to_dict() for name, b in self.baselines.items()},
                           "usage_error": self.usage_error,
                           "error": None if self.error is None else f"{type(self.error).__name__}: {self.error}"})

    def merge_worker_payload(self, text: str) -> str | None:
        """Controller side: take in one worker's results, baseline outcomes and errors. Returns the
        usage error the worker stopped with, the first time one arrives: the whole run stops with it."""
        payload = json.loads(text)
        if payload["usage_error"] and self.usage_error is None:
            self.usage_error = payload["usage_error"]
            return self.usage_error
        if payload["error"] and self.error is None:
            self.error = FtevalsError(payload["error"])
        # Each worker ran only some baseline items; their outcomes together are the run's.
        from .results import BaselineRecord, from_data

        self.baselines.update({name: BaselineRecord.from_dict(b) for name, b in payload["baselines"].items()})
        if payload["results"] is None:
            return None
        worker_results = from_data(payload["results"], "<xdist worker results>")
        if self.results is None:
            # Every worker evaluated every suite from the same cache: any one of them is the answer.
            self.results = worker_results
        elif _comparable(self.results) != _comparable(worker_results):
            self.worker_mismatch = True
        return None

    def write_outputs(self) -> None:
        from .results import save

        from .decision import decide

        assert self.results is not None
        # The decision reads the baseline outcomes: made once they are all in, before anything is written.
        self.results = decide(_with_baselines(self.results, self.baselines), prices=self.settings.prices)
        self.written_results = save(self.settings.results, self.results)
        from .ci_summary import write_markdown_summary

        self.written_summaries = write_markdown_summary(self.results, self.settings.summary_md)
        if self.settings.report is not None:
            try:
                from .report import write_report

                self.written_report = write_report(self.results, self.settings.report,
                                                   prices=self.settings.prices or None)
            except (FtevalsError, OSError) as exc:
                # The results file is the record; a report that fails to render is re-made from it later.
                self.report_error = f"{exc} (re-render with: ftevals report {display_path(self.written_results)})"
        if self.settings.mlflow is not None:
            self._track(self.settings.mlflow)

    def _track(self, uri: str) -> None:
        """Log to MLflow; a failure is shown in red, the results file already holds everything."""
        from .tracking import log_run

        assert self.results is not None and self.written_results is not None
        files = [self.written_results, *([self.written_report] if self.written_report else []),
                 *(p for p in self.written_summaries if str(p) != os.environ.get("GITHUB_STEP_SUMMARY"))]
        try:
            self.mlflow_run = f"MLflow run {log_run(self.results, uri, files)} at {uri}"
        except Exception as exc:  # MLflow raises many kinds (server down, bad URI, store errors)
            self.mlflow_error = f"{type(exc).__name__}: {exc}"[:500]

    def summary(self) -> tuple[bool, list[Row]]:
        """(failed, rows): the lines of the terminal's ftevals section; none when nothing ran."""
        if self.results is None:
            return True, [] if self.error is None else [(f"evaluation failed: {self.error}", {"red": True})]
        from .summary import summary_rows

        rows: list[Row] = list(summary_rows(self.results, notes=self.baseline_skips))
        if self.worker_mismatch:
            rows.append(("warning: xdist workers computed different results; the first one was written "
                         "(is generation deterministic?)", {"yellow": True}))
        if self.written_results is not None:
            rows.append((f"results: {display_path(self.written_results)}", {}))
        if self.written_report is not None:
            rows.append((f"report:  {display_path(self.written_report)}", {}))
        elif self.report_error is not None:
            rows.append((f"report:  not written: {self.report_error}", {"red": True}))
        for path in self.written_summaries:
            rows.append((f"summary: {display_path(path)}", {}))
        if self.mlflow_run is not None:
            rows.append((f"mlflow:  {self.mlflow_run}", {}))
        elif self.mlflow_error is not None:
            rows.append((f"mlflow:  NOT logged: {self.mlflow_error} (the results file is complete; log it later "
                         "by re-running with the same cache)", {"red": True}))
        return False, rows


class SuiteResults:
    """One suite's results (a `SuiteResult` record, docs/results-schema.md), with accessors that
    name what exists when asked for what does not.

    `score("tuned", "accuracy")` -> 0.8; `comparison("tuned", "accuracy").verdict` -> "improved";
    `outputs("tuned")` -> {example id: text}. `record` is the typed record itself.
    """

    def __init__(self, record: SuiteResult) -> None:
        self.record = record

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def models(self) -> list[str]:
        return list(self.record.models)

    @property
    def reference(self) -> str:
        return self.record.reference

    @property
    def metrics(self) -> list[str]:
        return [m.name for m in self.record.metrics]

    @property
    def dataset(self) -> DatasetInfo | None:
        return self.record.dataset

    @property
    def examples(self) -> list[ExampleResult]:
        return list(self.record.examples)

    @property
    def gates(self) -> list[GateOutcome]:
        return list(self.record.gates)

    def score(self, model: str, metric: str) -> float | None:
        """The point estimate (None when undefined, e.g. F1 with no positives)."""
        return self._summary(model, metric).value

    def ci(self, model: str, metric: str) -> tuple[float | None, float | None]:
        """The bootstrap interval of the score."""
        s = self._summary(model, metric)
        return s.ci_low, s.ci_high

    def comparison(self, model: str, metric: str) -> Comparison:
        """`model` against the reference on `metric`: delta, CI, p_value, verdict, flips."""
        found = self.record.comparison(model, metric)
        if found is None:
            raise NotFoundError(f"suite {self.name!r} has no comparison for model {model!r} and metric {metric!r} "
                                f"(compared models: {', '.join(m for m in self.models if m != self.reference)}; "
                                f"metrics: {', '.join(self.metrics)}); ask for one of those")
        return found

    def outputs(self, model: str) -> dict[str, str]:
        """The model's generated text per example id."""
        self._check_model(model)
        return {ex.id: ex.outputs[model].text for ex in self.record.examples}

    def per_example(self, model: str, metric: str) -> dict[str, float | None]:
        """The metric's per-example value for the model, per example id."""
        self._summary(model, metric)
        return {ex.id: ex.outputs[model].scores.get(metric) for ex in self.record.examples}

    def _summary(self, model: str, metric: str) -> ScoreSummary:
        self._check_model(model)
        found = self.record.score(model, metric)
        if found is None:
            raise NotFoundError(f"suite {self.name!r} has no metric {metric!r} (metrics: {', '.join(self.metrics)}); "
                                "ask for one of those")
        return found

    def _check_model(self, model: str) -> None:
        if model not in self.record.models:
            raise NotFoundError(f"suite {self.name!r} did not run model {model!r} (models: {', '.join(self.models)}); "
                                "ask for one of those")

    def __repr__(self) -> str:
        return f"SuiteResults({self.name!r}, models={self.models}, metrics={self.metrics})"


def _locate(exc: FtevalsError, suite: Suite, path: Path) -> str:
    """`suites/test_x.py: suite 'x': <message>`, without repeating the suite when the message names it."""
    message = str(exc)
    prefix = f"suite {suite.name!r}"
    if message.startswith(prefix):
        return f"{display_path(path)}: {message}"
    return f"{display_path(path)}: {prefix}: {message}"


def _with_baselines(results: Results, baselines: dict[str, BaselineRecord]) -> Results:
    """The results with each named suite's `baseline` replaced by its checked outcome."""
    suites = tuple(replace(s, baseline=baselines[s.name]) if s.name in baselines else s for s in results.suites)
    return replace(results, suites=suites)


def _comparable(results: Results) -> dict[str, Any]:
    """What two workers must agree on: everything but volatile values and baseline outcomes."""
    from .results import canonical

    out = canonical(results)
    for suite in out.get("suites", []):
        suite.pop("baseline", None)
    return out


__all__ = ["USAGE_ERRORS", "Evaluation", "SuiteResults", "display_path"]
