"""Where vLLM's own output goes: a log file under ftevals' cache, not the user's terminal.

vLLM configures its logging once per process, at import, from VLLM_LOGGING_CONFIG_PATH, and its
engine processes inherit file descriptor 2; so ftevals writes a logging config pointing at
`~/.cache/ftevals/logs/vllm.log` and points fd 2 there while vLLM is imported and engines start.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from ..fsutil import atomic_write_text


#: Whether this process has said where vLLM's log lines go (once is enough).
_told_log = [False]


def _route_logs_once() -> Path | None:
    log = route_engine_logs()
    if log is not None and not _told_log[0]:
        _told_log[0] = True
        print(f"ftevals: vLLM's log lines and warnings go to {log} (set VLLM_LOGGING_LEVEL to see them here)",
              file=sys.stderr)
    return log


@contextlib.contextmanager
def _stderr_into(log: Path | None) -> Iterator[None]:
    """Point file descriptor 2 at the engine log while vLLM is imported and its engine processes
    start: they inherit it, so their Python warnings, C++ warnings and prints land in the log, not
    on the user's terminal. None (the user asked to see vLLM's output): leave stderr alone."""
    if log is None:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.dup2(fd, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)


def route_engine_logs() -> Path | None:
    """vLLM's log lines, from every engine process (each reads VLLM_LOGGING_CONFIG_PATH), go to a
    file: the terminal is ftevals'. A user's own VLLM_LOGGING_* choice wins (returns None)."""
    from ..models import cache_dir

    folder = cache_dir() / "logs"
    log, path = folder / "vllm.log", folder / "vllm-logging.json"
    current = os.environ.get("VLLM_LOGGING_CONFIG_PATH")
    if current == str(path):
        return log  # ours, set by this process or inherited from the ftevals run that started it
    # A config path that some ftevals process set (another cache folder, inherited by a child run)
    # is not the user's choice: route to this run's folder instead of showing vLLM's output.
    inherited_from_ftevals = current is not None and current == os.environ.get(_ROUTED_MARK)
    if not inherited_from_ftevals and (
        {"VLLM_LOGGING_CONFIG_PATH", "VLLM_LOGGING_LEVEL"} & set(os.environ)
        or os.environ.get("VLLM_CONFIGURE_LOGGING") == "0"
    ):
        return None
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(log), "formatter": "plain",
                              "level": "INFO", "encoding": "utf-8"}},
        "loggers": {"vllm": {"handlers": ["file"], "level": "INFO", "propagate": False}},
    }
    atomic_write_text(path, json.dumps(config, indent=1) + "\n")
    os.environ["VLLM_LOGGING_CONFIG_PATH"] = os.environ[_ROUTED_MARK] = str(path)
    return log


#: The config path ftevals itself set (a user's own VLLM_LOGGING_CONFIG_PATH never equals it).
_ROUTED_MARK = "FTEVALS_VLLM_LOGGING_CONFIG"


__all__ = ["route_engine_logs"]
