"""Run settings: the `--ftevals-*` options and `ftevals_*` ini keys, declared once and read into `Settings`.

No pytest here. The plugin registers `declared_options()` and `INI_KEYS` with pytest and hands
`read_settings` a `Values`: one `get(name)` over its option values (by flag, `"--ftevals-backend"`)
and ini values (by key, `"ftevals_backend"`), plus the two folders relative paths follow.
`ftevals run` builds its flags from the same declarations; tests build a `Values` from plain dicts.

Options win over ini values. Relative paths follow pytest's habit: an ini value is relative to
the ini file's folder, a command-line value to the folder pytest was started in.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, NotFoundError
from .hubcache import looks_like_repo_id
from .specs import DEFAULT_BASE, ModelSpec, parse_model_spec

if TYPE_CHECKING:  # pragma: no cover
    from .cache import CacheMode

DEFAULT_BACKEND = "vllm"
DEFAULT_RESULTS = "reports/results.json"
DEFAULT_REPORT = "reports/report.html"
DEFAULT_RESAMPLES = 2000
MIN_RESAMPLES = 100
UPDATE_FLAG = "--ftevals-update-baseline"
CACHE_MODES = ("use", "refresh", "off")


def int_at_least(minimum: int, why: str = "") -> Callable[[str], int]:
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


@dataclass(frozen=True)
class Option:
    """One `--ftevals-*` option: its flag and the argparse keyword arguments (help, default, type...)."""

    flag: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def default(self) -> Any:
        if "default" in self.kwargs:
            return self.kwargs["default"]
        return False if self.kwargs.get("action") == "store_true" else None


@dataclass(frozen=True)
class IniKey:
    """One `ftevals_*` ini key; `type` is pytest's ini type (None: a plain string)."""

    name: str
    help: str
    default: Any = ""
    type: str | None = None


def declared_options() -> tuple[Option, ...]:
    """Every option, in `pytest --help` order; the backend choices are the registry's at call time."""
    from .backends.registry import backend_names

    return (
        Option("--ftevals-backend", {
            "choices": backend_names(), "default": None,
            "help": f"generation backend (default: ini ftevals_backend, else {DEFAULT_BACKEND})"}),
        Option("--ftevals-backend-option", {
            "action": "append", "default": [], "metavar": "KEY=VALUE",
            "help": "backend setting, repeatable; VALUE is JSON or a plain string "
                    "(e.g. strategy=merged, base_urls='[\"http://127.0.0.1:8000\"]', path=preds.jsonl)"}),
        Option("--ftevals-model", {
            "action": "append", "default": [], "metavar": "NAME=SPEC",
            "help": "add or override a model: NAME=base, NAME=base+path/to/adapter, NAME=/models/x@fewshot=8"}),
        Option("--ftevals-results", {
            "default": None, "metavar": "PATH",
            "help": f"where the results file goes (default: ini ftevals_results, else {DEFAULT_RESULTS})"}),
        Option("--ftevals-report", {
            "default": None, "metavar": "PATH",
            "help": f"where the HTML report goes (default: ini ftevals_report, else {DEFAULT_REPORT})"}),
        Option("--ftevals-no-report", {"action": "store_true", "help": "do not write the HTML report"}),
        Option("--ftevals-mlflow", {
            "nargs": "?", "const": "mlruns", "default": None, "metavar": "URI",
            "help": "log the run to MLflow (default URI: ini ftevals_mlflow, else ./mlruns beside the ini file); "
                    "needs pip install 'ftevals[mlflow]'"}),
        Option("--ftevals-summary-md", {
            "default": None, "metavar": "PATH",
            "help": "also write a markdown summary of verdicts and gates (default: ini ftevals_summary_md, else none; "
                    "appended to $GITHUB_STEP_SUMMARY whenever that is set)"}),
        Option("--ftevals-cache-dir", {
            "default": None, "metavar": "DIR",
            "help": "generation cache folder (default: ini ftevals_cache_dir, else ~/.cache/ftevals/generations)"}),
        Option("--ftevals-cache", {
            "choices": CACHE_MODES, "default": "use",
            "help": "use: read and write the cache; refresh: regenerate everything and overwrite; off: no cache"}),
        Option("--ftevals-limit", {
            "type": int_at_least(1), "default": None, "metavar": "N",
            "help": "evaluate at most N examples per suite (quick runs; baselines of shrunk suites are skipped)"}),
        Option("--ftevals-seed", {"type": int, "default": None, "metavar": "N",
                                  "help": "seed for bootstrap resampling (default 0)"}),
        Option("--ftevals-resamples", {
            "type": int_at_least(MIN_RESAMPLES, " for a meaningful 95% CI"), "default": None, "metavar": "N",
            "help": f"bootstrap resamples (default {DEFAULT_RESAMPLES})"}),
        Option(UPDATE_FLAG, {"action": "store_true",
                             "help": "accept the current values as each suite's committed baseline"}),
    )


