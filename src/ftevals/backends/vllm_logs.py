"""Where vLLM's own output goes: a log file under ftevals' cache, not the user's terminal.

vLLM configures its logging once per process, at import, from VLLM_LOGGING_CONFIG_PATH, and its
engine processes inherit file descriptor 2; so ftevals writes a logging config pointing at
`~/.cache/ftevals/logs/vllm.log` and points fd 2 there while vLLM is imported and engines start.

Because the terminal no longer shows vLLM's tracebacks, an engine that fails to start or dies is
explained from that log: `engine_failure` finds the exception that ended it in the lines written
since the engine started (`log_size` at its start), and the error the user sees quotes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import time
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


# -- an engine's failure, from its log ----------------------------------------------------------

#: At most this much of the end of an engine's part of the log is read: the traceback that ended it
#: is near the end, and a long run's log can be large.
FAILURE_TAIL_BYTES = 1 << 20
#: A quoted cause is cut to this many characters: it goes into a one-line error message.
CAUSE_CHARS = 400

#: What vLLM and Python's logging put before a line (stripped, so that traceback structure shows):
#: ANSI colours; vLLM's "(EngineCore_DP0 pid=7) " on its engine processes' output; vLLM's own
#: format "ERROR 12-08 00:38:19 [core.py:1505] " (every line of a traceback gets it); the
#: format of ftevals' logging config, "2026-12-08 00:38:19,531 ERROR 9375 vllm.v1.engine.core: ".
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_PREFIXES = (
    re.compile(r"^\([^()]*pid=\d+[^()]*\) ?"),
    re.compile(r"^(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) \d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \[[^\]]*\] ?"),
    re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[,.]\d+ (?:DEBUG|INFO|WARNING|ERROR|CRITICAL) \d+ [\w.]+: "),
)
_TRACEBACK = "Traceback (most recent call last):"
#: Python's lines between two tracebacks of one chained exception (the later one wraps the earlier).
_CHAINED = ("The above exception was the direct cause of the following exception:",
            "During handling of the above exception, another exception occurred:")
#: A report of a failure elsewhere: "See stack trace for root cause", "check the stack trace above".
_POINTS_ELSEWHERE = re.compile(r"root cause|stack trace|see (?:the )?(?:log|above)", re.IGNORECASE)
#: The last line of a traceback: "RuntimeError: message", "torch.OutOfMemoryError: ...", "KeyboardInterrupt".
_EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*)(?::(.*))?$")
#: An exception raised without a message is known by its name alone ("KeyboardInterrupt").
_BARE_EXCEPTION = re.compile(r"(?:Error|Exception|Interrupt|Exit|Warning)$")


def log_size(log: Path | None) -> int:
    """Where `log` ends now: an engine started after this call writes its lines from here on."""
    if log is None:
        return 0
    try:
        return log.stat().st_size
    except OSError:
        return 0  # not written yet: everything it will hold is this engine's


def engine_failure(log: Path | None, since: int) -> str | None:
    """The exception that ended an engine ("RuntimeError: Unsupported CPU attention ..."), found in
    what `log` got after byte `since` (its size when the engine started), or None."""
    if log is None:
        return None
    try:
        with log.open("rb") as f:
            end = f.seek(0, os.SEEK_END)
            if end < since:
                since = 0  # the log was replaced or truncated since: all of it is newer
            start = max(since, end - FAILURE_TAIL_BYTES)
            f.seek(start)
            data = f.read(end - start)
    except OSError:
        return None
    text = data.decode("utf-8", errors="replace")
    if start > since:  # cut inside the engine's part: drop the partial first line
        text = text.partition("\n")[2]
    return root_exception(text)


def failure_note(log: Path | None, since: int, *, wait_s: float = 1.0) -> str:
    """What an error message about a failed or dead engine adds: "; the engine's log <path> names
    the cause: <exception>", or where its last lines are when it has none (a SIGKILL leaves no
    traceback). "" when vLLM's output is not routed to a log (the user sees it on the terminal).

    The engine's last lines can reach the file a moment after its death is noticed (a process
    writes its traceback as it goes down): a log without a cause is read again for up to `wait_s`.
    """
    if log is None:
        return ""
    deadline = time.monotonic() + wait_s
    while (cause := engine_failure(log, since)) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    if cause is None:
        return f"; the engine's last lines are in its log {log}"
    return f"; the engine's log {log} names the cause: {cause}"


def root_exception(text: str) -> str | None:
    """The root cause among the tracebacks in `text` (log lines), as "Type: message".

    The last traceback is the one that ended the engine; when it is chained ("The above exception
    was the direct cause...") the first of its chain is the root. vLLM's processes then report a
    failure of the process below them again, pointing at it ("WorkerProc initialization failed
    ... See stack trace for root cause") or quoting it ("Worker failed with error '<message>'"):
    from such a report, the earlier traceback it points at or quotes is the cause.
    """
    lines = [_strip_prefixes(line) for line in text.splitlines()]
    found: list[tuple[str, bool]] = []  # (exception line, chained to the traceback before it)
    i = 0
    while i < len(lines):
        if lines[i].strip() != _TRACEBACK:
            i += 1
            continue
        chained = _chain_marker_before(lines, i)
        i += 1
        while i < len(lines) and (lines[i].startswith((" ", "\t")) or not lines[i].strip()):
            i += 1  # the frames ("  File ...", the source line, "^^^^" markers)
        if i < len(lines):
            exception = _exception_line(lines, i)
            if exception is not None:
                found.append((exception, chained))
    if not found:
        return None
    at = len(found) - 1
    while at > 0 and found[at][1]:
        at -= 1
    cause = found[at][0]
    for earlier, _chained in reversed(found[:at]):
        if earlier == cause:
            continue  # the same failure, reported by two processes or printed twice
        message = earlier.partition(": ")[2].strip()
        if _POINTS_ELSEWHERE.search(cause) or (len(message) >= 10 and message in cause):
            cause = earlier
        else:
            break
    return cause if len(cause) <= CAUSE_CHARS else cause[: CAUSE_CHARS - 3] + "..."


def _strip_prefixes(line: str) -> str:
    line = _ANSI.sub("", line.rstrip("\r"))
    for prefix in _PREFIXES:
        line = prefix.sub("", line, count=1)
    return line


def _chain_marker_before(lines: list[str], i: int) -> bool:
    j = i - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    return j >= 0 and lines[j].strip() in _CHAINED


def _exception_line(lines: list[str], i: int) -> str | None:
    """The exception at line i, the first after a traceback's frames, or None if it is not one."""
    match = _EXCEPTION.match(lines[i].strip())
    if match is None:
        return None
    name, message = match.group(1), (match.group(2) or "").strip()
    if match.group(2) is None and not _BARE_EXCEPTION.search(name):
        return None  # a lone word ("Killed") after a cut-off traceback, not an exception
    if not message and match.group(2) is not None:
        # "RuntimeError: " with the message on the lines after it (multiprocessing's bootstrap error)
        rest = [line.strip() for line in lines[i + 1:i + 4] if line.strip()]
        message = rest[0] if rest else ""
    return f"{name}: {message}" if message else name


__all__ = ["engine_failure", "failure_note", "log_size", "root_exception", "route_engine_logs"]
