"""One exception tree for everything ftevals raises on purpose.

    FtevalsError                      base class; catch this to catch all of ours
    ├── ConfigError (ValueError)      bad option, unknown metric, malformed gate, conflicting settings
    ├── DatasetError (ValueError)     a dataset file is unreadable or has bad rows (lists every bad row)
    ├── ModelSpecError (ValueError)   a model or adapter spec cannot be used (missing folder, wrong base, ...)
    ├── BackendError (RuntimeError)   a backend failed while generating (engine died, server error, ...)
    │   └── MissingDependencyError (ImportError-like message with the install command)
    ├── CacheError (RuntimeError)     the generation cache cannot be read or written
    ├── ResultsError (ValueError)     a results file is missing, corrupt or of an unknown schema version
    └── RatingsError (ValueError)     returned rater sheets are malformed (lists every problem)

Every message is a sentence that names the bad value and how to fix it. Errors that concern a
file carry `path` and, where it makes sense, `line`, so that callers can render `file:line: ...`.
Library errors also subclass the builtin they resemble, so `except ValueError` keeps working.
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


class CacheError(FtevalsError, RuntimeError):
    """The generation cache cannot be read or written."""


class ResultsError(FtevalsError, ValueError):
    """A results file is missing, corrupt or written by an unknown schema version."""


class RatingsError(_ProblemsError, ValueError):
    """Returned rating sheets are malformed; `problems` lists every issue, nothing is imported."""

    headline = "rating sheets are invalid"


__all__ = [
    "BackendError",
    "CacheError",
    "ConfigError",
    "DatasetError",
    "FtevalsError",
    "MissingDependencyError",
    "ModelSpecError",
    "Problem",
    "RatingsError",
    "ResultsError",
]
