"""The pytest plugin (entry point `pytest11: ftevals`): suites in, gate tests out.

Thin by design: it translates pytest to the pipeline and back. It registers the options declared
in `settings.py`, collects `Suite` objects from test modules, turns every gate into test items
(`suite.collection_targets`), and drives one pytest-free `session.Evaluation` (settings, prepare,
execute, baselines, results and report files) per session. All state lives in one
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

import contextlib
import os
import re
import sys
import threading
from dataclasses import replace
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest


def _leave_ftevals_asserts_alone() -> None:
    """pytest rewrites the asserts of every module in a plugin's distribution, which here is all of
    ftevals (130 modules, none of them tests, none relying on assert messages). Where bytecode is
    not cached (PYTHONDONTWRITEBYTECODE, a read-only install) it re-parses and rewrites each one in
    every session: measured 0.3-0.5 s of a 1.7 s warm re-run. Unmarking the package before the rest
    of it is imported loads it as plain Python. The mark lives in a private attribute of pytest's
    import hook; a pytest without it simply keeps rewriting (slower, never wrong)."""
    for finder in sys.meta_path:
        marked = getattr(finder, "_must_rewrite", None)
        if type(finder).__name__ == "AssertionRewritingHook" and isinstance(marked, set):
            marked.discard(__name__.partition(".")[0])


_leave_ftevals_asserts_alone()

# The rest of ftevals is imported after the unmarking above, on purpose.
from .errors import FtevalsError, GateFailed  # GateFailed: re-exported for `ftevals.plugin` users
from .progress import GenerationProgress
from .session import USAGE_ERRORS, Evaluation, SuiteResults, display_path
from .settings import INI_KEYS, Values, declared_options, read_settings
from .suite import Suite, collection_targets, known_failure, resolve_reference

if TYPE_CHECKING:  # pragma: no cover
    from .results import ModelInfo, Results, SuiteResult

GROUP = "ftevals"
_WORKER_OUTPUT_KEY = "ftevals"


# ---------------------------------------------------------------------------------------------
# options (declared in settings.py, shared with the CLI)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup(GROUP, "ftevals: evaluate base models and LoRA adapters side by side")
    for option in declared_options():
        group.addoption(option.flag, **option.kwargs)
    for key in INI_KEYS:
        parser.addini(key.name, key.help, type=key.type, default=key.default)  # type: ignore[arg-type]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ftevals_suite(name): an item of an ftevals Suite; on a hand-written test, "
                                       "the suite the ftevals_suite fixture returns")
    config.addinivalue_line("markers", "ftevals_gate: a gate check of an ftevals suite")
    config.addinivalue_line("markers", "ftevals_baseline: a baseline comparison of an ftevals suite")
    session = FtevalsSession(config)
    config.stash[SESSION_KEY] = session
    config.pluginmanager.register(session, "ftevals-session")


def _values(config: pytest.Config) -> Values:
    """The options and ini values as `read_settings` takes them: options by flag, ini keys by name."""

    def get(name: str) -> Any:
        return config.getoption(name) if name.startswith("--") else config.getini(name)

    ini_dir = Path(config.inipath).parent if config.inipath else Path(config.rootpath)
    return Values(get, ini_dir, Path(config.invocation_params.dir))


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
        settings = self.config.stash[SESSION_KEY].evaluation.settings
        try:
            self.suite = resolve_reference(self.suite, settings.models)
        except FtevalsError:
            pass  # selecting the suite (pytest_collection_modifyitems) stops the run with the reason
        for text in self.suite.gates:
            for target in collection_targets(self.suite, text, settings.models, settings.candidates):
                item = GateItem.from_parent(self, name=f"gate[{target.label}]", suite=self.suite, gate_text=text,
                                            model=target.model)
                reason = known_failure(self.suite, target)
                if reason is not None:
                    item.add_marker(pytest.mark.xfail(reason=reason, strict=True, raises=GateFailed))
                yield item
        # A known_failures key that matches no gate is refused when the suite is prepared.
        yield BaselineItem.from_parent(self, name="baseline", suite=self.suite)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.line, f"suite {self.suite.name}"


class _SuiteItem(pytest.Item):
    def __init__(self, *, suite: Suite, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.suite = suite
        self.add_marker(pytest.mark.ftevals_suite(suite.name))

    def _evaluation(self) -> Evaluation:
        return self.config.stash[SESSION_KEY].evaluation

    def _suite_result(self) -> SuiteResult:
        return self._evaluation().suite_result(self.suite.name)

    def reportinfo(self) -> tuple[Path, int, str]:
        line = self.parent.line if isinstance(self.parent, SuiteCollector) else 0
        return self.path, line, f"{self.suite.name}::{self.name}"

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str | Any:
        # Our failures are sentences with the numbers in them; a traceback into the plugin adds nothing.
        if isinstance(excinfo.value, FtevalsError):  # GateFailed included
            return str(excinfo.value)
        return super().repr_failure(excinfo)


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
        rows = [g for g in result.gates if g.source == self.gate_text and g.model == self.model]
        if not rows:
            who = f" for model {self.model!r}" if self.model else ""
            raise GateFailed(f"gate {self.gate_text!r} was not evaluated{who} in suite {self.suite.name!r}")
        for g in rows:
            self.user_properties.append(("ftevals_gate", g.message))
        failed = [g.message for g in rows if not g.passed]
        if failed:
            raise GateFailed("\n".join(failed))


class BaselineItem(_SuiteItem):
    """Compares the suite's numbers with `<suite folder>/baselines/<suite>.json` (see baseline.py)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_marker(pytest.mark.ftevals_baseline)

    def runtest(self) -> None:
        outcome = self._evaluation().check_baseline(self.suite, self.path.parent)
        self.user_properties.append(("ftevals_baseline", outcome.message or ""))
        if outcome.status == "changed":
            raise GateFailed(outcome.message or f"baseline {outcome.path} changed")


