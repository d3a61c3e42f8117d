"""Child processes that a failing test must not leave running."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def reaped(*procs: subprocess.Popen[str]) -> Iterator[None]:
    """Kill, and wait for, any of `procs` still running when the block ends, however it ends."""
    try:
        yield
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
