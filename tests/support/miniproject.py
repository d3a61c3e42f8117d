"""A small ftevals project inside pytester's folder, served by the replay backend (no model at all).

Twenty real BANKING77 test rows with twenty distinct intents (or the rows a test passes), a labels
file, one suite with one gate, a predictions file saying which examples each model gets right, and a
pytest.ini with the model table. Tests rewrite the suite or the predictions and run pytest on the
project, in-process (`project.run`) or, where a fresh interpreter is the point (xdist, import checks,
two processes at once), in a subprocess.

    project = MiniProject.create(pytester)      # base right on 12 of 20 examples, tuned on 16
    result = project.run("--ftevals-limit", "5")

In-process runs restore `sys.modules` afterwards (pytester snapshots it when the fixture is set
up), so a folder whose tests run the plugin in-process calls `preload()` from a session-scoped
autouse fixture, before any pytester fixture exists.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
N_ROWS = 20

INI = """\
[pytest]
ftevals_models =
    base = default
    tuned = base+adapters/tuned
ftevals_backend = replay
ftevals_backend_options = path=preds.jsonl
ftevals_cache_dir = cache
ftevals_results = out/results.json
ftevals_report = out/report.html
"""

#: Options every run gets: no .pytest_cache in the project; not the hypothesis plugin (it would
#: import hypothesis afresh in every in-process run, 2 s each); fewer resamples (the CIs stay
#: meaningful at 400, and each in-process run stays well under a second).
BASE_ARGS = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "--ftevals-resamples", "400")


def preload() -> None:
    """Import what an inner run imports lazily, once, before the first in-process run.

    An in-process pytester run restores `sys.modules` afterwards, dropping every module first
    imported inside it; the next run would import numpy a second time (which numpy refuses) and
    re-run the metric registrations. Modules imported before the runs are kept.
    """
    import filelock  # noqa: F401

    import ftevals.backends.openai_http
    import ftevals.backends.replay
    import ftevals.backends.vllm
    import ftevals.baseline
    import ftevals.pipeline
    import ftevals.report
    import ftevals.rescore
    import ftevals.summary  # noqa: F401
    from ftevals.metrics import list_metrics

    list_metrics()  # registers the built-in metrics


def banking77_rows(n: int = N_ROWS) -> list[dict[str, Any]]:
    """Every 150th row of the committed test file: n rows with n different intents."""
    lines = (ROOT / "data" / "banking77" / "test.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[::150][:n]]


@dataclass
class MiniProject:
    pytester: pytest.Pytester
    rows: list[dict[str, Any]]

    @classmethod
    def create(cls, pytester: pytest.Pytester, rows: list[dict[str, Any]] | None = None) -> MiniProject:
        """The project, with base right on the first 12 examples and tuned on the first 16."""
        project = cls(pytester, rows if rows is not None else banking77_rows())
        pytester.makeini(INI)
        (project.path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in project.rows), encoding="utf-8")
        labels = list(dict.fromkeys(project.labels))  # the label set, in the order of the rows
        (project.path / "labels.json").write_text(json.dumps(labels), encoding="utf-8")
        project.write_suite()
        project.write_predictions({"base": 12, "tuned": 16})
        return project

    @property
    def path(self) -> Path:
        return self.pytester.path

    @property
    def ids(self) -> list[str]:
        return [r["id"] for r in self.rows]

    @property
    def labels(self) -> list[str]:
        """Each row's gold label, in row order."""
        return [r["messages"][-1]["content"] for r in self.rows]

    @property
    def results_path(self) -> Path:
        return self.path / "out" / "results.json"

    @property
    def cache_path(self) -> Path:
        return self.path / "cache"

    def write_suite(self, body: str | None = None, **fields: Any) -> Path:
        """test_suite.py with one Suite; `fields` override the defaults, `body` replaces the file."""
        if body is None:
            spec = {"name": "demo", "task": "classification", "dataset": "data.jsonl", "labels": "labels.json",
                    "models": ["base", "tuned"], "gates": ["accuracy >= base - 0.05"], **fields}
            args = ",\n    ".join(f"{k}={v!r}" for k, v in spec.items())
            body = f"from ftevals import Suite\n\ndemo = Suite(\n    {args},\n)\n"
        return self.pytester.makepyfile(test_suite=body)

    def write_predictions(self, correct: Mapping[str, int | Iterable[int]], name: str = "preds.jsonl", *,
                          texts: Mapping[str, str] | None = None) -> Path:
        """Model -> how many (the first k) or which example indexes it answers correctly; a wrong
        answer is the next row's label, another valid label, so that it counts against precision too.
        `texts` (example id -> answer) overrides the answer of those examples for every model."""
        out = []
        for model, which in correct.items():
            right = set(range(which)) if isinstance(which, int) else set(which)
            for i, ex_id in enumerate(self.ids):
                text = self.labels[i] if i in right else self.labels[(i + 1) % len(self.labels)]
                out.append({"model": model, "id": ex_id, "text": (texts or {}).get(ex_id, text)})
        path = self.path / name
        path.write_text("".join(json.dumps(r) + "\n" for r in out), encoding="utf-8")
        return path

    def run(self, *args: str) -> pytest.RunResult:
        return self.pytester.runpytest(*BASE_ARGS, *args)

    def run_subprocess(self, *args: str, timeout: float = 120) -> pytest.RunResult:
        return self.pytester.runpytest_subprocess(*BASE_ARGS, *args, timeout=timeout)

    def results(self, path: Path | None = None) -> dict[str, Any]:
        from ftevals.results import read_results

        return read_results(path or self.results_path)

    def written_files(self) -> list[str]:
        """Results, report and cache files that exist: what a refused or failed run must not leave behind."""
        found = [p for p in (self.path / "out", self.cache_path) if p.exists()]
        return sorted(str(f.relative_to(self.path)) for p in found for f in p.rglob("*"))


__all__ = ["BASE_ARGS", "INI", "MiniProject", "N_ROWS", "banking77_rows", "preload"]