INI_KEYS: tuple[IniKey, ...] = (
    IniKey("ftevals_models", "model table, one 'NAME = SPEC' per line "
                             "(SPEC: base, base+ADAPTER_DIR, MODEL_DIR[+ADAPTER_DIR])", [], "linelist"),
    IniKey("ftevals_candidates", "model names that join every suite whose reference shares their base "
                                 "(as models added on the command line do)", [], "linelist"),
    IniKey("ftevals_backend", "generation backend", DEFAULT_BACKEND),
    IniKey("ftevals_backend_options", "KEY=VALUE backend settings", [], "linelist"),
    IniKey("ftevals_results", "results file path (relative to the ini file)", DEFAULT_RESULTS),
    IniKey("ftevals_report", "HTML report path (relative to the ini file)", DEFAULT_REPORT),
    IniKey("ftevals_mlflow", "log every run to this MLflow tracking URI or folder (relative to the ini file)"),
    IniKey("ftevals_summary_md", "markdown summary path (relative to the ini file); none by default"),
    IniKey("ftevals_cache_dir", "generation cache folder (relative to the ini file)"),
    IniKey("ftevals_baseline_dir", "baseline folder, relative to each suite file's folder", "baselines"),
    IniKey("ftevals_baseline_tolerance", "a baseline value changed when it moved by more than this (default 1e-9)"),
    IniKey("ftevals_baseline_use_ci", "auto (default): compare baselines exactly on the same dtype and hardware, "
                                      "within the run's CI otherwise; true: always within the CI; false: always exactly"),
    IniKey("ftevals_alpha", "significance level of comparisons and gates (default 0.05: 95% intervals)"),
    IniKey("ftevals_prices", "model prices for the decision card's cost per 1,000 requests, one "
                             "'NAME = input_per_1m_tokens=X output_per_1m_tokens=Y' per line "
                             "(also _per_1k_tokens, _per_token)", [], "linelist"),
)

#: `ftevals run` flag -> the pytest option it passes on, in the order they are passed.
RUN_FLAGS = {"--limit": "--ftevals-limit", "--backend": "--ftevals-backend", "--results": "--ftevals-results"}


def option(flag: str) -> Option:
    return next(o for o in declared_options() if o.flag == flag)


