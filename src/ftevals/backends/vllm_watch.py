"""Noticing a vLLM engine process that died while `LLM.generate` waits on it (vllm.py uses this)."""

from __future__ import annotations

import signal
import threading
from typing import Any

from ..errors import BackendError


def _engine_processes(llm: Any) -> list[Any]:
    """The engine-core processes vLLM started (multiprocessing.Process objects), where it exposes them."""
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    manager = getattr(getattr(core, "resources", None), "engine_manager", None)
    return list(getattr(manager, "processes", None) or [])


def _dead_engine_process(llm: Any) -> str | None:
    """How an engine process ended ("EngineCore_DP0 (pid 7) was killed by SIGKILL"), or None if all run."""
    for proc in _engine_processes(llm):
        code = proc.exitcode
        if code is None:
            continue
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
            how = f"was killed by {name}"
            if -code == signal.SIGKILL:
                how += " (the kernel's out-of-memory killer sends this: check free memory, lower cpu_kv_cache_gb)"
        else:
            how = f"exited with code {code}"
        return f"engine process {proc.name} (pid {proc.pid}) {how}"
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if getattr(getattr(core, "resources", None), "engine_dead", False):
        return "vLLM reports its engine core process dead"
    return None


class _DeathWatch:
    """Wakes a `LLM.generate` call whose engine process has died, instead of letting it wait forever.

    vLLM 0.32's synchronous client does notice a dead EngineCore (a monitor thread marks the client
    dead and shuts it down), but its output thread then exits without a word, and `LLM.generate`
    blocks for ever on the client's output queue (seen with SIGKILL on the CPU engine). While a
    generate call runs, this thread polls the engine processes and, when one has ended, puts an
    error into that queue: what vLLM's asyncio client does itself when its output task stops.
    """

    def __init__(self, llm: Any, interval_s: float = 0.5) -> None:
        self.llm = llm
        self.interval_s = interval_s
        self.died: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ftevals-vllm-deathwatch", daemon=True)

    def __enter__(self) -> _DeathWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            died = _dead_engine_process(self.llm)
            if died is None:
                continue
            self.died = died
            core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
            outputs = getattr(core, "outputs_queue", None)
            if outputs is not None:
                outputs.put_nowait(BackendError(died))
            return


__all__ = ["_DeathWatch", "_dead_engine_process", "_engine_processes"]
