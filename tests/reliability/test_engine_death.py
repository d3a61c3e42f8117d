"""The vLLM engine process dies in the middle of a run (the OOM killer, a crash): the run stops with a
clear error naming the engine and how its process ended, every finished chunk stays in the cache,
and nothing hangs.

One real vLLM CPU engine (the only one this folder starts): the embedded model, base only, a
dozen story prompts in chunks of four. After the first chunk is committed, the EngineCore process is
SIGKILLed half-way through the second chunk. vLLM 0.32 on its own would leave `LLM.generate`
waiting for ever on its output queue (see `_DeathWatch` in ftevals/backends/vllm_watch.py); a hang here
fails the test after a bounded wait instead of blocking CI.

The run goes in a Python process of its own (enginedeath.py says why): whatever ran before this
test in the pytest process, the run holds one engine, its own, and finds its engine core through
vLLM's handle on the processes it started.

The same run also shows that a vLLM run makes no network call: a guard records every name lookup
and TCP connection outside 127.0.0.1, and vLLM's usage statistics (on by default) are off.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from enginedeath import CHUNK, HANG_S, N_PROMPTS

HERE = Path(__file__).resolve().parent


def run_in_own_process(tmp_path: Path) -> dict[str, Any]:
    """enginedeath.py's report; its whole process group is killed if it outlives its bounds."""
    out = tmp_path / "report.json"
    proc = subprocess.Popen([sys.executable, str(HERE / "enginedeath.py"), str(tmp_path), str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=HANG_S + 120)  # + its imports and the engine's shutdown
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the engine processes too
        output, _ = proc.communicate()
        pytest.fail(f"the run still waits {HANG_S + 120} s after it started: a dead vLLM engine hangs it\n"
                    f"{output[-3000:]}")
    assert proc.returncode == 0 and out.exists(), output[-5000:]
    return json.loads(out.read_text(encoding="utf-8"))


def left_running(family: list[list[float]]) -> list[tuple[int, str]]:
    """Of (pid, start time) pairs, the processes still running after up to 30 s (not a reused pid)."""
    deadline = time.monotonic() + 30
    while True:
        alive = []
        for pid, started in family:
            try:
                p = psutil.Process(int(pid))
                if p.create_time() == started and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append((p.pid, p.name()))
            except psutil.Error:
                continue
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.5)


@pytest.mark.vllm
@pytest.mark.slow
def test_engine_killed_mid_generation_fails_clearly_and_keeps_what_finished(tmp_path: Path, default_model: Any) -> None:
    got = run_in_own_process(tmp_path)

    assert not got["hung"], f"the run still waited after the kill (engine killed at {got.get('killed_at')})"
    assert got.get("pids"), "no engine core process of this run was found to kill"
    assert all("EngineCore" in name for name in got["names"]), got["names"]
    # The run stops with a BackendError, or (generate.py: one model's failure costs that model only)
    # goes on and records the model as failed; either way the user reads the same message.
    assert got["outcome"] in ("raised", "model failed"), (got["outcome"], got["error"])
    assert got["outcome"] != "raised" or got["backend_error"], got["error"]
    # Killed while the second chunk was in flight, and noticed within seconds, not after a timeout.
    calls, killed_at, raised_at = got["calls"], got["killed_at"], got.get("raised_at")
    assert len(calls) == 2 and raised_at and calls[1] < killed_at < raised_at < killed_at + 30, (calls, killed_at, raised_at)

    message = got["message"]
    assert message.startswith(
        f"the vLLM engine for {default_model.path} died during generation: engine process EngineCore"
    ), message
    assert f"(pid {got['pids'][0]}) was killed by SIGKILL (the kernel's out-of-memory killer" in message
    # A SIGKILL leaves no traceback: the message says where the engine's last lines are instead.
    assert f"; the engine's last lines are in its log {got['log']};" in message, message
    # The first chunk is in the cache, whole and readable, and so is what the killed call handed over
    # before the kill (vLLM's requests are committed as they finish); the message counts exactly those.
    kept = got["kept"]
    assert CHUNK <= kept < N_PROMPTS, kept
    assert message.endswith(
        f"; the {kept} generations finished before the failure are kept in the cache {got['cache_file']}; "
        "a re-run generates only the rest"
    ), message

    # No process of this run's engine is left behind (the worker the killed core had started included).
    assert left_running(got["family"]) == []

    # Offline: no name lookup or TCP connection outside 127.0.0.1, and vLLM's usage stats were off.
    assert got["network"] == []
    assert got["usage_stats"] is False
