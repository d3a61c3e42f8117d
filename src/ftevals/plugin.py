"""The pytest plugin (entry point `pytest11: ftevals`): suites in, gate tests out.

Thin by design: it collects `Suite` objects from test modules, turns every gate into test items,
and drives `pipeline.prepare` / `pipeline.execute` once per session. All state lives in one
`FtevalsSession` under a `pytest.StashKey`; nothing is attached to `config` and nothing is global.

Order of events:
- session start: options and ini values (model table, backend, paths) are checked; a bad value is
  a usage error (exit code 4) before anything is collected;
- collection: each module-level `Suite` becomes a `SuiteCollector` with one `GateItem` per (gate,
  model) (or one `evaluate` item when a suite has no gates) and one `baseline` item;
- after collection: every selected suite is *prepared* (datasets, gates, metrics validated): a
  problem there is a usage error (exit code 4) before any model runs or any file is written;
- before the first test: all selected suites are *executed* together, one engine per base model;
- tests: each gate item reports its gate; failures read as one line with values, delta, CI and n;
- session end: the results file and the HTML report are written, by the xdist controller only.

Under pytest-xdist the controller collects nothing. Each worker prepares and evaluates through the
shared generation cache, which serialises generation behind a file lock: the first worker
generates, the others find everything cached and never start an engine (engines start on the first
generation, not when the backend is built). Workers ship their results, baseline outcomes and
usage errors to the controller through `workeroutput`; the controller alone writes files.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .errors import ConfigError, DatasetError, FtevalsError, ModelSpecError
from .specs import DEFAULT_BASE, ModelSpec, parse_model_spec
from .suite import Suite, gated_model_names

GROUP = "ftevals"
DEFAULT_RESULTS = "reports/results.json"
DEFAULT_REPORT = "reports/report.html"
DEFAULT_RESAMPLES = 2000
MIN_RESAMPLES = 100
_WORKER_OUTPUT_KEY = "ftevals"
_UPDATE_FLAG = "--ftevals-update-baseline"

#: Errors that mean "the run is misconfigured" rather than "a model or engine failed": reported
#: as pytest usage errors (exit code 4), whether found while preparing or when the run starts.
_USAGE_ERRORS = (ConfigError, DatasetError, ModelSpecError)


# ---------------------------------------------------------------------------------------------
# options


def _int_at_least(minimum: int, why: str = "") -> Any:
    """An argparse type: a whole number >= minimum; argparse turns the error into a usage error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}{why}, got {value}")
        return value

    parse.__name__ = "int"  # argparse names the type in some messages
    return parse


