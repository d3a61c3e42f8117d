"""A small ftevals project in a pytester folder, served by the replay backend: twenty real BANKING77
rows, a labels file, one suite with one gate, predictions for `base` and `tuned`, and a pytest.ini.

    project = MiniProject.create(pytester)
    result = project.run("--ftevals-limit", "5")
"""

from __future__ import annotations

import json
from collections.abc import Mapping
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

SUITE = """\
from ftevals import Suite

demo = Suite(name="demo", task="classification", dataset="data.jsonl", labels="labels.json",
             models=("base", "tuned"), gates=("accuracy >= base - 0.05",))
"""

#: No .pytest_cache; not the hypothesis plugin (it imports hypothesis afresh in every in-process
#: run, 2 s each); fewer bootstrap resamples, which keeps each in-process run well under a second.
BASE_ARGS = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "--ftevals-resamples", "200")


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
        rows = rows if rows is not None else banking77_rows()
        pytester.makeini(INI)
        pytester.makepyfile(test_suite=SUITE)
        (pytester.path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        labels = sorted({r["messages"][-1]["content"] for r in rows})
        (pytester.path / "labels.json").write_text(json.dumps(labels), encoding="utf-8")
        project = cls(pytester, rows)
        project.write_predictions({"base": 12, "tuned": 16})
        return project

    @property
    def path(self) -> Path:
        return self.pytester.path

    def write_predictions(self, correct: Mapping[str, int], texts: Mapping[str, str] | None = None) -> Path:
        """Model -> how many of the first examples it gets right; the others get another label.
        `texts` overrides the answer for given example ids (all models)."""
        out = []
        for model, k in correct.items():
            for i, row in enumerate(self.rows):
                gold = row["messages"][-1]["content"]
                wrong = self.rows[(i + 1) % len(self.rows)]["messages"][-1]["content"]
                text = (texts or {}).get(row["id"], gold if i < k else wrong)
                out.append({"model": model, "id": row["id"], "text": text})
        path = self.path / "preds.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in out), encoding="utf-8")
        return path

    def run(self, *args: str) -> pytest.RunResult:
        return self.pytester.runpytest(*BASE_ARGS, *args)

    def written(self) -> list[str]:
        """Files under out/ and cache/: what a refused run must not leave behind."""
        found = [p for p in (self.path / "out", self.path / "cache") if p.exists()]
        return sorted(str(f.relative_to(self.path)) for p in found for f in p.rglob("*"))
