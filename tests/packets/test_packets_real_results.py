"""The packet round trip on a real results file: tests/fixtures/real_results.json, written by
`pytest suites/ --ftevals-limit 20` on the embedded model and the demo adapters (real generations).

Nothing here depends on particular suites, models or sizes, so the fixture can be regenerated
(`pytest suites/ --ftevals-limit 20 --ftevals-results tests/fixtures/real_results.json
--ftevals-no-report`): suites that cannot be rated are left out by `build_packets`, and the
preference check applies only where there are enough ratings to judge.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ftevals.packets import build_packets, import_ratings, merge_into_results
from ftevals.results import load, save

RESULTS = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "real_results.json"


@pytest.fixture
def real_results() -> dict[str, Any]:
    return json.loads(RESULTS.read_text(encoding="utf-8"))


def test_real_results_round_trip(real_results: dict[str, Any], tmp_path: Path, sim: Any, leaks: Any) -> None:
    manifest = build_packets(real_results, tmp_path / "p", n_per_suite=12, raters=3, raters_per_item=2, seed=1)
    assert leaks.scan(tmp_path / "p", real_results) == []

    # Determinism on real data too.
    build_packets(real_results, tmp_path / "q", n_per_suite=12, raters=3, raters_per_item=2, seed=1)
    tree = lambda root: {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}  # noqa: E731
    assert tree(tmp_path / "p") == tree(tmp_path / "q")

    # Raters who clearly prefer every non-reference model over the reference.
    quality = {}
    for part in manifest.parts:
        quality.update({m: 4.2 for m in part.models[1:]})
    for part in manifest.parts:
        quality[part.models[0]] = 1.8  # a reference that is also a contender elsewhere still scores low
    raters = [sim.SimRater("r1"), sim.SimRater("r2", bias=0.2), sim.SimRater("r3", bias=-0.2)]
    answers = sim.fill_answers(tmp_path / "p", raters, seed=2, quality=quality)
    sheets = sim.write_filled_sheets(tmp_path / "p", answers, tmp_path / "back", jsonl_for={"r2"})
    human = import_ratings(tmp_path / "p", sheets)

    assert set(human.suites) == {p.suite for p in manifest.parts}
    for part in manifest.parts:
        block = human.suites[part.suite]
        assert block["models"] == list(part.models) and block["n_items"] == part.n_items
        for model, pref in block["preferences"].items():
            if pref["n"] >= 10 and quality[model] > quality[block["reference"]]:
                assert pref["win_rate"] > 0.6, (part.suite, model, pref)

    merged = merge_into_results(real_results, human)
    rated = {p.suite for p in manifest.parts}
    for suite in merged.suites:
        assert (suite.human is not None) == (suite.name in rated)
    # The merged results are a valid results file, written and read back unchanged.
    path = save(tmp_path / "merged.json", merged)
    assert load(path).to_dict() == merged.to_dict()
    # Only the `human` blocks differ from the input file.
    unrated = merged.to_dict()
    for suite in unrated["suites"]:
        suite["human"] = None
    assert unrated == real_results
