"""The report against what the pipeline really writes, not against our reading of the schema.

A small run through `ftevals.pipeline` with the replay backend (predictions derived from the
datasets' own answers, seeded, no model generation) and the real metrics: the report must draw
each task's sections from it. And the real results file, when a `pytest suites/` run has left one.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from ftevals.report import render_html

ROOT = Path(__file__).resolve().parents[2]
#: Real generations: `pytest suites/ --ftevals-limit 20` on the embedded model and demo adapters.
REAL_RESULTS = ROOT / "tests" / "fixtures" / "real_results.json"
N = 24


def _rows(path: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (ROOT / path).read_text(encoding="utf-8").splitlines() if line.strip()]


def _answer(row: dict[str, Any]) -> str:
    last = row["messages"][-1]
    return last["content"] if last["role"] == "assistant" else ""


def _predictions(rng: random.Random) -> list[dict[str, Any]]:
    """Every model x every row (the suites sample their rows), right with a per-model probability."""
    out = []
    labels = json.loads((ROOT / "data/banking77/labels.json").read_text())

    def add(model: str, row: dict[str, Any], text: str) -> None:
        out.append({"model": model, "id": row["id"], "text": text, "tokens_in": 90, "tokens_out": len(text.split()) + 1,
                    "latency_s": round(rng.uniform(0.05, 0.4), 3)})

    for row in _rows("data/banking77/test.jsonl"):
        for model, p in (("base", 0.1), ("banking77", 0.7)):
            add(model, row, _answer(row) if rng.random() < p else rng.choice([*labels[:5], "Please contact support."]))
    for row in _rows("data/restaurant8k/test.jsonl"):
        gold = _answer(row)
        add("base", row, gold if rng.random() < 0.3 else f"Sure! {gold}")
        add("banking77", row, gold if rng.random() < 0.8 else '{"party": 2}')
    for row in _rows("data/dialogsum/test.jsonl"):
        turns = row["messages"][1]["content"].splitlines()
        add("base", row, " ".join(turns[:2]))
        add("banking77", row, _answer(row) or turns[0])
    for row in _rows("data/gsm8k/test.jsonl"):
        final = _answer(row).splitlines()[-1] if _answer(row) else "#### 0"
        add("base", row, final if rng.random() < 0.6 else "#### 1")
        add("banking77", row, final if rng.random() < 0.3 else "#### 2")
    return out


@pytest.fixture(scope="module")
def pipeline_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from ftevals.pipeline import RunConfig, execute, prepare
    from ftevals.specs import ModelSpec
    from ftevals.suite import Suite

    tmp = tmp_path_factory.mktemp("pipeline")
    preds = tmp / "predictions.jsonl"
    preds.write_text("\n".join(json.dumps(p) for p in _predictions(random.Random(0))), encoding="utf-8")
    models = {"base": ModelSpec("base"), "banking77": ModelSpec("banking77", adapter=str(ROOT / "adapters/banking77"))}
    common = {"limit": N, "models": ("base", "banking77")}
    suites = [
        Suite(name="banking77", task="classification", dataset=str(ROOT / "data/banking77/test.jsonl"),
              labels=str(ROOT / "data/banking77/labels.json"), gates=("accuracy > base significantly",), **common),
        Suite(name="restaurant8k", task="extraction", dataset=str(ROOT / "data/restaurant8k/test.jsonl"), **common),
        Suite(name="dialogsum", task="generation", dataset=str(ROOT / "data/dialogsum/test.jsonl"), **common),
        Suite(name="gsm8k", task="forgetting", dataset=str(ROOT / "data/gsm8k/test.jsonl"), metrics=("gsm8k_answer",),
              gates=("gsm8k_answer >= base - 0.02",), **common),
    ]
    config = RunConfig(models=models, backend="replay", backend_options={"path": str(preds)}, cache_dir=tmp / "cache", resamples=200)
    return execute(prepare(suites, config)).to_dict()


def test_report_draws_every_task_from_pipeline_output(pipeline_results: dict[str, Any]) -> None:
    html = render_html(pipeline_results)
    assert html == render_html(json.loads(json.dumps(pipeline_results)))
    for heading in ("<h3>Classes</h3>", "Most confused pairs", "<h3>Errors by kind</h3>", "not_json",
                    "Forgetting: examples the base got right", "<h3>Cost and speed</h3>", "<ins>"):
        assert heading in html, heading
    assert html.count('<article id="s') == 4 * N
    gsm = pipeline_results["suites"][3]
    dropped = next(c for c in gsm["comparisons"] if c["model"] == "banking77")["regressions"]
    assert dropped and all(f">{x}</a>" in html for x in dropped)


def test_real_results_file_renders(open_report: Any) -> None:
    results = json.loads(REAL_RESULTS.read_text(encoding="utf-8"))
    html = render_html(results)
    assert html == render_html(results)
    page = open_report(html)
    assert page.console_errors == []
    assert all(url.startswith("file://") for url in page.requests)
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1]
