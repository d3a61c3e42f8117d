"""The results file as DataFrames, and `ftevals export`."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import ftevals
from ftevals.cli import main
from ftevals.results import load

FIXTURE = Path(__file__).parents[1] / "fixtures" / "real_results.json"


def test_examples_frame_has_a_row_per_suite_example_and_model() -> None:
    results = load(FIXTURE)
    frame = ftevals.examples_frame(results)
    expected = sum(len(s.examples) * len(s.models) for s in results.suites)
    assert len(frame) == expected
    assert not frame.duplicated(["suite", "example_id", "model"]).any()
    suite = results.suites[0]
    c = next(c for c in suite.comparisons if c.kind == "binary" and (c.fixes or c.regressions))
    rows = frame[(frame.suite == suite.name) & (frame.model == c.model)].set_index("example_id")
    flips = rows[f"flip.{c.metric}"]
    assert set(flips[flips == "fixed"].index) == set(c.fixes)
    assert set(flips[flips == "broken"].index) == set(c.regressions)
    ex = suite.examples[0]
    row = rows.loc[ex.id]
    assert row.output == ex.outputs[c.model].text and row[f"score.{c.metric}"] == ex.outputs[c.model].scores[c.metric]
    ref_rows = frame[(frame.suite == suite.name) & frame.is_reference]
    assert ref_rows[f"flip.{c.metric}"].isna().all()


def test_metrics_frame_matches_the_comparisons() -> None:
    results = load(FIXTURE)
    frame = ftevals.metrics_frame(results)
    assert len(frame) == sum(len(s.models) * len(s.metrics) for s in results.suites)
    for suite in results.suites:
        for c in suite.comparisons:
            row = frame[(frame.suite == suite.name) & (frame.model == c.model) & (frame.metric == c.metric)].iloc[0]
            assert row.delta == pytest.approx(c.delta) and row.verdict == c.verdict and row.p_value == c.p_value
    assert frame[frame.is_reference].verdict.isna().all()


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_writes_what_pandas_reads_back(tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / f"examples.{fmt}"
    assert main(["export", str(FIXTURE), "--out", str(out)]) == 0
    back = pd.read_csv(out) if fmt == "csv" else pd.read_json(out, lines=True)
    expected = ftevals.examples_frame(load(FIXTURE))
    assert list(back.columns) == list(expected.columns) and len(back) == len(expected)
    assert main(["export", str(FIXTURE), "--out", str(tmp_path / "m.jsonl"), "--table", "metrics"]) == 0
    first = json.loads((tmp_path / "m.jsonl").read_text().splitlines()[0])
    assert {"suite", "model", "metric", "value", "delta", "verdict"} <= set(first)


def test_parquet_without_pyarrow_names_the_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if it were not installed
    assert main(["export", str(FIXTURE), "--out", str(tmp_path / "x.parquet")]) != 0
    assert "pip install pyarrow" in capsys.readouterr().err
    assert not (tmp_path / "x.parquet").exists()


def test_an_unknown_format_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(FIXTURE), "--out", str(tmp_path / "x.xlsx")]) != 0
    assert "export format 'xlsx' is unknown" in capsys.readouterr().err


def test_parquet_round_trips(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")  # installed with pandas' optional stack here; optional for users
    out = tmp_path / "metrics.parquet"
    assert main(["export", str(FIXTURE), "--out", str(out), "--table", "metrics"]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(out), ftevals.metrics_frame(load(FIXTURE)))
