"""`--ftevals-cache use|refresh|off` through the pytest plugin, counted in the results file."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from replay_runs import DATASET, LABELS, write_predictions

from support.miniproject import preload


@pytest.fixture(scope="module", autouse=True)
def _import_before_pytester() -> None:
    """In-process pytester runs restore sys.modules afterwards: load (and register) what the plugin
    imports lazily first, or a later run imports numpy twice or registers the metrics again."""
    preload()

N = 12
SUITE = f"""
from ftevals import Suite

banking77 = Suite(name="banking77", task="classification", dataset={str(DATASET)!r}, labels={str(LABELS)!r},
                  models=("base", "banking77"), limit={N}, gates=("accuracy > base",))
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_banking77=SUITE)
    write_predictions(pytester.path / "predictions.jsonl")
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict[str, Any] | None]:
    results = pytester.path / "out" / "results.json"
    results.unlink(missing_ok=True)
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "-p", "no:hypothesispytest",
        "--ftevals-backend", "replay", "--ftevals-backend-option", "path=predictions.jsonl",
        "--ftevals-model", "banking77=base+adapters/banking77",
        "--ftevals-results", "out/results.json", "--ftevals-no-report", "--ftevals-resamples", "200",
        *args,
    )
    return result, (json.loads(results.read_text()) if results.exists() else None)


def counts(results: dict[str, Any] | None) -> tuple[int, int, int]:
    assert results is not None
    t = results["run"]["timings"]
    return t["backend_calls"], t["generated"], t["cached"]


def rows(folder: Path) -> int:
    with sqlite3.connect(folder / "generations.sqlite") as conn:
        return int(conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0])


def test_use_refresh_off(project: pytest.Pytester) -> None:
    cache = ["--ftevals-cache-dir", "cache"]
    cold, cold_results = run(project, *cache)
    assert cold.ret == 0, cold.stdout.str()
    assert counts(cold_results) == (2, 2 * N, 0)  # one chunk per model
    assert rows(project.path / "cache") == 2 * N

    warm, warm_results = run(project, *cache, "--ftevals-cache", "use")
    assert warm.ret == 0 and counts(warm_results) == (0, 0, 2 * N)

    refresh, refresh_results = run(project, *cache, "--ftevals-cache", "refresh")
    assert refresh.ret == 0 and counts(refresh_results) == (2, 2 * N, 0)
    assert rows(project.path / "cache") == 2 * N  # overwritten, not added

    off, off_results = run(project, "--ftevals-cache-dir", "other", "--ftevals-cache", "off")
    assert off.ret == 0 and counts(off_results) == (2, 2 * N, 0)
    assert not (project.path / "other").exists()

    # Same outputs, scores and gates whichever way the generations were obtained.
    assert same_results(cold_results, warm_results, refresh_results, off_results)


def same_results(*runs: dict[str, Any] | None) -> bool:
    from ftevals.results import canonical

    def comparable(r: dict[str, Any] | None) -> dict[str, Any]:
        assert r is not None
        c = canonical(r)
        for suite in c["suites"]:
            suite["baseline"] = None  # the first run wrote the baseline, the others compared with it
        return c

    first = comparable(runs[0])
    return all(comparable(r) == first for r in runs[1:])


def test_corrupt_cache_fails_the_suite_tests_with_the_message(project: pytest.Pytester) -> None:
    (project.path / "cache").mkdir()
    db = project.path / "cache" / "generations.sqlite"
    db.write_bytes(b"this is not sqlite" * 100)
    result, results = run(project, "--ftevals-cache-dir", "cache")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert results is None
    text = result.stdout.str()
    assert f"cannot open the generation cache {db}: file is not a database. The file holds only cached " \
           "generations: delete it" in text
    assert "Traceback" not in text and "sqlite3.DatabaseError" not in text
    # The suggested way out works: the same run without the cache passes.
    again, _ = run(project, "--ftevals-cache-dir", "cache", "--ftevals-cache", "off")
    assert again.ret == 0