def pytest_addoption(parser: pytest.Parser) -> None:
    from .backends import BACKENDS

    group = parser.getgroup(GROUP, "ftevals: evaluate base models and LoRA adapters side by side")
    group.addoption("--ftevals-backend", choices=BACKENDS, default=None,
                    help="generation backend (default: ini ftevals_backend, else vllm)")
    group.addoption("--ftevals-backend-option", action="append", default=[], metavar="KEY=VALUE",
                    help="backend setting, repeatable; VALUE is JSON or a plain string "
                         "(e.g. strategy=merged, base_urls='[\"http://127.0.0.1:8000\"]', path=preds.jsonl)")
    group.addoption("--ftevals-model", action="append", default=[], metavar="NAME=SPEC",
                    help="add or override a model: NAME=base, NAME=base+path/to/adapter, NAME=/models/x@fewshot=8")
    group.addoption("--ftevals-results", default=None, metavar="PATH",
                    help=f"where the results file goes (default: ini ftevals_results, else {DEFAULT_RESULTS})")
    group.addoption("--ftevals-report", default=None, metavar="PATH",
                    help=f"where the HTML report goes (default: ini ftevals_report, else {DEFAULT_REPORT})")
    group.addoption("--ftevals-no-report", action="store_true", help="do not write the HTML report")
    group.addoption("--ftevals-cache-dir", default=None, metavar="DIR",
                    help="generation cache folder (default: ini ftevals_cache_dir, else ~/.cache/ftevals/generations)")
    group.addoption("--ftevals-cache", choices=("use", "refresh", "off"), default="use",
                    help="use: read and write the cache; refresh: regenerate everything and overwrite; off: no cache")
    group.addoption("--ftevals-limit", type=_int_at_least(1), default=None, metavar="N",
                    help="evaluate at most N examples per suite (quick runs; baselines of shrunk suites are skipped)")
    group.addoption("--ftevals-seed", type=int, default=None, metavar="N",
                    help="seed for bootstrap resampling (default 0)")
    group.addoption("--ftevals-resamples", type=_int_at_least(MIN_RESAMPLES, " for a meaningful 95% CI"),
                    default=None, metavar="N", help=f"bootstrap resamples (default {DEFAULT_RESAMPLES})")
    group.addoption(_UPDATE_FLAG, action="store_true",
                    help="accept the current values as each suite's committed baseline")
    parser.addini("ftevals_models", type="linelist", default=[],
                  help="model table, one 'NAME = SPEC' per line (SPEC: base, base+ADAPTER_DIR, MODEL_DIR[+ADAPTER_DIR])")
    parser.addini("ftevals_backend", default="vllm", help="generation backend")
    parser.addini("ftevals_backend_options", type="linelist", default=[], help="KEY=VALUE backend settings")
    parser.addini("ftevals_results", default=DEFAULT_RESULTS, help="results file path (relative to the ini file)")
    parser.addini("ftevals_report", default=DEFAULT_REPORT, help="HTML report path (relative to the ini file)")
    parser.addini("ftevals_cache_dir", default="", help="generation cache folder (relative to the ini file)")
    parser.addini("ftevals_baseline_dir", default="baselines",
                  help="baseline folder, relative to each suite file's folder")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ftevals_suite(name): an item of an ftevals Suite; on a hand-written test, "
                                       "the suite the ftevals_suite fixture returns")
    config.addinivalue_line("markers", "ftevals_gate: a gate check of an ftevals suite")
    config.addinivalue_line("markers", "ftevals_baseline: a baseline comparison of an ftevals suite")
    session = FtevalsSession(config)
    config.stash[SESSION_KEY] = session
    config.pluginmanager.register(session, "ftevals-session")


# ---------------------------------------------------------------------------------------------
# settings: options + ini, checked once at session start


@dataclass(frozen=True)
class Settings:
    """Everything the options and ini say, resolved to absolute paths and checked."""

    models: dict[str, ModelSpec]
    backend: str
    backend_options: dict[str, Any]
    cache_dir: Path
    results: Path
    report: Path | None
    limit: int | None
    seed: int
    resamples: int

    def run_config(self, cache_mode: Any) -> Any:
        from .pipeline import RunConfig

        return RunConfig(models=self.models, backend=self.backend, backend_options=self.backend_options,
                         cache_dir=self.cache_dir, cache_mode=cache_mode, seed=self.seed, limit=self.limit,
                         resamples=self.resamples)


