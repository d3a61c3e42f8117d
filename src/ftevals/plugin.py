"""The pytest plugin (entry point `pytest11: ftevals`): suites in, gate tests out.

Thin by design: it collects `Suite` objects from test modules, turns every gate into a test item,
and drives `pipeline.prepare` / `pipeline.execute` once per session. All state lives in one
`FtevalsSession` under a `pytest.StashKey`; nothing is attached to `config` and nothing is global.

Order of events:
- collection: each module-level `Suite` becomes a `SuiteCollector` with one `GateItem` per (gate,
  model) (or one `evaluate` item when a suite has no gates) and one `baseline` item;
- after collection: every selected suite is *prepared* (datasets, gates, metrics validated): a
  problem there is a usage error (exit code 4) before any model runs;
- before the first test: all selected suites are *executed* together, one engine per base model;
- tests: each gate item reports its gate; failures read as one line with values, delta, CI and n;
- session end: the results file and the HTML report are written, by the xdist controller only.

Under pytest-xdist each worker evaluates through the shared generation cache, which serialises
generation behind a file lock: the first worker generates, the others find everything cached and
never build an engine. Workers ship their results to the controller, which alone writes files.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .errors import ConfigError, FtevalsError
from .specs import DEFAULT_BASE, ModelSpec, parse_model_spec
from .suite import Suite

GROUP = "ftevals"
DEFAULT_RESULTS = "reports/results.json"
DEFAULT_REPORT = "reports/report.html"
_WORKER_OUTPUT_KEY = "ftevals_results"


# ---------------------------------------------------------------------------------------------
# options


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup(GROUP, "ftevals: evaluate base models and LoRA adapters side by side")
    group.addoption("--ftevals-backend", choices=("vllm", "hf", "openai", "replay"), default=None,
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
    group.addoption("--ftevals-limit", type=int, default=None, metavar="N",
                    help="evaluate at most N examples per suite (quick runs; baselines are not compared)")
    group.addoption("--ftevals-seed", type=int, default=None, help="seed for bootstrap resampling (default 0)")
    group.addoption("--ftevals-resamples", type=int, default=None, help="bootstrap resamples (default 2000)")
    group.addoption("--ftevals-update-baseline", action="store_true",
                    help="accept the current values as each suite's committed baseline")
    parser.addini("ftevals_models", type="linelist", default=[],
                  help="model table, one 'NAME = SPEC' per line (SPEC: base, base+ADAPTER_DIR, MODEL_DIR[+ADAPTER_DIR])")
    parser.addini("ftevals_backend", default="vllm", help="generation backend")
    parser.addini("ftevals_backend_options", type="linelist", default=[], help="KEY=VALUE backend settings")
    parser.addini("ftevals_results", default=DEFAULT_RESULTS, help="results file path (relative to rootdir)")
    parser.addini("ftevals_report", default=DEFAULT_REPORT, help="HTML report path (relative to rootdir)")
    parser.addini("ftevals_cache_dir", default="", help="generation cache folder")
    parser.addini("ftevals_baseline_dir", default="baselines",
                  help="baseline folder, relative to each suite file's folder")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ftevals_suite(name): an item generated from an ftevals Suite")
    config.addinivalue_line("markers", "ftevals_gate: a gate check of an ftevals suite")
    config.addinivalue_line("markers", "ftevals_baseline: a baseline comparison of an ftevals suite")
    session = FtevalsSession(config)
    config.stash[SESSION_KEY] = session
    config.pluginmanager.register(session, "ftevals-session")


# ---------------------------------------------------------------------------------------------
# collection


def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> Any:
    if isinstance(obj, Suite) and isinstance(collector, pytest.Module):
        suite = obj.with_root(collector.path.parent)
        return SuiteCollector.from_parent(collector, name=suite.name, suite=suite)
    return None


class SuiteCollector(pytest.Collector):
    def __init__(self, *, suite: Suite, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.suite = suite

    def collect(self) -> Iterator[pytest.Item]:
        from .gate import parse_gate

        if not self.suite.gates:
            yield EvaluateItem.from_parent(self, name="evaluate", suite=self.suite)
        for text in self.suite.gates:
            try:
                model = parse_gate(text).model
            except FtevalsError as exc:
                raise pytest.UsageError(f"{self.path}: suite {self.suite.name!r}: {exc}") from None
            # Unqualified gates expand per model after preparation; the item id carries the text.
            yield GateItem.from_parent(self, name=f"gate[{text}]", suite=self.suite, gate_text=text, model=model)
        yield BaselineItem.from_parent(self, name="baseline", suite=self.suite)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"suite {self.suite.name}"


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
        return self.path, 0, f"{self.suite.name}::{self.name}"

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str | Any:
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
    def __init__(self, *, gate_text: str, model: str | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate_text = gate_text
        self.add_marker(pytest.mark.ftevals_gate)

    def runtest(self) -> None:
        result = self._suite_result()
        rows = [g for g in result["gates"] if g.get("source") == self.gate_text]
        if not rows:
            raise GateFailed(f"gate {self.gate_text!r} was not evaluated for suite {self.suite.name!r}")
        failed = [g for g in rows if not g["passed"]]
        for g in rows:
            self.user_properties.append(("ftevals_gate", g["message"]))
        if failed:
            raise GateFailed("\n".join(g["message"] for g in failed))


class BaselineItem(_SuiteItem):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_marker(pytest.mark.ftevals_baseline)

    def runtest(self) -> None:
        outcome = self._session().check_baseline(self.suite, self.path.parent)
        if outcome is None:
            pytest.skip("baseline not compared: --ftevals-limit evaluates a different sample than the baseline's")
        self.user_properties.append(("ftevals_baseline", outcome.message))
        if outcome.status == "changed":
            raise GateFailed(outcome.message)


# ---------------------------------------------------------------------------------------------
# the session object


class FtevalsSession:
    """Everything the plugin knows during one pytest session."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.prepared: Any = None
        self.results: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self.suites: list[Suite] = []
        self.baseline_status: dict[str, dict[str, Any]] = {}
        self.is_worker = hasattr(config, "workerinput")
        self.is_controller = (not self.is_worker) and _xdist_active(config)

    # -- configuration --------------------------------------------------------------------------

    def run_config(self) -> Any:
        from .cache import CacheMode  # noqa: F401
        from .models import cache_dir
        from .pipeline import RunConfig

        cfg, opt = self.config, self.config.option
        rootdir = Path(cfg.rootpath)
        backend = opt.ftevals_backend or cfg.getini("ftevals_backend") or "vllm"
        cache_text = opt.ftevals_cache_dir or cfg.getini("ftevals_cache_dir")
        cache = Path(cache_text) if cache_text else cache_dir() / "generations"
        if not cache.is_absolute():
            cache = rootdir / cache
        limit = opt.ftevals_limit
        if limit is not None and limit < 1:
            raise ConfigError(f"--ftevals-limit must be >= 1, got {limit}")
        resamples = opt.ftevals_resamples if opt.ftevals_resamples is not None else 2000
        if resamples < 100:
            raise ConfigError(f"--ftevals-resamples must be >= 100 for a meaningful 95% CI, got {resamples}")
        return RunConfig(
            models=self.model_table(),
            backend=backend,
            backend_options=self.backend_options(),
            cache_dir=cache,
            cache_mode=opt.ftevals_cache,
            seed=opt.ftevals_seed if opt.ftevals_seed is not None else 0,
            limit=limit,
            resamples=resamples,
        )

    def model_table(self) -> dict[str, ModelSpec]:
        rootdir = Path(self.config.rootpath)
        table: dict[str, ModelSpec] = {"base": ModelSpec("base", DEFAULT_BASE)}
        for source, lines in (("ini ftevals_models", self.config.getini("ftevals_models")),
                              ("--ftevals-model", self.config.option.ftevals_model)):
            for line in lines:
                sep = "=" if source.startswith("--") else ("=" if "=" in line else None)
                if sep is None or sep not in line:
                    raise ConfigError(f"{source}: {line!r} is not 'NAME = SPEC' (e.g. 'tuned = base+adapters/v2')")
                name, _, spec_text = line.partition("=")
                spec = parse_model_spec(name.strip(), spec_text)
                table[spec.name] = _anchor_paths(spec, rootdir)
        return table

    def backend_options(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for source, items in (("ini ftevals_backend_options", self.config.getini("ftevals_backend_options")),
                              ("--ftevals-backend-option", self.config.option.ftevals_backend_option)):
            for item in items:
                key, eq, value = item.partition("=")
                if not eq or not key.strip():
                    raise ConfigError(f"{source}: {item!r} is not KEY=VALUE")
                try:
                    out[key.strip()] = json.loads(value)
                except ValueError:
                    out[key.strip()] = value
        return out

    def results_path(self) -> Path:
        text = self.config.option.ftevals_results or self.config.getini("ftevals_results") or DEFAULT_RESULTS
        return _under_root(self.config, text)

    def report_path(self) -> Path | None:
        if self.config.option.ftevals_no_report:
            return None
        text = self.config.option.ftevals_report or self.config.getini("ftevals_report") or DEFAULT_REPORT
        return _under_root(self.config, text)

    # -- hooks ----------------------------------------------------------------------------------

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        seen: dict[str, Suite] = {}
        for item in items:
            suite = getattr(item, "suite", None)
            if isinstance(suite, Suite) and suite.name not in seen:
                seen[suite.name] = suite
        self.suites = list(seen.values())

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if not self.suites or self.is_controller:
            return
        from .pipeline import prepare

        try:
            self.prepared = prepare(self.suites, self.run_config())
        except FtevalsError as exc:
            raise pytest.UsageError(f"ftevals: {exc}") from None

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Any:
        if self.prepared is not None and not session.config.option.collectonly and not self.is_controller:
            self._execute(session)
        return (yield)

    def _execute(self, session: pytest.Session) -> None:
        from .pipeline import execute

        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        capman = session.config.pluginmanager.get_plugin("capturemanager")

        def progress(message: str) -> None:
            if reporter is None or self.is_worker:
                return
            if capman is not None:
                with capman.global_and_fixture_disabled():
                    reporter.write_line(message)
            else:
                reporter.write_line(message)

        try:
            self.results = execute(self.prepared, progress=progress, argv=["pytest", *self.config.invocation_params.args])
        except FtevalsError as exc:
            self.error = exc
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # anything else is a bug or an engine crash: fail every suite test
            self.error = exc

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
        if self.config.option.ftevals_limit is not None:
            return None
        path = folder / self.config.getini("ftevals_baseline_dir") / f"{suite.name}.json"
        assert self.results is not None
        outcome = check_baseline(path, result, models=self.results["models"],
                                 update=self.config.option.ftevals_update_baseline)
        self.baseline_status[suite.name] = outcome.to_dict() | {"path": _display(path)}
        for s in self.results["suites"] if self.results else []:
            if s["name"] == suite.name:
                s["baseline"] = self.baseline_status[suite.name]
        return outcome

    # -- xdist: workers send results, the controller writes -------------------------------------

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.is_worker:
            if self.results is not None:
                session.config.workeroutput[_WORKER_OUTPUT_KEY] = json.dumps(self.results)  # type: ignore[attr-defined]
            return
        if self.results is not None:
            self._write_outputs()

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        payload = getattr(node, "workeroutput", {}).get(_WORKER_OUTPUT_KEY)
        if payload and self.results is None:
            # Every worker evaluated the same suites from the same cache: any one is the answer.
            self.results = json.loads(payload)

    def _write_outputs(self) -> None:
        from .results import write_results

        assert self.results is not None
        for suite in self.results["suites"]:
            if suite["name"] in self.baseline_status:
                suite["baseline"] = self.baseline_status[suite["name"]]
        self.written_results = write_results(self.results_path(), self.results)
        self.written_report = None
        report = self.report_path()
        if report is not None:
            try:
                from .report import write_report

                self.written_report = write_report(self.results, report)
            except ImportError:
                self.written_report = None

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
        if self.results is None:
            if self.error is not None:
                terminalreporter.section("ftevals")
                terminalreporter.write_line(f"evaluation failed: {self.error}", red=True)
            return
        from .summary import summary_lines

        terminalreporter.section("ftevals")
        for line in summary_lines(self.results):
            terminalreporter.write_line(line)
        written = getattr(self, "written_results", None)
        if written:
            terminalreporter.write_line(f"results: {_display(written)}")
        report = getattr(self, "written_report", None)
        if report:
            terminalreporter.write_line(f"report:  {_display(report)}")


SESSION_KEY = pytest.StashKey[FtevalsSession]()


# ---------------------------------------------------------------------------------------------
# fixtures: read-only views of the session's results, for hand-written tests in suite files


@pytest.fixture(scope="session")
def ftevals_results(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The whole results dict of this session (see docs/results-schema.md)."""
    session = request.config.stash[SESSION_KEY]
    if session.error is not None:
        raise session.error
    if session.results is None:
        pytest.fail("ftevals_results: no suite was collected in this session, so nothing was evaluated")
    return session.results


@pytest.fixture
def ftevals_suite(request: pytest.FixtureRequest, ftevals_results: dict[str, Any]) -> SuiteView:
    """The results of the (single) Suite defined in the requesting test's module."""
    suites = [v for v in vars(request.module).values() if isinstance(v, Suite)]
    if len(suites) != 1:
        pytest.fail(f"ftevals_suite needs exactly one Suite in {request.module.__name__}; found {len(suites)}")
    for s in ftevals_results["suites"]:
        if s["name"] == suites[0].name:
            return SuiteView(s)
    pytest.fail(f"suite {suites[0].name!r} was not evaluated in this session")


class SuiteView:
    """Convenience accessors over one suite's results: scores, comparisons, outputs."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    @property
    def models(self) -> list[str]:
        return list(self.data["models"])

    def score(self, model: str, metric: str) -> float | None:
        return self.data["scores"][model][metric]["value"]

    def comparison(self, model: str, metric: str) -> dict[str, Any]:
        for c in self.data["comparisons"]:
            if c["model"] == model and c["metric"] == metric:
                return c
        raise KeyError(f"no comparison for model {model!r} and metric {metric!r}")

    def outputs(self, model: str) -> dict[str, str]:
        return {ex["id"]: ex["outputs"][model]["text"] for ex in self.data["examples"]}


# ---------------------------------------------------------------------------------------------
# helpers


def _xdist_active(config: pytest.Config) -> bool:
    return bool(getattr(config.option, "numprocesses", None)) and config.pluginmanager.hasplugin("xdist")


def _anchor_paths(spec: ModelSpec, rootdir: Path) -> ModelSpec:
    """Relative model and adapter folders in the ini are relative to the rootdir, not the cwd."""

    def anchor(p: str | None) -> str | None:
        if p is None or p == DEFAULT_BASE or Path(p).expanduser().is_absolute():
            return p
        return str(rootdir / p)

    return ModelSpec(spec.name, anchor(spec.base) or DEFAULT_BASE, anchor(spec.adapter), spec.fewshot)


def _under_root(config: pytest.Config, text: str) -> Path:
    p = Path(text).expanduser()
    return p if p.is_absolute() else Path(config.rootpath) / p


def _display(p: Path) -> str:
    try:
        return str(Path(p).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


__all__ = ["FtevalsSession", "SESSION_KEY", "SuiteView", "ftevals_results", "ftevals_suite"]