# ---------------------------------------------------------------------------------------------
# the session object: pytest hooks over one `Evaluation`


class FtevalsSession:
    """The plugin's state for one pytest session (one per process under xdist): pytest in, `Evaluation` out."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self._evaluation: Evaluation | None = None
        self.is_worker = hasattr(config, "workerinput")

    @property
    def evaluation(self) -> Evaluation:
        """Created on first use, when the options and ini values are read and checked."""
        if self._evaluation is None:
            try:
                settings = read_settings(_values(self.config))
            except FtevalsError as exc:
                raise pytest.UsageError(f"ftevals: {exc}") from None
            if self.is_worker:
                # The workers of one xdist session take turns at generating: one engine in memory.
                run_id = self.config.workerinput.get("testrunuid")  # type: ignore[attr-defined]
                settings = replace(settings, exclusive_group=f"xdist-{run_id}")
            self._evaluation = Evaluation(settings, self.config.invocation_params.args)
        return self._evaluation

    @property
    def is_controller(self) -> bool:
        """True in the xdist process that distributes tests (it collects and runs nothing itself)."""
        return not self.is_worker and self.config.pluginmanager.has_plugin("dsession")

    def _usage_error(self, exc: BaseException) -> pytest.UsageError:
        # Remembered so that an xdist worker can hand it to the controller (see pytest_sessionfinish).
        self.evaluation.usage_error = f"ftevals: {exc}"
        return pytest.UsageError(self.evaluation.usage_error)

    # -- session start: fail fast on bad options, before xdist starts workers ------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.evaluation  # noqa: B018 - creating it checks every option and ini value

    def pytest_report_header(self, config: pytest.Config) -> str | None:
        if self._evaluation is None:
            return None
        s = self._evaluation.settings
        return f"ftevals: backend {s.backend}, models {', '.join(s.models)}, cache {display_path(s.cache_dir)}"

    # -- collection -----------------------------------------------------------------------------

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        # trylast: after -k/-m deselection, so only suites with a selected test are evaluated.
        self.evaluation.suites = {}
        for item in items:
            for suite in _suites_needed_by(item):
                try:
                    self.evaluation.add_suite(suite, item.path)
                except FtevalsError as exc:
                    raise self._usage_error(exc) from None

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        ev = self.evaluation
        if not ev.suites or self.is_controller:
            return
        try:
            ev.prepare()
        except FtevalsError as exc:
            raise self._usage_error(exc) from None
        for item in session.items:
            if isinstance(item, BaselineItem) and item.suite.name in ev.baseline_skips:
                item.add_marker(pytest.mark.skip(reason=ev.baseline_skips[item.suite.name]))

    # -- running --------------------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Any:
        if self._should_execute(session):
            try:
                self.evaluation.execute(progress=self._progress(session))
            except USAGE_ERRORS as exc:
                raise self._usage_error(exc) from None
        return (yield)

    def _should_execute(self, session: pytest.Session) -> bool:
        opt = session.config.option
        if self.evaluation.prepared is None or opt.collectonly or self.is_controller:
            return False
        # Collection errors stop the session before any test runs: do not generate for nothing.
        return not (session.testsfailed and not opt.continue_on_collection_errors)

    def _progress(self, session: pytest.Session) -> GenerationProgress:
        """The generation display: live in a terminal, plain lines in a log, quiet under -q.

        Under xdist the worker that generates writes it to the real stderr (pytest captures a
        worker's output, and xdist shows none of it), as plain lines tagged with the worker id.
        """
        config = session.config
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        capman = config.pluginmanager.get_plugin("capturemanager")
        lock = threading.Lock()
        quiet = config.get_verbosity() < 0

        def uncaptured() -> Any:
            return capman.global_and_fixture_disabled() if capman is not None else contextlib.nullcontext()

        if self.is_worker or reporter is None:
            tag = f"[{os.environ.get('PYTEST_XDIST_WORKER', 'worker')}] " if self.is_worker else ""

            def to_stderr(text: str, transient: bool) -> None:
                if transient:
                    return
                with lock, uncaptured():
                    sys.stderr.write(tag + text + "\n")
                    sys.stderr.flush()

            return GenerationProgress(to_stderr, display="quiet" if quiet else "plain")

        live = bool(getattr(reporter, "isatty", False)) and not quiet

        def to_terminal(text: str, transient: bool) -> None:
            with lock, uncaptured():
                if not live:
                    reporter.write_line(text)
                    return
                width = max(20, getattr(getattr(reporter, "_tw", None), "fullwidth", 80) - 1)
                reporter.rewrite(text[:width] if transient else text, erase=True)
                if not transient:
                    reporter.write("\n")

        return GenerationProgress(to_terminal, display="quiet" if quiet else "live" if live else "plain")

    # -- session end: workers ship, the controller (or a plain session) writes -----------------

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        ev = self._evaluation
        if ev is None:
            return
        if self.is_worker:
            session.config.workeroutput[_WORKER_OUTPUT_KEY] = ev.worker_payload()  # type: ignore[attr-defined]
        elif ev.results is not None:
            ev.write_outputs()

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """Controller side: collect each worker's results, baseline outcomes and errors."""
        text = getattr(node, "workeroutput", {}).get(_WORKER_OUTPUT_KEY)
        if not text:
            return
        usage_error = self.evaluation.merge_worker_payload(text)
        if usage_error is not None:
            # The worker stopped with a usage error; stop the whole run with it, once, as pytest would.
            raise pytest.UsageError(usage_error)

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
        if self._evaluation is None:
            return
        failed, rows = self._evaluation.summary()
        if not rows:
            return
        terminalreporter.section("ftevals", **({"red": True} if failed else {"bold": True}))
        for text, markup in rows:
            terminalreporter.write_line(text, **markup)


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


def _session_results(request: pytest.FixtureRequest) -> Results:
    ev = request.config.stash[SESSION_KEY].evaluation
    if ev.error is not None:
        raise ev.error
    if ev.results is None:
        pytest.fail("ftevals: no suite was evaluated in this session (does this module define a Suite?)",
                    pytrace=False)
    return ev.results


@pytest.fixture(scope="session")
def ftevals_results(request: pytest.FixtureRequest) -> Results:
    """The whole results record of this session (`ftevals.results.Results`, docs/results-schema.md)."""
    return _session_results(request)


@pytest.fixture(scope="session")
def ftevals_models(request: pytest.FixtureRequest) -> dict[str, ModelInfo]:
    """Model name -> provenance (base, adapter, fingerprints, rank) for every model that ran."""
    return dict(_session_results(request).models)


@pytest.fixture(scope="session")
def ftevals_suites(request: pytest.FixtureRequest) -> dict[str, SuiteResults]:
    """Suite name -> `SuiteResults` for every suite evaluated in this session."""
    return {s.name: SuiteResults(s) for s in _session_results(request).suites}


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


__all__ = [
    "FtevalsSession",
    "SESSION_KEY",
    "SuiteResults",
    "ftevals_models",
    "ftevals_results",
    "ftevals_suite",
    "ftevals_suites",
]
