"""A judged suite through the real pipeline, served by the replay backend with a scripted judge.

Twenty BANKING77 rows, models `base` (right on 12) and `tuned` (right on 16), the suite's rubric
the classification one (criteria correctness and format), and the judge `base` answering as
tests/support/scriptedjudge.py's behaviour says.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.miniproject import MiniProject, banking77_rows, preload
from support.scriptedjudge import CRITERIA, judge_rows

from ftevals.pipeline import RunConfig, execute, prepare
from ftevals.results import Results, save
from ftevals.specs import ModelSpec
from ftevals.suite import Judge, Suite

MODELS = {"base": ModelSpec("base"), "tuned": ModelSpec("tuned", adapter="adapters/tuned")}


@dataclass
class JudgedProject:
    root: Path
    rows: list[dict[str, Any]]

    @property
    def ids(self) -> list[str]:
        return [r["id"] for r in self.rows]

    def write_predictions(self, behaviour: str) -> Path:
        labels = [r["messages"][-1]["content"] for r in self.rows]
        preds = []
        for model, right in (("base", 12), ("tuned", 16)):
            for i, ex in enumerate(self.ids):
                preds.append({"model": model, "id": ex, "text": labels[i] if i < right else labels[(i + 1) % len(labels)]})
        preds += judge_rows(self.ids, list(MODELS), "base", CRITERIA, behaviour)
        path = self.root / f"preds-{behaviour}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in preds), encoding="utf-8")
        return path

    def suite(self, gates: Sequence[str] = (), judge: Judge | str | None = "base", **fields: Any) -> Suite:
        return Suite(name="demo", task="classification", dataset="data.jsonl", labels="labels.json",
                     models=("base", "tuned"), gates=tuple(gates), judge=judge, root=str(self.root), **fields)

    def run(self, behaviour: str, gates: Sequence[str] = (), judge: Judge | str | None = "base",
            cache: str = "cache", **fields: Any) -> Results:
        config = RunConfig(models=MODELS, backend="replay",
                           backend_options={"path": str(self.write_predictions(behaviour))},
                           cache_dir=self.root / cache, resamples=400)
        return execute(prepare([self.suite(gates, judge, **fields)], config))

    def save(self, results: Results, name: str = "results.json") -> Path:
        return save(self.root / name, results)


@pytest.fixture
def judged(tmp_path: Path) -> JudgedProject:
    rows = banking77_rows()
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    labels = list(dict.fromkeys(r["messages"][-1]["content"] for r in rows))
    (tmp_path / "labels.json").write_text(json.dumps(labels), encoding="utf-8")
    return JudgedProject(tmp_path, rows)


@pytest.fixture(scope="session", autouse=True)
def _import_before_pytester() -> None:
    """Import what an inner plugin run imports, once, up front (see support.miniproject.preload)."""
    preload()


@pytest.fixture
def project(pytester: pytest.Pytester) -> MiniProject:
    """The plugin's mini project (tests/support/miniproject.py): base right on 12 of 20, tuned on 16."""
    return MiniProject.create(pytester, banking77_rows())
