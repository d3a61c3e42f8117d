"""A process killed while it writes the results file leaves the old file or the new one, never half.

Results, reports, baselines and packets are all written by `ftevals.fsutil.atomic_write_text`:
a temporary file in the same folder, flushed and fsynced, renamed over the target, then the folder
fsynced. The proof: a writer process rewrites a 2 MB results file in a loop with `write_results`
and is SIGKILLed at random moments; after every kill the file parses and is one of the two versions.
The same harness with a plain `write_text` writer finds torn files, so it can tell the difference.

The generation cache (SQLite, WAL, synchronous=FULL) gets the same treatment in
test_kill_and_resume.py, through a whole run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from processes import reaped

from ftevals.fsutil import atomic_write_text
from ftevals.results import read_results

KILLS = 6

#: Writes version A, says "ready", then alternates A and B for ever. `mode`: atomic | plain.
WRITER = r"""
import sys
from pathlib import Path
from ftevals.results import dumps, write_results

path, mode = Path(sys.argv[1]), sys.argv[2]
def version(tag):
    rows = [{"id": f"ex-{i:05d}", "input": tag * 200} for i in range(8_000)]
    return {"schema": "ftevals.results", "schema_version": 1, "run": {"id": tag}, "models": {},
            "suites": [{"name": "big", "models": [], "metrics": [], "scores": {}, "examples": rows}]}
versions = [version("A"), version("B")]
texts = [dumps(v) for v in versions]
write_results(path, versions[0])
print("ready", flush=True)
i = 1
while True:
    if mode == "atomic":
        write_results(path, versions[i % 2])
    else:
        path.write_text(texts[i % 2], encoding="utf-8")
    i += 1
"""


def kill_while_writing(path: Path, mode: str, rng: random.Random) -> list[str]:
    """Start a writer, SIGKILL it at a random moment, read the file back; repeat. What was read each time."""
    seen = []
    for _ in range(KILLS):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), mode], stdout=subprocess.PIPE, text=True)
        with reaped(proc):
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.05, 0.6))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        try:
            seen.append(read_results(path)["run"]["id"])
        except Exception as exc:  # a torn file: the only thing that must never happen with atomic writes
            seen.append(f"torn: {type(exc).__name__}: {str(exc)[-80:]}")
    return seen


def test_sigkill_mid_write_leaves_the_old_or_the_new_results_file(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    seen = kill_while_writing(path, "atomic", random.Random(1))
    assert set(seen) <= {"A", "B"}, seen
    # Leftovers of killed writes are hidden temporaries beside the target, never the target itself.
    assert all(p.name == "results.json" or (p.name.startswith(".results.json.") and p.name.endswith(".tmp"))
               for p in tmp_path.iterdir()), sorted(p.name for p in tmp_path.iterdir())


def test_the_harness_catches_a_plain_write(tmp_path: Path) -> None:
    """The control: the same kills against a writer that truncates and rewrites in place tear the file."""
    seen = kill_while_writing(tmp_path / "results.json", "plain", random.Random(1))
    assert any(s.startswith("torn") for s in seen), seen


def test_the_file_is_fsynced_before_the_rename_and_the_folder_after(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the first fsync a power cut can leave the renamed file empty; without the second, the
    rename itself can be lost."""
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync-dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync-file")
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        events.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    atomic_write_text(tmp_path / "results.json", json.dumps({"ok": True}))
    assert events == ["fsync-file", "rename", "fsync-dir"]
    assert json.loads((tmp_path / "results.json").read_text()) == {"ok": True}
