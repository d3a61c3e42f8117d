"""Two processes share one cache folder at the same time: the cache stays intact and every
generation is produced once, by one of them (the other waits on the generation lock, then finds
everything cached). Once as two pipeline runs, once as two `pytest` processes of two projects; the
xdist case (two workers, one cache) is tests/plugin/test_plugin_xdist.py."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
from processes import reaped
from support import replayrun
from support.miniproject import BASE_ARGS, MiniProject
from support.replayrun import write_predictions

from ftevals.results import canonical

RUNNER = replayrun.__file__
LIMIT, CHUNK = 60, 10
TOTAL = 2 * LIMIT


def test_two_runs_at_once_generate_each_request_once(tmp_path: Path) -> None:
    predictions = write_predictions(tmp_path / "predictions.jsonl")
    cache_dir, go = tmp_path / "cache", tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, RUNNER, str(predictions), str(cache_dir), str(tmp_path / f"run{i}.json"),
             "--limit", str(LIMIT), "--chunk", str(CHUNK), "--delay", "0.02", "--go", str(go)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for i in range(2)
    ]
    with reaped(*procs):
        # Both are imported and waiting before either starts: they start within milliseconds.
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        go.touch()
        outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs

    # They really overlapped: each started before the other finished.
    spans = [{k: float(v) for k, v in (line.split() for line in out.splitlines() if line.split()[0] in ("start", "end"))}
             for out in outputs]
    assert spans[0]["start"] < spans[1]["end"] and spans[1]["start"] < spans[0]["end"], spans

    results = [json.loads((tmp_path / f"run{i}.json").read_text()) for i in range(2)]
    timings = [r["run"]["timings"] for r in results]
    # Chunks are claimed one by one: the two runs shared the work (neither waited for the other to
    # finish), every request was generated exactly once, and each run read the other's part.
    assert sum(t["generated"] for t in timings) == TOTAL and all(t["generated"] > 0 for t in timings), timings
    assert sum(t["backend_calls"] for t in timings) == TOTAL // CHUNK, timings
    assert all(t["generated"] + t["cached"] == TOTAL for t in timings), timings
    with closing(sqlite3.connect(cache_dir / "generations.sqlite")) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM generations").fetchone() == (TOTAL, TOTAL)
    assert canonical(results[0]) == canonical(results[1])


# ---------------------------------------------------------------------------------------------
# Two `pytest` processes, two projects, one cache folder

BARRIER = """
import os, pathlib, time

def pytest_collection_finish(session):
    # Both runs are collected and prepared before either generates: they start together.
    pathlib.Path(os.environ["GO_FILE"] + f".ready-{os.getpid()}").touch()
    while not pathlib.Path(os.environ["GO_FILE"]).exists():
        time.sleep(0.01)
"""


def test_two_pytest_processes_share_one_cache_folder(pytester: pytest.Pytester, tmp_path: Path) -> None:
    project = MiniProject.create(pytester)
    (project.path / "conftest.py").write_text(BARRIER)
    dirs = [project.path, tmp_path / "copy"]
    shutil.copytree(project.path, dirs[1])
    shared, go = tmp_path / "shared-cache", tmp_path / "go"
    # One adapter path for both, so that both runs key their requests alike.
    args = [sys.executable, "-m", "pytest", *BASE_ARGS, "--ftevals-cache-dir", str(shared),
            "--ftevals-model", f"tuned=base+{tmp_path / 'adapters' / 'tuned'}", "--ftevals-backend-option", "delay_s=0.02"]
    env = {**os.environ, "GO_FILE": str(go)}
    procs = [subprocess.Popen(args, cwd=d, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for d in dirs]
    with reaped(*procs):
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("go.ready-*"))) < 2:
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), \
                [p.communicate()[0] for p in procs if p.poll() is not None]
            time.sleep(0.02)
        go.touch()
        outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs

    results = [json.loads((d / "out" / "results.json").read_text()) for d in dirs]
    timings = [r["run"]["timings"] for r in results]
    assert sum(t["generated"] for t in timings) == 40, timings
    assert all(t["generated"] + t["cached"] == 40 for t in timings), timings
    with closing(sqlite3.connect(shared / "generations.sqlite")) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM generations").fetchone() == (40, 40)
    assert canonical(results[0])["suites"] == canonical(results[1])["suites"]
