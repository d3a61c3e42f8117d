"""An interrupted run resumes: a run killed part-way (SIGKILL, or Ctrl-C in pytest) keeps every
finished chunk, and the re-run generates exactly the missing requests, proven by counting them, and
ends with the same results as a run that was never interrupted."""

from __future__ import annotations

import json
import math
import re
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from processes import reaped
from support import replayrun
from support.replayrun import run, write_predictions

from ftevals.results import canonical

RUNNER = replayrun.__file__
LIMIT, CHUNK = 60, 10
TOTAL = 2 * LIMIT


def rows_by_model(cache_dir: Path) -> dict[str, int]:
    db = cache_dir / "generations.sqlite"
    if not db.exists():
        return {}
    with closing(sqlite3.connect(db, timeout=30)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        try:
            return dict(conn.execute("SELECT model, COUNT(*) FROM generations GROUP BY model"))
        except sqlite3.OperationalError:  # the run has created the file but not the table yet
            return {}


def wait_for_rows(cache_dir: Path, at_least: int, proc: subprocess.Popen[str], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while sum(rows_by_model(cache_dir).values()) < at_least:
        if proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before {at_least} generations were cached:\n"
                        f"{proc.communicate()[0]}")
        if time.monotonic() > deadline:
            pytest.fail(f"fewer than {at_least} generations cached after {timeout} s")
        time.sleep(0.02)


def expected_calls(committed: dict[str, int], per_model: int, chunk: int) -> int:
    """Backend calls a resumed run needs: the missing requests of each model, in chunks."""
    return sum(math.ceil((per_model - committed.get(m, 0)) / chunk) for m in ("base", "banking77"))


def test_sigkill_part_way_then_resume_generates_only_the_missing(tmp_path: Path) -> None:
    predictions = write_predictions(tmp_path / "predictions.jsonl")
    cache_dir = tmp_path / "cache"
    killed_out = tmp_path / "killed.json"
    # 120 requests in chunks of 10 at 50 ms each: 6 s of generation, killed after 3 chunks (1.5 s).
    proc = subprocess.Popen(
        [sys.executable, RUNNER, str(predictions), str(cache_dir), str(killed_out),
         "--limit", str(LIMIT), "--chunk", str(CHUNK), "--delay", "0.05"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    with reaped(proc):
        wait_for_rows(cache_dir, 3 * CHUNK, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not killed_out.exists()

    committed = rows_by_model(cache_dir)  # integrity-checked: no torn entry
    done = sum(committed.values())
    assert 3 * CHUNK <= done < TOTAL, committed
    assert all(n % CHUNK == 0 for n in committed.values()), committed  # whole chunks only

    resumed = run(predictions, cache_dir, limit=LIMIT, chunk_size=CHUNK)
    t = resumed["run"]["timings"]
    assert t["generated"] == TOTAL - done
    assert t["cached"] == done
    assert t["backend_calls"] == expected_calls(committed, LIMIT, CHUNK)
    assert sum(rows_by_model(cache_dir).values()) == TOTAL

    uninterrupted = run(predictions, tmp_path / "fresh-cache", limit=LIMIT, chunk_size=CHUNK)
    assert uninterrupted["run"]["timings"]["generated"] == TOTAL
    assert canonical(resumed) == canonical(uninterrupted)


# ---------------------------------------------------------------------------------------------
# Ctrl-C in a real `pytest` run of a suite

PYTEST_LIMIT = 150  # 300 requests: chunks of 128, 22 for each model (the plugin's default chunk size)
SUITE = f"""
from ftevals import Suite

banking77 = Suite(name="banking77", task="classification", dataset={str(Path(__file__).resolve().parents[2] / "data" / "banking77" / "test.jsonl")!r},
                  labels={str(Path(__file__).resolve().parents[2] / "data" / "banking77" / "labels.json")!r},
                  models=("base", "banking77"), limit={PYTEST_LIMIT}, gates=("accuracy > base",))
"""
PYTEST_ARGS = [
    "-p", "no:cacheprovider", "-p", "no:hypothesispytest",
    "--ftevals-backend", "replay", "--ftevals-backend-option", "path=predictions.jsonl",
    "--ftevals-model", "banking77=base+adapters/banking77",
    "--ftevals-results", "out/results.json", "--ftevals-no-report", "--ftevals-resamples", "200",
    "--ftevals-cache-dir", "cache",
]


def test_ctrl_c_in_a_pytest_run_then_resume(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_banking77=SUITE)
    write_predictions(pytester.path / "predictions.jsonl")
    cache_dir = pytester.path / "cache"
    # SIGINT as a terminal's Ctrl-C delivers it: a CI job started in the background (`cmd &` in a
    # non-interactive shell) ignores SIGINT, children inherit that, and Python then installs no
    # KeyboardInterrupt handler: the run would finish as if never interrupted.
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", *PYTEST_ARGS, "--ftevals-backend-option", "delay_s=0.02"],
        cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    with reaped(proc):
        wait_for_rows(cache_dir, 128, proc)
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, output
    assert "KeyboardInterrupt" in output
    assert re.search(r"ftevals: interrupted; the \d+ generations finished \(of \d+\) are kept in the cache .*; "
                     r"a re-run generates only the \d+ left", output), output
    assert not (pytester.path / "out" / "results.json").exists()
    committed = rows_by_model(cache_dir)
    done = sum(committed.values())
    assert 128 <= done < 2 * PYTEST_LIMIT, committed

    result = pytester.runpytest(*PYTEST_ARGS)
    assert result.ret == 0, result.stdout.str()
    results: dict[str, Any] = json.loads((pytester.path / "out" / "results.json").read_text())
    t = results["run"]["timings"]
    assert (t["generated"], t["cached"]) == (2 * PYTEST_LIMIT - done, done)
    assert t["backend_calls"] == expected_calls(committed, PYTEST_LIMIT, 128)
    assert sum(rows_by_model(cache_dir).values()) == 2 * PYTEST_LIMIT
