"""A tiny ftevals project inside pytester's folder, served by the replay backend (no model at all).

Twenty real BANKING77 test rows with twenty distinct intents, a labels file, a suite file, a
predictions file saying which examples each model gets right, and a pytest.ini with the model
table. Tests rewrite the suite or the predictions and run pytest on the project, in-process
(`project.run`) or, where a fresh interpreter is the point (xdist, import checks), in a subprocess.
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


def _banking77_rows() -> list[dict[str, Any]]:
    """Every 150th row of the real test file: 20 rows, 20 different intents."""
    lines = (ROOT / "data" / "banking77" / "test.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[::150][:N_ROWS]]


@dataclass
class Project:
    pytester: pytest.Pytester
    rows: list[dict[str, Any]]

    @property
    def path(self) -> Path:
        return self.pytester.path

    @property
    def ids(self) -> list[str]:
        return [r["id"] for r in self.rows]

    @property
    def labels(self) -> list[str]:
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

    def write_predictions(self, correct: Mapping[str, int | Iterable[int]], name: str = "preds.jsonl") -> Path:
        """Model -> how many (the first k) or which example indexes it answers correctly; wrong
        answers are another valid label, so that they count against precision too."""
        rows = []
        for model, which in correct.items():
            right = set(range(which)) if isinstance(which, int) else set(which)
            for i, ex_id in enumerate(self.ids):
                text = self.labels[i] if i in right else self.labels[(i + 1) % len(self.labels)]
                rows.append({"model": model, "id": ex_id, "text": text})
        path = self.path / name
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        return path

    def run(self, *args: str) -> pytest.RunResult:
        return self.pytester.runpytest(*BASE_ARGS, *args)

    def run_subprocess(self, *args: str, timeout: float = 120) -> pytest.RunResult:
        return self.pytester.runpytest_subprocess(*BASE_ARGS, *args, timeout=timeout)

    def results(self, path: Path | None = None) -> dict[str, Any]:
        from ftevals.results import read_results

        return read_results(path or self.results_path)

    def written_files(self) -> list[str]:
        """Results, report and cache files that exist: what a failed run must not leave behind."""
        found = [p for p in (self.path / "out", self.cache_path) if p.exists()]
        return sorted(str(f.relative_to(self.path)) for p in found for f in p.rglob("*"))


@pytest.fixture(scope="session", autouse=True)
def _import_before_pytester() -> None:
    """Import what an inner run imports, once, up front.

    An in-process pytester run restores `sys.modules` afterwards, dropping every module first
    imported inside it; the next run would import numpy a second time (which numpy refuses) and
    re-run the metric registrations. Modules imported before the runs are kept.
    """
    import filelock  # noqa: F401

    import ftevals.backends.replay  # noqa: F401
    import ftevals.baseline  # noqa: F401
    import ftevals.pipeline  # noqa: F401
    import ftevals.report  # noqa: F401
    import ftevals.rescore  # noqa: F401
    import ftevals.summary  # noqa: F401
    from ftevals.metrics import list_metrics

    list_metrics()  # registers the built-in metrics


@pytest.fixture(scope="session")
def banking77_rows() -> list[dict[str, Any]]:
    return _banking77_rows()


@pytest.fixture
def project(pytester: pytest.Pytester, banking77_rows: list[dict[str, Any]]) -> Project:
    """The project with base right on 12 of 20 examples and tuned on 16 (0.600 vs 0.800)."""
    pytester.makeini(INI)
    data = "".join(json.dumps(r) + "\n" for r in banking77_rows)
    (pytester.path / "data.jsonl").write_text(data, encoding="utf-8")
    labels = [r["messages"][-1]["content"] for r in banking77_rows]
    (pytester.path / "labels.json").write_text(json.dumps(labels), encoding="utf-8")
    proj = Project(pytester, banking77_rows)
    proj.write_suite()
    proj.write_predictions({"base": 12, "tuned": 16})
    return proj