def read_settings(config: pytest.Config) -> Settings:
    """Options win over ini values. Relative paths follow pytest's habit: an ini value is relative
    to the ini file's folder, a command-line value to the folder pytest was started in."""
    from .backends import BACKENDS
    from .models import cache_dir

    opt = config.option
    backend = opt.ftevals_backend or config.getini("ftevals_backend") or "vllm"
    if backend not in BACKENDS:
        raise ConfigError(f"ini ftevals_backend: unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    cache = _path_setting(config, opt.ftevals_cache_dir, "ftevals_cache_dir")
    report = None if opt.ftevals_no_report else _path_setting(config, opt.ftevals_report, "ftevals_report")
    settings = Settings(
        models=model_table(config),
        backend=backend,
        backend_options=backend_options(config),
        cache_dir=cache or (cache_dir() / "generations"),
        results=_path_setting(config, opt.ftevals_results, "ftevals_results") or _ini_dir(config) / DEFAULT_RESULTS,
        report=report,
        limit=opt.ftevals_limit,
        seed=opt.ftevals_seed if opt.ftevals_seed is not None else 0,
        resamples=opt.ftevals_resamples if opt.ftevals_resamples is not None else DEFAULT_RESAMPLES,
    )
    check_conflicts(config, settings)
    return settings


def check_conflicts(config: pytest.Config, settings: Settings) -> None:
    """Options that contradict each other are refused at start-up, instead of one of them silently winning.

    (`--ftevals-update-baseline` with a `--ftevals-limit` that shrinks a suite is refused after
    preparation, when the suites' sizes are known: see `FtevalsSession._refuse_partial_baseline_update`.)
    """
    opt = config.option
    if opt.ftevals_no_report and opt.ftevals_report:
        raise ConfigError(f"--ftevals-no-report and --ftevals-report {opt.ftevals_report} contradict each other; "
                          "drop one of them")
    if settings.report is not None and settings.report.resolve() == settings.results.resolve():
        raise ConfigError(f"the results file and the HTML report would both be written to {settings.results}; "
                          "give them different paths (--ftevals-results, --ftevals-report)")


def model_table(config: pytest.Config) -> dict[str, ModelSpec]:
    """`base` (the embedded model) plus the ini table plus --ftevals-model, later entries winning."""
    table: dict[str, ModelSpec] = {"base": ModelSpec("base", DEFAULT_BASE)}
    sources = (("ini ftevals_models", config.getini("ftevals_models"), _ini_dir(config)),
               ("--ftevals-model", config.option.ftevals_model, config.invocation_params.dir))
    for source, lines, folder in sources:
        for line in lines:
            name, eq, spec_text = line.partition("=")
            if not eq or not name.strip():
                raise ConfigError(f"{source}: {line!r} is not 'NAME = SPEC' (e.g. 'tuned = base+adapters/v2')")
            try:
                spec = parse_model_spec(name.strip(), spec_text)
            except ConfigError as exc:
                raise ConfigError(f"{source}: {exc}") from None
            table[spec.name] = _anchor_paths(spec, Path(folder))
    return table


def backend_options(config: pytest.Config) -> dict[str, Any]:
    """KEY=VALUE pairs; VALUE is parsed as JSON when it is JSON, else kept as a string."""
    out: dict[str, Any] = {}
    sources = (("ini ftevals_backend_options", config.getini("ftevals_backend_options"), _ini_dir(config)),
               ("--ftevals-backend-option", config.option.ftevals_backend_option, config.invocation_params.dir))
    for source, items, folder in sources:
        for item in items:
            key, eq, value = item.partition("=")
            key = key.strip()
            if not eq or not key:
                raise ConfigError(f"{source}: {item!r} is not KEY=VALUE (e.g. path=preds.jsonl)")
            try:
                out[key] = json.loads(value)
            except ValueError:
                out[key] = value.strip()
            # `path` (the replay backend's predictions file) is the one path-valued backend setting;
            # anchor it like every other path so that the run does not depend on the current folder.
            if key == "path" and isinstance(out[key], str) and out[key]:
                out[key] = str(_anchor(Path(folder), out[key]))
    return out


# ---------------------------------------------------------------------------------------------
# collection


def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> Any:
    if isinstance(obj, Suite) and isinstance(collector, pytest.Module):
        suite = obj.with_root(collector.path.parent)
        line = _assignment_line(collector.path, name)
        return SuiteCollector.from_parent(collector, name=suite.name, suite=suite, line=line)
    return None


def _assignment_line(path: Path, variable: str) -> int:
    """0-based line of `variable = ...` in the file, so that reports point at the suite (0 if unsure)."""
    pattern = re.compile(rf"^{re.escape(variable)}\s*(:[^=]*)?=")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return 0
    return next((i for i, text in enumerate(lines) if pattern.match(text)), 0)


class SuiteCollector(pytest.Collector):
    """One suite: its gate items (one per gate and gated model), then its baseline item."""

    def __init__(self, *, suite: Suite, line: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.suite = suite
        self.line = line

    def collect(self) -> Iterator[pytest.Item]:
        if not self.suite.gates:
            yield EvaluateItem.from_parent(self, name="evaluate", suite=self.suite)
        table = self.config.stash[SESSION_KEY].settings.models
        known = dict(self.suite.known_failures)
        for text in self.suite.gates:
            for model in gate_targets(self.suite, text, table):
                label = text if model is None or _qualified(text) else f"{model}: {text}"
                item = GateItem.from_parent(self, name=f"gate[{label}]", suite=self.suite, gate_text=text, model=model)
                reason = known.get(label, known.get(text))
                if reason is not None:
                    item.add_marker(pytest.mark.xfail(reason=reason, strict=True, raises=GateFailed))
                yield item
        # A known_failures key that matches no gate is refused when the suite is prepared.
        yield BaselineItem.from_parent(self, name="baseline", suite=self.suite)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.line, f"suite {self.suite.name}"


def gate_targets(suite: Suite, text: str, table: Mapping[str, ModelSpec]) -> list[str | None]:
    """The models one gate is checked for: None for a suite-level value, else each gated model.

    Uses the same rule as the pipeline (`gated_model_names`), from the model table, so that items exist at collection
    time (for -k, --co and xdist scheduling). A gate that does not parse, or a suite naming unknown
    models, gets one item here: preparation then stops the run with a usage error that says why.
    """
    from .gate import parse_gate
    from .pipeline import SUITE_VALUES

    try:
        gate = parse_gate(text)
    except FtevalsError:
        return [None]
    if gate.metric in SUITE_VALUES:
        return [None]
    if gate.model is not None:
        return [gate.model]
    names = list(suite.models) or list(table)
    specs = [table[n] for n in names if n in table]
    if suite.fewshot is not None and suite.reference in table:
        ref = table[suite.reference]
        specs.append(ModelSpec(suite.fewshot.model_name(suite.reference), ref.base, ref.adapter, suite.fewshot.k))
    return list(gated_model_names(suite, specs)) or [None]


def _qualified(text: str) -> bool:
    from .gate import parse_gate

    try:
        return parse_gate(text).model is not None
    except FtevalsError:
        return False


class _SuiteItem(pytest.Item):
    def __init__(self, *, suite: Suite, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.suite = suite
        self.add_marker(pytest.mark.ftevals_suite(suite.name))

    def _session(self) -> FtevalsSession:
        return self.config.stash[SESSION_KEY]

    def _suite_result(self) -> dict[str, Any]:
        return self._session().suite_result(self.suite.name)

    def reportinfo(self) -> tuple[Path, int, str]:
        line = self.parent.line if isinstance(self.parent, SuiteCollector) else 0
        return self.path, line, f"{self.suite.name}::{self.name}"

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str | Any:
        # Our failures are sentences with the numbers in them; a traceback into the plugin adds nothing.
        if isinstance(excinfo.value, (GateFailed, FtevalsError)):
            return str(excinfo.value)
        return super().repr_failure(excinfo)


class GateFailed(AssertionError):
    """A gate did not hold; the message is the one-line explanation."""


class EvaluateItem(_SuiteItem):
    """Stands for a suite without gates: passes when the suite evaluated without error."""

    def runtest(self) -> None:
        self._suite_result()


class GateItem(_SuiteItem):
    """One gate for one model (model None: a suite-level value such as contamination)."""

    def __init__(self, *, gate_text: str, model: str | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate_text = gate_text
        self.model = model
        self.add_marker(pytest.mark.ftevals_gate)

    def runtest(self) -> None:
        result = self._suite_result()
        rows = [g for g in result["gates"] if g.get("source") == self.gate_text and g.get("model") == self.model]
        if not rows:
            who = f" for model {self.model!r}" if self.model else ""
            raise GateFailed(f"gate {self.gate_text!r} was not evaluated{who} in suite {self.suite.name!r}")
        for g in rows:
            self.user_properties.append(("ftevals_gate", g["message"]))
        failed = [g["message"] for g in rows if not g["passed"]]
        if failed:
            raise GateFailed("\n".join(failed))


class BaselineItem(_SuiteItem):
    """Compares the suite's numbers with `<suite folder>/baselines/<suite>.json` (see baseline.py)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_marker(pytest.mark.ftevals_baseline)

    def runtest(self) -> None:
        outcome = self._session().check_baseline(self.suite, self.path.parent)
        self.user_properties.append(("ftevals_baseline", outcome.message))
        if outcome.status == "changed":
            raise GateFailed(outcome.message)


# ---------------------------------------------------------------------------------------------
# the session object


class FtevalsSession:
    """Everything the plugin knows during one pytest session (one per process under xdist)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self._settings: Settings | None = None
        #: Selected suites in collection order, with the file each came from.
        self.suites: dict[str, tuple[Suite, Path]] = {}
        self.prepared: Any = None
        self.results: dict[str, Any] | None = None
        #: An evaluation failure (engine crash, bug): every suite test fails with it.
        self.error: BaseException | None = None
        #: Suite name -> the `baseline` section of the results file, filled as baseline items run.
        self.baselines: dict[str, dict[str, Any]] = {}
        #: Suite name -> why its baseline item is skipped.
        self.baseline_skips: dict[str, str] = {}
        self.written_results: Path | None = None
        self.written_report: Path | None = None
        self.report_error: str | None = None
        #: A usage error found after collection started, kept for the xdist controller.
        self.usage_error: str | None = None
        self.worker_mismatch = False
        self.is_worker = hasattr(config, "workerinput")

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = _usage(read_settings, self.config)
        return self._settings

    @property
    def is_controller(self) -> bool:
        """True in the xdist process that distributes tests (it collects and runs nothing itself)."""
        return not self.is_worker and self.config.pluginmanager.has_plugin("dsession")

    # -- session start: fail fast on bad options, before xdist starts workers ------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.settings  # noqa: B018 - reading it checks every option and ini value

    def pytest_report_header(self, config: pytest.Config) -> str | None:
        s = self._settings
        if s is None:
            return None
        return f"ftevals: backend {s.backend}, models {', '.join(s.models)}, cache {_display(s.cache_dir)}"

    # -- collection -----------------------------------------------------------------------------

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        # trylast: after -k/-m deselection, so only suites with a selected test are evaluated.
        self.suites = {}
        for item in items:
            for suite in _suites_needed_by(item):
                self._add_suite(suite, item.path)

    def _add_suite(self, suite: Suite, path: Path) -> None:
        known = self.suites.get(suite.name)
        if known is None:
            self.suites[suite.name] = (suite, path)
        elif known[0] != suite:
            raise self._usage_error(
                f"two different suites are named {suite.name!r} ({_display(known[1])} and "
                f"{_display(path)}); suite names must be unique because results and baselines are keyed by them"
            )

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if not self.suites or self.is_controller:
            return
        self.prepared = self._prepare()
        self._refuse_partial_baseline_update()
        self._mark_baseline_skips(session.items)

    def _prepare(self) -> Any:
        """Prepare suite by suite, so that an error can name the suite and its file."""
        from .pipeline import PreparedRun, prepare

        cfg = self.settings.run_config(self.config.option.ftevals_cache)
        prepared = []
        for suite, path in self.suites.values():
            try:
                prepared += prepare([suite], cfg).suites
            except FtevalsError as exc:
                raise self._usage_error(_locate(exc, suite, path)) from None
        run = PreparedRun(cfg, prepared)
        try:
            run.model_specs()  # a few-shot contender's name may clash with a model of the table
        except FtevalsError as exc:
            raise self._usage_error(str(exc)) from None
        return run

    def _refuse_partial_baseline_update(self) -> None:
        """A baseline holds a suite's whole sample: accepting one from a --ftevals-limit sample is refused
        (rather than skipped, which would leave the user believing the baseline was updated)."""
        limit = self.settings.limit
        if not self.config.option.ftevals_update_baseline or limit is None:
            return
        for ps in self.prepared.suites:
            full = min(ps.suite.limit or ps.n_total, ps.n_total)
            if len(ps.dataset) < full:
                raise self._usage_error(
                    f"{_UPDATE_FLAG} cannot be combined with --ftevals-limit {limit}: suite {ps.name!r} would evaluate "
                    f"{len(ps.dataset)} of the {full} examples its baseline is for; drop --ftevals-limit to update baselines"
                )

    def _mark_baseline_skips(self, items: list[pytest.Item]) -> None:
        """A baseline holds the suite's whole sample; compare it only when this run used that sample."""
        limit = self.settings.limit
        for ps in self.prepared.suites:
            full = min(ps.suite.limit or ps.n_total, ps.n_total)
            if limit is not None and len(ps.dataset) < full:
                self.baseline_skips[ps.name] = (
                    f"baseline not compared: --ftevals-limit {limit} evaluates {len(ps.dataset)} of the "
                    f"{full} examples the baseline is for"
                )
        for item in items:
            if isinstance(item, BaselineItem) and item.suite.name in self.baseline_skips:
                item.add_marker(pytest.mark.skip(reason=self.baseline_skips[item.suite.name]))

    def _usage_error(self, message: str) -> pytest.UsageError:
        # Remembered so that an xdist worker can hand it to the controller (see pytest_sessionfinish).
        self.usage_error = f"ftevals: {message}"
        return pytest.UsageError(self.usage_error)

    # -- running --------------------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Any:
        if self._should_execute(session):
            self._execute(session)
        return (yield)

    def _should_execute(self, session: pytest.Session) -> bool:
        opt = session.config.option
        if self.prepared is None or opt.collectonly or self.is_controller:
            return False
        # Collection errors stop the session before any test runs: do not generate for nothing.
        return not (session.testsfailed and not opt.continue_on_collection_errors)

    def _execute(self, session: pytest.Session) -> None:
        from .pipeline import execute

        argv = ["pytest", *self.config.invocation_params.args]
        try:
            self.results = execute(self.prepared, progress=self._progress(session), argv=argv)
        except _USAGE_ERRORS as exc:
            # Found when the run starts (missing adapter folder, predictions file, backend setting),
            # before anything was generated: a usage error like those found while preparing.
            raise self._usage_error(str(exc)) from None
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # an engine crash or a bug: every suite test fails with it
            self.error = exc

    def _progress(self, session: pytest.Session) -> Any:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        capman = session.config.pluginmanager.get_plugin("capturemanager")

        def progress(message: str) -> None:
            if reporter is None or self.is_worker:
                return
            if capman is None:
                reporter.write_line(message)
                return
            with capman.global_and_fixture_disabled():
                reporter.write_line(message)

        return progress

    def suite_result(self, name: str) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        if self.results is None:
            raise FtevalsError("the suites were not evaluated (collection only, or evaluation did not run)")
        for suite in self.results["suites"]:
            if suite["name"] == name:
                return suite
        raise FtevalsError(f"suite {name!r} has no results")

    def check_baseline(self, suite: Suite, folder: Path) -> Any:
        from .baseline import check_baseline

        result = self.suite_result(suite.name)
        assert self.results is not None
        path = Path(_display(folder / self.config.getini("ftevals_baseline_dir") / f"{suite.name}.json"))
        outcome = check_baseline(path, result, models=self.results["models"],
                                 update=self.config.option.ftevals_update_baseline,
                                 accept_command=self._accept_command())
        self.baselines[suite.name] = outcome.to_dict()
        result["baseline"] = self.baselines[suite.name]
        return outcome

    def _accept_command(self) -> str:
        """This very invocation plus the update flag: it evaluates the same suites on the same sample."""
        args = [a for a in self.config.invocation_params.args if a != _UPDATE_FLAG]
        return shlex.join(["pytest", *args, _UPDATE_FLAG])

    # -- session end: workers ship, the controller (or a plain session) writes -----------------

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.is_worker:
            payload = {"results": self.results, "baselines": self.baselines, "usage_error": self.usage_error,
                       "error": None if self.error is None else f"{type(self.error).__name__}: {self.error}"}
            session.config.workeroutput[_WORKER_OUTPUT_KEY] = json.dumps(payload)  # type: ignore[attr-defined]
            return
        if self.results is not None:
            self._write_outputs()

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """Controller side: collect each worker's results, baseline outcomes and errors."""
        text = getattr(node, "workeroutput", {}).get(_WORKER_OUTPUT_KEY)
        if not text:
            return
        payload = json.loads(text)
        if payload["usage_error"] and self.usage_error is None:
            # The worker stopped with a usage error; stop the whole run with it, once, as pytest would.
            self.usage_error = payload["usage_error"]
            raise pytest.UsageError(self.usage_error)
        if payload["error"] and self.error is None:
            self.error = FtevalsError(payload["error"])
        # Each worker ran only some baseline items; their outcomes together are the run's.
        self.baselines.update(payload["baselines"])
        worker_results = payload["results"]
        if worker_results is None:
            return
        if self.results is None:
            # Every worker evaluated every suite from the same cache: any one of them is the answer.
            self.results = worker_results
        elif _comparable(self.results) != _comparable(worker_results):
            self.worker_mismatch = True

    def _write_outputs(self) -> None:
        from .results import write_results

        assert self.results is not None
        for suite in self.results["suites"]:
            suite["baseline"] = self.baselines.get(suite["name"], suite.get("baseline"))
        self.written_results = write_results(self.settings.results, self.results)
        if self.settings.report is None:
            return
        try:
            from .report import write_report

            self.written_report = write_report(self.results, self.settings.report)
        except (FtevalsError, OSError) as exc:
            # The results file is the record; a report that fails to render is re-made from it later.
            self.report_error = f"{exc} (re-render with: ftevals report {_display(self.written_results)})"

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
        if self.results is None:
            if self.error is not None:
                terminalreporter.section("ftevals", red=True)
                terminalreporter.write_line(f"evaluation failed: {self.error}", red=True)
            return
        from .summary import summary_rows

        terminalreporter.section("ftevals", bold=True)
        for text, markup in summary_rows(self.results, notes=self.baseline_skips):
            terminalreporter.write_line(text, **markup)
        if self.worker_mismatch:
            terminalreporter.write_line("warning: xdist workers computed different results; the first one was written "
                                        "(is generation deterministic?)", yellow=True)
        if self.written_results is not None:
            terminalreporter.write_line(f"results: {_display(self.written_results)}")
        if self.written_report is not None:
            terminalreporter.write_line(f"report:  {_display(self.written_report)}")
        elif self.report_error is not None:
            terminalreporter.write_line(f"report:  not written: {self.report_error}", red=True)


SESSION_KEY = pytest.StashKey[FtevalsSession]()


def _suites_needed_by(item: pytest.Item) -> list[Suite]:
    """The suites an item needs evaluated: its own, or, for a hand-written test that uses an
    ftevals fixture, the suites defined in its module (so `pytest test_x.py::test_mine` works)."""
    if isinstance(item, _SuiteItem):
        return [item.suite]
    if not set(getattr(item, "fixturenames", ())) & set(FIXTURES):
        return []
    module = getattr(item, "module", None)
    if module is None:
        return []
    return [v.with_root(item.path.parent) for v in vars(module).values() if isinstance(v, Suite)]


# ---------------------------------------------------------------------------------------------
# fixtures: read-only views of the session's results, for hand-written tests in suite files


class SuiteResults:
    """One suite's entry of the results file (docs/results-schema.md), with accessors.

    `score("tuned", "accuracy")` -> 0.8; `comparison("tuned", "accuracy")["verdict"]` ->
    "improved"; `outputs("tuned")` -> {example id: text}. `data` is the raw dict.
    """

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    @property
    def name(self) -> str:
        return str(self.data["name"])

    @property
    def models(self) -> list[str]:
        return list(self.data["models"])

    @property
    def reference(self) -> str:
        return str(self.data["reference"])

    @property
    def metrics(self) -> list[str]:
        return [m["name"] for m in self.data["metrics"]]

    @property
    def dataset(self) -> dict[str, Any]:
        return dict(self.data["dataset"])

    @property
    def examples(self) -> list[dict[str, Any]]:
        return list(self.data["examples"])

    @property
    def gates(self) -> list[dict[str, Any]]:
        return list(self.data["gates"])

    def score(self, model: str, metric: str) -> float | None:
        """The point estimate (None when undefined, e.g. F1 with no positives)."""
        return self._summary(model, metric)["value"]

    def ci(self, model: str, metric: str) -> tuple[float | None, float | None]:
        """The 95% bootstrap interval of the score."""
        s = self._summary(model, metric)
        return s["ci_low"], s["ci_high"]

    def comparison(self, model: str, metric: str) -> dict[str, Any]:
        """`model` against the reference on `metric`: delta, CI, p_value, verdict, flips."""
        for c in self.data["comparisons"]:
            if c["model"] == model and c["metric"] == metric:
                return c
        raise KeyError(f"suite {self.name!r} has no comparison for model {model!r} and metric {metric!r} "
                       f"(compared models: {', '.join(m for m in self.models if m != self.reference)})")

    def outputs(self, model: str) -> dict[str, str]:
        """The model's generated text per example id."""
        self._check_model(model)
        return {ex["id"]: ex["outputs"][model]["text"] for ex in self.data["examples"]}

    def per_example(self, model: str, metric: str) -> dict[str, float | None]:
        """The metric's per-example value for the model, per example id."""
        self._summary(model, metric)
        return {ex["id"]: ex["outputs"][model]["scores"].get(metric) for ex in self.data["examples"]}

    def _summary(self, model: str, metric: str) -> dict[str, Any]:
        self._check_model(model)
        by_metric = self.data["scores"][model]
        if metric not in by_metric:
            raise KeyError(f"suite {self.name!r} has no metric {metric!r} (metrics: {', '.join(self.metrics)})")
        return by_metric[metric]

    def _check_model(self, model: str) -> None:
        if model not in self.data["models"]:
            raise KeyError(f"suite {self.name!r} did not run model {model!r} (models: {', '.join(self.models)})")

    def __repr__(self) -> str:
        return f"SuiteResults({self.name!r}, models={self.models}, metrics={self.metrics})"


def _session_results(request: pytest.FixtureRequest) -> dict[str, Any]:
    session = request.config.stash[SESSION_KEY]
    if session.error is not None:
        raise session.error
    if session.results is None:
        pytest.fail("ftevals: no suite was evaluated in this session (does this module define a Suite?)",
                    pytrace=False)
    return session.results


@pytest.fixture(scope="session")
def ftevals_results(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The whole results record of this session (docs/results-schema.md); treat it as read-only."""
    return _session_results(request)


@pytest.fixture(scope="session")
def ftevals_models(request: pytest.FixtureRequest) -> dict[str, dict[str, Any]]:
    """Model name -> provenance (base, adapter, fingerprints, rank) for every model that ran."""
    return dict(_session_results(request)["models"])


@pytest.fixture(scope="session")
def ftevals_suites(request: pytest.FixtureRequest) -> dict[str, SuiteResults]:
    """Suite name -> `SuiteResults` for every suite evaluated in this session."""
    return {s["name"]: SuiteResults(s) for s in _session_results(request)["suites"]}


@pytest.fixture
def ftevals_suite(request: pytest.FixtureRequest, ftevals_suites: dict[str, SuiteResults]) -> SuiteResults:
    """The `SuiteResults` of the suite in the requesting test's module; with several suites in one
    module, pick one with `@pytest.mark.ftevals_suite("name")`."""
    marker = request.node.get_closest_marker("ftevals_suite")
    if marker is not None and marker.args:
        name = str(marker.args[0])
    else:
        names = [v.name for v in vars(request.module).values() if isinstance(v, Suite)]
        if len(names) != 1:
            pytest.fail(f"ftevals_suite: {request.module.__name__} defines {len(names)} suites "
                        f"({', '.join(names) or 'none'}); name one with @pytest.mark.ftevals_suite(\"NAME\")",
                        pytrace=False)
        name = names[0]
    if name not in ftevals_suites:
        pytest.fail(f"ftevals_suite: suite {name!r} was not evaluated in this session "
                    f"(evaluated: {', '.join(ftevals_suites) or 'none'})", pytrace=False)
    return ftevals_suites[name]


#: Fixture names whose use makes a hand-written test need its module's suites evaluated.
FIXTURES = ("ftevals_results", "ftevals_models", "ftevals_suites", "ftevals_suite")


# ---------------------------------------------------------------------------------------------
# helpers


def _usage(fn: Any, config: pytest.Config) -> Any:
    try:
        return fn(config)
    except FtevalsError as exc:
        raise pytest.UsageError(f"ftevals: {exc}") from None


def _locate(exc: FtevalsError, suite: Suite, path: Path) -> str:
    """`suites/test_x.py: suite 'x': <message>`, without repeating the suite when the message names it."""
    message = str(exc)
    prefix = f"suite {suite.name!r}"
    if message.startswith(prefix):
        return f"{_display(path)}: {message}"
    return f"{_display(path)}: {prefix}: {message}"


def _comparable(results: dict[str, Any]) -> dict[str, Any]:
    """What two workers must agree on: everything but volatile values and baseline outcomes."""
    from .results import canonical

    out = canonical(results)
    for suite in out.get("suites", []):
        suite.pop("baseline", None)
    return out


def _ini_dir(config: pytest.Config) -> Path:
    return Path(config.inipath).parent if config.inipath else Path(config.rootpath)


def _path_setting(config: pytest.Config, option_value: str | None, ini_name: str) -> Path | None:
    if option_value:
        return _anchor(Path(config.invocation_params.dir), option_value)
    ini_value = config.getini(ini_name)
    return _anchor(_ini_dir(config), ini_value) if ini_value else None


def _anchor(folder: Path, text: str) -> Path:
    p = Path(text).expanduser()
    return p if p.is_absolute() else folder / p


def _anchor_paths(spec: ModelSpec, folder: Path) -> ModelSpec:
    """Relative model and adapter folders are relative to where they were written (ini or cwd)."""

    def anchor(p: str | None) -> str | None:
        if p is None or p == DEFAULT_BASE:
            return p
        return str(_anchor(folder, p))

    return ModelSpec(spec.name, anchor(spec.base) or DEFAULT_BASE, anchor(spec.adapter), spec.fewshot)


def _display(p: Path | str) -> str:
    try:
        return str(Path(p).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


__all__ = [
    "FtevalsSession",
    "SESSION_KEY",
    "Settings",
    "SuiteResults",
    "ftevals_models",
    "ftevals_results",
    "ftevals_suite",
    "ftevals_suites",
    "gate_targets",
]
