"""Two processes share one cache folder at the same time: the cache stays intact and every
generation is produced once, by one of them (the other waits on the generation lock, then finds
everything cached)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

from runner import write_predictions

from ftevals.results import canonical

RUNNER = Path(__file__).with_name("runner.py")
LIMIT, CHUNK = 60, 10
TOTAL = 2 * LIMIT


def test_two_runs_at_once_generate_each_request_once(tmp_path: Path) -> None:
    predictions = write_predictions(tmp_path / "predictions.jsonl")
    cache_dir, go = tmp_path / "cache", tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, str(RUNNER), str(predictions), str(cache_dir), str(tmp_path / f"run{i}.json"),
             "--limit", str(LIMIT), "--chunk", str(CHUNK), "--delay", "0.02", "--go", str(go)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for i in range(2)
    ]
    try:
        # Both are imported and waiting before either starts: they start within milliseconds.
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        go.touch()
        outputs = [p.communicate(timeout=120)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0], outputs

    # They really overlapped: each started before the other finished.
    spans = [{k: float(v) for k, v in (line.split() for line in out.splitlines() if line.split()[0] in ("start", "end"))}
             for out in outputs]
    assert spans[0]["start"] < spans[1]["end"] and spans[1]["start"] < spans[0]["end"], spans

    results = [json.loads((tmp_path / f"run{i}.json").read_text()) for i in range(2)]
    timings = [r["run"]["timings"] for r in results]
    # One process generated everything; the other generated nothing and read all of it from the cache.
    assert sorted(t["generated"] for t in timings) == [0, TOTAL], timings
    assert sorted(t["backend_calls"] for t in timings) == [0, TOTAL // CHUNK], timings
    assert sorted(t["cached"] for t in timings) == [0, TOTAL], timings
    with closing(sqlite3.connect(cache_dir / "generations.sqlite")) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM generations").fetchone() == (TOTAL, TOTAL)
    assert canonical(results[0]) == canonical(results[1])