@dataclass(frozen=True)
class Values:
    """Option and ini values as plain data, what `read_settings` reads.

    `get("--ftevals-backend")` is an option's value and `get("ftevals_backend")` an ini value, each
    its declared default when not set. Relative paths in ini values are relative to `ini_dir`,
    those in options to `cwd` (the folder the run started in).
    """

    get: Callable[[str], Any]
    ini_dir: Path
    cwd: Path

    @classmethod
    def from_dicts(cls, options: Mapping[str, Any] | None = None, ini: Mapping[str, Any] | None = None, *,
                   ini_dir: Path, cwd: Path | None = None) -> Values:
        """Values from `{flag: value}` and `{ini key: value}`; what they leave out takes its default."""
        defaults = {o.flag: o.default for o in declared_options()} | {k.name: k.default for k in INI_KEYS}
        given = {**(options or {}), **(ini or {})}
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            raise NotFoundError(f"no such option or ini key: {', '.join(unknown)}; options are the flags "
                                "`pytest --help` lists under ftevals (e.g. --ftevals-limit), ini keys start with "
                                "ftevals_")
        values = {**defaults, **given}
        return cls(values.__getitem__, Path(ini_dir), Path(cwd if cwd is not None else ini_dir))

    def path(self, flag: str, ini_key: str) -> Path | None:
        """A path setting: the option anchored at `cwd`, else the ini value anchored at `ini_dir`."""
        value = self.get(flag)
        if value:
            return _anchor(self.cwd, value)
        ini_value = self.get(ini_key)
        return _anchor(self.ini_dir, ini_value) if ini_value else None


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
    cache_mode: CacheMode = "use"
    update_baseline: bool = False
    #: Baseline folder, relative to each suite file's folder.
    baseline_dir: str = "baselines"
    #: Models that join every suite they can (see `suite.suite_model_names`): the CI candidates.
    candidates: tuple[str, ...] = ()
    baseline_tolerance: float = 1e-9
    #: None: exact on the same dtype and hardware, within the run's CI otherwise.
    baseline_use_ci: bool | None = None
    alpha: float = 0.05
    #: The xdist run id under xdist: its workers generate one at a time (one engine, not one each).
    exclusive_group: str | None = None
    #: Markdown summary for CI pages (ci_summary.py); None: only $GITHUB_STEP_SUMMARY, when set.
    summary_md: Path | None = None
    #: MLflow tracking URI (tracking.py); None: no tracking.
    mlflow: str | None = None
    #: Model -> {"input_per_1m_tokens": X, "output_per_1m_tokens": Y} (ini ftevals_prices): the
    #: decision card's cost per 1,000 requests and the report's cost columns.
    prices: dict[str, dict[str, float]] = field(default_factory=dict)

    def run_config(self) -> Any:
        from .pipeline import RunConfig  # lazily: the pipeline imports numpy

        return RunConfig(models=self.models, backend=self.backend, backend_options=self.backend_options,
                         cache_dir=self.cache_dir, cache_mode=self.cache_mode, seed=self.seed,
                         limit=self.limit, resamples=self.resamples, candidates=self.candidates, alpha=self.alpha,
                         exclusive_group=self.exclusive_group)


def read_settings(values: Values) -> Settings:
    """Read and check every setting; ConfigError names the bad value and where it came from."""
    from .models import cache_dir

    from .backends.registry import backend_names

    backend = values.get("--ftevals-backend") or values.get("ftevals_backend") or DEFAULT_BACKEND
    names = backend_names()
    if backend not in names:
        raise ConfigError(f"ini ftevals_backend: unknown backend {backend!r}; expected one of {', '.join(names)}")
    seed, resamples = values.get("--ftevals-seed"), values.get("--ftevals-resamples")
    table = model_table(values)
    settings = Settings(
        models=table,
        backend=backend,
        backend_options=backend_options(values),
        cache_dir=values.path("--ftevals-cache-dir", "ftevals_cache_dir") or (cache_dir() / "generations"),
        results=values.path("--ftevals-results", "ftevals_results") or values.ini_dir / DEFAULT_RESULTS,
        report=None if values.get("--ftevals-no-report") else values.path("--ftevals-report", "ftevals_report"),
        summary_md=values.path("--ftevals-summary-md", "ftevals_summary_md"),
        mlflow=_mlflow_uri(values),
        limit=values.get("--ftevals-limit"),
        seed=seed if seed is not None else 0,
        resamples=resamples if resamples is not None else DEFAULT_RESAMPLES,
        cache_mode=values.get("--ftevals-cache"),
        update_baseline=bool(values.get(UPDATE_FLAG)),
        baseline_dir=values.get("ftevals_baseline_dir"),
        candidates=candidate_names(values, table),
        baseline_tolerance=_ini_number(values, "ftevals_baseline_tolerance", 1e-9, low=0.0),
        baseline_use_ci=_ini_use_ci(values),
        alpha=_ini_number(values, "ftevals_alpha", 0.05, low=0.0, high=1.0),
        prices=prices(values),
    )
    check_conflicts(values, settings)
    return settings


