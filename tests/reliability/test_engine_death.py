"""The vLLM engine process dies in the middle of a run (the OOM killer, a crash): the run stops with a
clear error naming the engine and how its process ended, every finished chunk stays in the cache,
and nothing hangs.

One real vLLM CPU engine (the only one this folder starts): the embedded model, base only, a
dozen story prompts in chunks of four. After the first chunk is committed, the EngineCore process is
SIGKILLed half-way through the second chunk. vLLM 0.32 on its own would leave `LLM.generate`
waiting for ever on its output queue (see `_DeathWatch` in ftevals/backends/vllm_watch.py); a hang here
fails the test after a bounded wait instead of blocking CI.

The same run also shows that a vLLM run makes no network call: a guard records every name lookup
and TCP connection outside 127.0.0.1, and vLLM's usage statistics (on by default) are off.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from netguard import NetworkGuard

from ftevals.backends.vllm import VLLMBackend, VLLMSettings
from ftevals.cache import GenerationCache
from ftevals.errors import BackendError
from ftevals.models import resolve_models
from ftevals.pipeline import RunConfig, execute, prepare
from ftevals.specs import ModelSpec, SamplingSpec
from ftevals.suite import Suite

CHUNK, N_PROMPTS = 4, 12
#: Long enough that a chunk takes seconds, so the kill lands inside one.
MAX_TOKENS = 96
#: A run that is still going this long after the kill has hung.
HANG_S = 180


def engine_cores() -> dict[int, psutil.Process]:
    """This process's descendants that are vLLM engine cores ("VLLM::EngineCore" in the process list)."""
    found = {}
    for child in psutil.Process().children(recursive=True):
        try:
            if "EngineCore" in child.name() or any("EngineCore" in part for part in child.cmdline()):
                found[child.pid] = child
        except psutil.Error:
            continue
    return found


def write_story_prompts(path: Path) -> Path:
    rows = [{"id": f"story-{i:02d}", "prompt": f"Write a long, detailed story about a dragon called Ember {i}.",
             "reference": "a story"} for i in range(N_PROMPTS)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.vllm
@pytest.mark.slow
def test_engine_killed_mid_generation_fails_clearly_and_keeps_what_finished(
    tmp_path: Path, default_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    guard = NetworkGuard(refuse=False).install(monkeypatch)
    suite = Suite(name="stories", task="custom", dataset=str(write_story_prompts(tmp_path / "stories.jsonl")),
                  models=("base",), sampling=SamplingSpec(max_tokens=MAX_TOKENS))
    models = {"base": ModelSpec("base")}
    cache_dir = tmp_path / "cache"
    config = RunConfig(models=models, backend="vllm", cache_dir=cache_dir, chunk_size=CHUNK, resamples=100)
    prepared = prepare([suite], config)
    backend = VLLMBackend(resolve_models(list(models.values())), VLLMSettings(max_model_len=512, cpu_kv_cache_gb=1))

    cores_before = set(engine_cores())
    calls: list[float] = []
    killed: dict[str, Any] = {}
    real_generate = backend.generate

    def kill_our_engine() -> None:
        ours = {pid: p for pid, p in engine_cores().items() if pid not in cores_before}
        killed["pids"] = sorted(ours)
        # Its own children (the model worker) are orphaned by the kill; they must go too.
        killed["family"] = [c for p in ours.values() for c in p.children(recursive=True)]
        killed["at"] = time.monotonic()
        for p in ours.values():
            p.send_signal(signal.SIGKILL)

    def generate(requests: Any) -> Any:
        calls.append(time.monotonic())
        if len(calls) == 2:
            # Half-way through this chunk, judged by how long the first one took to generate.
            threading.Timer(max(0.3, backend.generate_seconds / 2), kill_our_engine).start()
        return real_generate(requests)

    monkeypatch.setattr(backend, "generate", generate)

    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["results"] = execute(prepared, backend=backend).to_dict()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc
            outcome["at"] = time.monotonic()

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    try:
        runner.join(timeout=HANG_S + 300)  # engine start (~40 s) + generation
        assert not runner.is_alive(), (
            f"the run still waits {HANG_S + 300} s after it started (engine killed at "
            f"{killed.get('at')}): a dead vLLM engine hangs it"
        )
    finally:
        if runner.is_alive():
            kill_our_engine()
        backend.close()

    assert killed.get("pids"), "no engine core process of this run was found to kill"
    assert "results" not in outcome, "the run finished although its engine was killed"
    error = outcome["error"]
    assert isinstance(error, BackendError), repr(error)
    # Killed while the second chunk was in flight, and reported within seconds, not after a timeout.
    assert len(calls) == 2 and calls[1] < killed["at"] < outcome["at"] < killed["at"] + 30, (calls, killed, outcome)

    message = str(error)
    cache_file = cache_dir / "generations.sqlite"
    assert message.startswith(
        f"the vLLM engine for {default_model.path} died during generation: engine process EngineCore"
    ), message
    assert f"(pid {killed['pids'][0]}) was killed by SIGKILL (the kernel's out-of-memory killer" in message
    # The first chunk is in the cache, whole and readable, and so is what the killed call handed over
    # before the kill (vLLM's requests are committed as they finish); the message counts exactly those.
    cache = GenerationCache(cache_dir)
    try:
        kept = cache.count()
    finally:
        cache.close()
    assert CHUNK <= kept < N_PROMPTS, kept
    assert message.endswith(
        f"; the {kept} generations finished before the failure are kept in the cache {cache_file}; "
        "a re-run generates only the rest"
    ), message

    # No process of this run's engine is left behind (the worker the killed core had started included).
    family = [p for p in killed["family"]]
    _, alive = psutil.wait_procs(family, timeout=30)
    assert not [(p.pid, p.name()) for p in alive if p.status() != psutil.STATUS_ZOMBIE]

    # Offline: no name lookup or TCP connection outside 127.0.0.1, and vLLM's usage stats were off.
    from vllm.usage.usage_lib import is_usage_stats_enabled

    assert guard.attempts == []
    assert not is_usage_stats_enabled()
