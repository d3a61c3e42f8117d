"""The run of tests/reliability/test_engine_death.py, in a Python process of its own.

    python enginedeath.py TMP_FOLDER OUT_JSON

A vLLM run of a dozen story prompts in chunks of four, whose engine core process is SIGKILLed
half-way through the second chunk. What happened is written to OUT_JSON for the test to judge.

Why a process of its own: the test must not depend on what ran before it in the pytest process. An
in-process pytester run drops the modules first imported inside it from sys.modules, and torch
cannot be imported a second time in one process (the re-import fails with "SystemError: ... bad
call flags", and collecting the half-imported copy later crashed pytest with a segmentation fault);
an engine started by an earlier test could also be taken for this run's. Here the process holds one
engine, this run's, found through vLLM's own handle on the processes it started.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

#: Long enough that a chunk takes seconds, so the kill lands inside one.
CHUNK, N_PROMPTS, MAX_TOKENS = 4, 12, 96
#: A run that is still going this long after it started has hung (engine start ~40 s + generation).
HANG_S = 480


def write_story_prompts(path: Path) -> Path:
    rows = [{"id": f"story-{i:02d}", "prompt": f"Write a long, detailed story about a dragon called Ember {i}.",
             "reference": "a story"} for i in range(N_PROMPTS)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def main(tmp: Path, out: Path) -> None:
    import psutil
    import pytest
    from netguard import NetworkGuard

    from ftevals.backends.vllm import VLLMBackend, VLLMSettings, route_engine_logs
    from ftevals.backends.vllm_watch import _engine_processes
    from ftevals.cache import GenerationCache
    from ftevals.errors import BackendError
    from ftevals.models import resolve_models
    from ftevals.pipeline import RunConfig, execute, prepare
    from ftevals.specs import ModelSpec, SamplingSpec
    from ftevals.suite import Suite

    guard = NetworkGuard(refuse=False).install(pytest.MonkeyPatch())
    suite = Suite(name="stories", task="custom", dataset=str(write_story_prompts(tmp / "stories.jsonl")),
                  models=("base",), sampling=SamplingSpec(max_tokens=MAX_TOKENS))
    models = {"base": ModelSpec("base")}
    cache_dir = tmp / "cache"
    config = RunConfig(models=models, backend="vllm", cache_dir=cache_dir, chunk_size=CHUNK, resamples=100)
    prepared = prepare([suite], config)
    resolved = resolve_models(list(models.values()))
    backend = VLLMBackend(resolved, VLLMSettings(max_model_len=512, cpu_kv_cache_gb=1))
    report: dict[str, Any] = {"model": str(resolved["base"].base.path), "cache_file": str(cache_dir / "generations.sqlite"),
                              "log": str(route_engine_logs())}
    calls: list[float] = []
    real_generate = backend.generate

    def kill_our_engine() -> None:
        # The engine core processes vLLM itself started for this backend's engine(s).
        cores = [psutil.Process(p.pid) for e in backend._engines.values() if e.llm is not None
                 for p in _engine_processes(e.llm) if p.exitcode is None]
        report["pids"] = sorted(p.pid for p in cores)
        report["names"] = [p.name() for p in cores]
        # Its own children (the model worker) are orphaned by the kill; they must go too.
        report["family"] = [[c.pid, c.create_time()] for p in cores for c in p.children(recursive=True)]
        report["killed_at"] = time.monotonic()
        for p in cores:
            p.send_signal(signal.SIGKILL)

    def generate(requests: Any) -> Any:
        calls.append(time.monotonic())
        if len(calls) == 2:
            # Half-way through this chunk, judged by how long the first one took to generate.
            threading.Timer(max(0.3, backend.generate_seconds / 2), kill_our_engine).start()
        try:
            return real_generate(requests)
        except BaseException:
            report["raised_at"] = time.monotonic()  # when the backend noticed the death
            raise

    backend.generate = generate  # type: ignore[method-assign]
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["results"] = execute(prepared, backend=backend)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            outcome["error"] = exc

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(timeout=HANG_S)
    report["hung"] = runner.is_alive()
    if runner.is_alive():
        kill_our_engine()
    backend.close()

    # What the user is told: the run's error, or, where the run goes on without a failed model
    # (generate.py), that model's failure as the results record it.
    error, results = outcome.get("error"), outcome.get("results")
    failures = {} if results is None else {m: why for s in results.suites for m, why in (s.failures or {}).items()}
    report["outcome"] = ("raised" if error is not None else "model failed" if "base" in failures
                         else "finished" if results is not None else "none")
    report["backend_error"] = isinstance(error, BackendError)
    report["error"] = f"{type(error).__name__}: {error}" if error is not None and not isinstance(error, BackendError) else None
    report["message"] = str(error) if isinstance(error, BackendError) else failures.get("base")
    cache = GenerationCache(cache_dir)
    try:
        kept = cache.count()
    finally:
        cache.close()
    from vllm.usage.usage_lib import is_usage_stats_enabled

    report.update(calls=calls, kept=kept, network=guard.attempts, usage_stats=is_usage_stats_enabled())
    out.write_text(json.dumps(report, indent=1), encoding="utf-8")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # netguard
    main(Path(sys.argv[1]), Path(sys.argv[2]))