def check_conflicts(values: Values, settings: Settings) -> None:
    """Options that contradict each other are refused at start-up, instead of one of them silently winning.

    (`--ftevals-update-baseline` with a `--ftevals-limit` that shrinks a suite is refused after
    preparation, when the suites' sizes are known: see `baseline.BaselinePolicy`.)
    """
    report = values.get("--ftevals-report")
    if values.get("--ftevals-no-report") and report:
        raise ConfigError(f"--ftevals-no-report and --ftevals-report {report} contradict each other; drop one of them")
    if settings.report is not None and settings.report.resolve() == settings.results.resolve():
        raise ConfigError(f"the results file and the HTML report would both be written to {settings.results}; "
                          "give them different paths (--ftevals-results, --ftevals-report)")


def model_table(values: Values) -> dict[str, ModelSpec]:
    """`base` (the embedded model) plus the ini table plus --ftevals-model, later entries winning."""
    table: dict[str, ModelSpec] = {"base": ModelSpec("base", DEFAULT_BASE)}
    for source, line, folder in _entries(values, "ftevals_models", "--ftevals-model"):
        name, eq, spec_text = line.partition("=")
        if not eq or not name.strip():
            raise ConfigError(f"{source}: {line!r} is not 'NAME = SPEC' (e.g. 'tuned = base+adapters/v2')")
        try:
            spec = parse_model_spec(name.strip(), spec_text)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        table[spec.name] = _anchor_paths(spec, folder)
    return table


