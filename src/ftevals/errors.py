"""One exception tree for everything ftevals raises on purpose.

    FtevalsError                      base class; catch this to catch all of ours
    ├── ConfigError (ValueError)      bad option, unknown metric, malformed gate, conflicting settings
    ├── DatasetError (ValueError)     a dataset file is unreadable or has bad rows (lists every bad row)
    ├── ModelSpecError (ValueError)   a model or adapter spec cannot be used (missing folder, wrong base, ...)
    ├── MetricError (ValueError)      a metric got inputs it cannot score, or a custom one returned bad output
    ├── NotFoundError (KeyError)      a model, metric or option looked up by name does not exist
    ├── BackendError (RuntimeError)   a backend failed while generating (engine died, server error, ...)
    │   ├── MissingDependencyError (ImportError-like message with the install command)
    │   └── IntegrityError            an adapter had no effect on the engine's outputs (integrity.py)
    ├── CacheError (RuntimeError)     the generation cache cannot be read or written
    ├── ResultsError (ValueError)     a results file is missing, corrupt or of an unknown schema version
    │   ├── RecordError               a JSON value does not fit the record it fills (names the path)
    │   └── UnstorableValueError (TypeError)  a value a results file cannot hold (not JSON)
    ├── RatingsError (ValueError)     returned rater sheets are malformed (lists every problem)
    ├── GateFailed (AssertionError)   a gate did not hold: the failure of its pytest test
    └── BrowserNotFoundError (FileNotFoundError)  no Chromium for the report's browser checks

Every message is a sentence that names the bad value and how to fix it. Errors that concern a
file carry `path` and, where it makes sense, `line`, so that callers can render `file:line: ...`.
Library errors also subclass the builtin they resemble, so `except ValueError` keeps working.
The modules that raise some of these re-export them (`from ftevals.integrity import IntegrityError`
and `from ftevals.plugin import GateFailed` keep working); they are defined here only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class FtevalsError(Exception):
    """Base class of every error ftevals raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file: where it is, what is wrong and what was expected."""

    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{where}: {self.message}"


class _ProblemsError(FtevalsError):
    """An error that carries a list of problems, all reported at once (not just the first)."""

    headline = "invalid input"

    def __init__(self, problems: list[Problem] | Problem | str, *, path: str | Path | None = None) -> None:
        if isinstance(problems, str):
            problems = [Problem(str(path) if path else "<input>", None, problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        self.path = str(path) if path is not None else (self.problems[0].path if self.problems else None)
        super().__init__(self._render())

    def _render(self) -> str:
        shown = self.problems[:50]
        lines = [str(p) for p in shown]
        if len(self.problems) > len(shown):
            lines.append(f"... and {len(self.problems) - len(shown)} more problems")
        if len(lines) == 1:
            return lines[0]
        return f"{self.headline}: {len(self.problems)} problems\n" + "\n".join(f"  {line}" for line in lines)


class ConfigError(FtevalsError, ValueError):
    """A configuration value (option, suite setting, gate expression, metric name) is invalid."""


class DatasetError(_ProblemsError, ValueError):
    """A dataset file cannot be used; `problems` lists every bad row as file:line: message."""

    headline = "dataset is invalid"


class ModelSpecError(FtevalsError, ValueError):
    """A model or adapter specification cannot be used."""


class BackendError(FtevalsError, RuntimeError):
    """A generation backend failed."""


class MissingDependencyError(BackendError):
    """An optional dependency is not installed; the message gives the exact install command."""

    def __init__(self, module: str, install: str, why: str = "") -> None:
        reason = f" ({why})" if why else ""
        super().__init__(f"the Python module '{module}' is not installed{reason}; install it with: {install}")
        self.module = module
        self.install = install


class IntegrityError(BackendError):
    """An adapter had no effect on the engine's outputs: its numbers would be the base model's."""


class MetricError(FtevalsError, ValueError):
    """A metric cannot score: predictions and examples do not pair up, or a custom metric's result
    does not fit its inputs (one per-example value per prediction)."""


class NotFoundError(FtevalsError, KeyError):
    """A name looked up in a run or its settings (model, metric, option) does not exist; the
    message lists the names that do."""

    def __str__(self) -> str:
        # KeyError's own str() quotes its argument (it is meant for a bare key): ours is a sentence.
        return Exception.__str__(self)


class CacheError(FtevalsError, RuntimeError):
    """The generation cache cannot be read or written."""


class ResultsError(FtevalsError, ValueError):
    """A results file is missing, corrupt or written by an unknown schema version."""


class RecordError(ResultsError):
    """A JSON value does not fit the record it should fill; the message names the path."""


class UnstorableValueError(ResultsError, TypeError):
    """A value that a results file cannot hold (it holds JSON: numbers, strings, lists, objects)."""


class RatingsError(_ProblemsError, ValueError):
    """Returned rating sheets are malformed; `problems` lists every issue, nothing is imported."""

    headline = "rating sheets are invalid"


class GateFailed(FtevalsError, AssertionError):
    """A gate did not hold; the message is the one-line explanation (its pytest test fails with it)."""


class BrowserNotFoundError(FtevalsError, FileNotFoundError):
    """No Chromium executable; the message gives the install command."""


__all__ = [
    "BackendError",
    "BrowserNotFoundError",
    "CacheError",
    "ConfigError",
    "DatasetError",
    "FtevalsError",
    "GateFailed",
    "IntegrityError",
    "MetricError",
    "MissingDependencyError",
    "ModelSpecError",
    "NotFoundError",
    "Problem",
    "RatingsError",
    "RecordError",
    "ResultsError",
    "UnstorableValueError",
]