def _ini_number(values: Values, key: str, default: float, *, low: float, high: float | None = None) -> float:
    """A number from the ini: >= low (and < high when given); ConfigError names the key and the value."""
    text = str(values.get(key) or "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < low or (high is not None and not low < value < high):
        bounds = f"between {low:g} and {high:g} (exclusive)" if high is not None else f"a number >= {low:g}"
        raise ConfigError(f"ini {key}: {text!r} is not {bounds}")
    return value


def prices(values: Values) -> dict[str, dict[str, float]]:
    """`NAME = KEY=VALUE KEY=VALUE` lines (keys as the report's price files: input_per_1m_tokens, ...),
    checked now: a bad price stops the run before any model runs, naming the line."""
    out: dict[str, dict[str, float]] = {}
    for line in values.get("ftevals_prices"):
        name, eq, rest = line.partition("=")
        entry: dict[str, float] = {}
        for part in rest.replace(",", " ").split():
            key, eq2, value = part.partition("=")
            try:
                entry[key.strip()] = float(value)
            except ValueError:
                eq2 = ""
            if not eq2:
                raise ConfigError(f"ini ftevals_prices: {line!r}: {part!r} is not KEY=NUMBER "
                                  "(e.g. 'tuned = input_per_1m_tokens=0.30 output_per_1m_tokens=1.20')")
        if not eq or not name.strip():
            raise ConfigError(f"ini ftevals_prices: {line!r} is not 'NAME = input_per_1m_tokens=X output_per_1m_tokens=Y'")
        out[name.strip()] = entry
    if not out:
        return out
    from .report.views.usage import normalize_prices  # the one reading of a price entry (loads the report: only here)

    try:
        normalize_prices(out)
    except ConfigError as exc:
        raise ConfigError(f"ini ftevals_prices: {exc}") from None
    return out


def _ini_use_ci(values: Values) -> bool | None:
    text = str(values.get("ftevals_baseline_use_ci") or "auto").strip().lower()
    choices = {"auto": None, "true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
    if text not in choices:
        raise ConfigError(f"ini ftevals_baseline_use_ci: {text!r} is not auto, true or false")
    return choices[text]


def candidate_names(values: Values, table: Mapping[str, ModelSpec]) -> tuple[str, ...]:
    """The run's candidates: every new model given with --ftevals-model (a CI job adding the adapter
    to promote), plus the table models the ini lists under `ftevals_candidates`."""
    names: list[str] = []
    for line in values.get("ftevals_candidates"):
        for name in line.replace(",", " ").split():
            if name not in table:
                raise ConfigError(f"ini ftevals_candidates: {name!r} is not in the model table "
                                  f"(known: {', '.join(table)}); define it in ftevals_models or with --ftevals-model")
            names.append(name)
    # A command-line model that redefines an ini model (or `base`) replaces it where it already runs;
    # only a new name is a candidate.
    in_ini = {"base"} | {line.partition("=")[0].strip() for line in values.get("ftevals_models")}
    for item in values.get("--ftevals-model"):
        name = item.partition("=")[0].strip()
        if name and name not in in_ini:
            names.append(name)
    return tuple(dict.fromkeys(names))


def _mlflow_uri(values: Values) -> str | None:
    """The tracking URI when tracking is on (checked here: a missing mlflow stops the run before it starts)."""
    given, ini = values.get("--ftevals-mlflow"), values.get("ftevals_mlflow")
    if not given and not ini:
        return None
    from .tracking import require_mlflow, tracking_uri

    require_mlflow()
    return tracking_uri(given, values.cwd) if given and given != "mlruns" else tracking_uri(ini or "mlruns", values.ini_dir)


def backend_options(values: Values) -> dict[str, Any]:
    """KEY=VALUE pairs; VALUE is parsed as JSON when it is JSON, else kept as a string."""
    out: dict[str, Any] = {}
    for source, item, folder in _entries(values, "ftevals_backend_options", "--ftevals-backend-option"):
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
            out[key] = str(_anchor(folder, out[key]))
    return out


def _entries(values: Values, ini_key: str, flag: str) -> list[tuple[str, str, Path]]:
    """(where it was written, entry, folder its paths are relative to): ini lines first, then options."""
    return ([(f"ini {ini_key}", line, values.ini_dir) for line in values.get(ini_key)]
            + [(flag, item, values.cwd) for item in values.get(flag)])


def _anchor(folder: Path, text: str) -> Path:
    p = Path(text).expanduser()
    return p if p.is_absolute() else folder / p


def _anchor_paths(spec: ModelSpec, folder: Path) -> ModelSpec:
    """Relative model and adapter folders are relative to where they were written (ini or cwd)."""

    def anchor(p: str | None) -> str | None:
        if p is None or p == DEFAULT_BASE:
            return p
        # `org/name` that is no folder here is a Hugging Face id (resolved from the local hub cache).
        if looks_like_repo_id(p) and not _anchor(folder, p).exists():
            return p
        return str(_anchor(folder, p))

    if spec.served_elsewhere:
        return spec  # `openai:MODEL_ID`: a server's model id, not a path
    return ModelSpec(spec.name, anchor(spec.base) or DEFAULT_BASE, anchor(spec.adapter), spec.fewshot, spec.backend)


__all__ = [
    "DEFAULT_REPORT",
    "DEFAULT_RESULTS",
    "INI_KEYS",
    "RUN_FLAGS",
    "UPDATE_FLAG",
    "IniKey",
    "Option",
    "Settings",
    "Values",
    "backend_options",
    "candidate_names",
    "check_conflicts",
    "declared_options",
    "int_at_least",
    "model_table",
    "option",
    "prices",
    "read_settings",
]
