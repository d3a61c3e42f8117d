"""Live generation progress: per model done/total, output tokens/s and an ETA, at least every few seconds.

A cold run spends minutes inside single engine calls (128 LoRA summaries on a 2-core CPU took
over ten minutes), so a line per finished chunk is not enough. `GenerationProgress` is told about
chunks (generate.py) and about requests finishing inside a chunk (the backend's `progress_hook`),
and a ticker thread re-renders the status every `interval_s` so that elapsed time and the ETA move
even while an engine call is silent.

Three displays, chosen by whoever owns the terminal (the plugin, the CLI):
- `live`: a terminal: one status line rewritten in place, plus a permanent line per finished chunk;
- `plain`: not a terminal (CI logs): a permanent line per finished chunk and a heartbeat line
  every `interval_s` (default 30 s), never carriage returns;
- `quiet` (`-q`): the opening and closing lines only.

ETA: the requests left for each model times that model's measured seconds per request (chunks it
finished in this run, or the chunk in flight once a tenth of it has finished); a model not measured
yet borrows the slowest measured rate (adapters are slower than their base on CPU engines), so the
first figure errs long rather than short.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass
from typing import Any, Literal

Display = Literal["live", "plain", "quiet"]

#: The ETA takes the rate of the chunk in flight once at least 1/LIVE_RATE_SHARE of it has finished.
LIVE_RATE_SHARE = 10

#: (text, transient): a transient line is a status to overwrite in place; others are permanent.
Sink = Callable[[str, bool], None]


def duration(seconds: float) -> str:
    """`45s`, `3m05s`, `1h02m`: short enough for a status line."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


@dataclass
class _ModelProgress:
    total: int
    done: int = 0
    #: Finished chunks only: what the rate is measured on.
    measured_requests: int = 0
    measured_seconds: float = 0.0
    tokens_out: int = 0
    #: Requests finished inside the chunk in flight (from the backend's hook).
    in_chunk: int = 0
    chunk_size: int = 0
    chunk_started: float | None = None

    def seconds_per_request(self) -> float | None:
        return self.measured_seconds / self.measured_requests if self.measured_requests else None


class GenerationProgress:
    """See the module docstring. Thread-safe: the ticker and the backend's hook call in from threads."""

    def __init__(self, sink: Sink, *, display: Display = "plain", interval_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.sink = sink
        self.display = display
        self.interval_s = interval_s if interval_s is not None else (2.0 if display == "live" else 30.0)
        self.clock = clock
        self.models: dict[str, _ModelProgress] = {}
        self.current: str | None = None
        self.started = clock()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        #: Whether finished requests are committed as they come (`begin(streamed=True)`): then an
        #: interrupted chunk keeps what finished in it.
        self.streamed = False

    # -- what generate.py and the backends report ------------------------------------------------

    def begin(self, totals: Mapping[str, int], *, cached: int, backend: str, streamed: bool = False) -> None:
        with self._lock:
            self.models = {name: _ModelProgress(n) for name, n in totals.items() if n}
            self.started = self.clock()
            self.streamed = streamed
        total = sum(totals.values())
        self.sink_line(f"ftevals: {cached} generations from the cache, {total} to generate with {backend}"
                  + (f" ({', '.join(f'{m} {n}' for m, n in totals.items() if n)})" if len(self.models) > 1 else ""))
        if self.display != "quiet" and self.interval_s > 0:
            self._ticker = threading.Thread(target=self._tick, name="ftevals-progress", daemon=True)
            self._ticker.start()

    def chunk_started(self, model: str, size: int) -> None:
        with self._lock:
            m = self.models.setdefault(model, _ModelProgress(size))
            m.in_chunk, m.chunk_size, m.chunk_started = 0, size, self.clock()
            self.current = model

    def requests_done(self, n: int) -> None:
        """Called by a backend as requests of the chunk in flight finish (any thread)."""
        with self._lock:
            if self.current is not None:
                m = self.models[self.current]
                m.in_chunk = min(m.chunk_size, m.in_chunk + n)

    def chunk_done(self, model: str, size: int, generated: int, tokens_out: int, seconds: float, note: str) -> None:
        with self._lock:
            m = self.models.setdefault(model, _ModelProgress(size))
            m.done += size
            m.in_chunk, m.chunk_started = 0, None
            if generated:
                m.measured_requests += generated
                m.measured_seconds += seconds
                m.tokens_out += tokens_out
            line = f"ftevals: [{self._done()}/{self._total()}] {model}: {note}{self._rates(model)}"
        if self.display != "quiet":
            self.sink_line(line)

    def finish(self, *, generated: int, seconds: float) -> None:
        self._stop_ticker()
        self.sink_line(f"ftevals: generated {generated} in {duration(seconds)}")

    def close(self) -> None:
        """Stop the ticker (idempotent; also after an error or Ctrl-C)."""
        self._stop_ticker()

    def interrupted_note(self, cache: str | None) -> str:
        """What an interrupted run keeps: every finished chunk is already in the cache, and when
        requests were committed as they finished, those of the chunk in flight too."""
        done, total = self._done(live=self.streamed), self._total()
        if cache is None:
            return f"ftevals: interrupted after {done} of {total} generations; the cache is off, so they are lost"
        return (f"ftevals: interrupted; the {done} generations finished (of {total}) are kept in the cache {cache}; "
                f"a re-run generates only the {total - done} left")

    # -- rendering ---------------------------------------------------------------------------------

    def status(self) -> str:
        """The one-line status the ticker shows."""
        with self._lock:
            name = self.current
            parts = [f"ftevals: [{self._done(live=True)}/{self._total()}]"]
            if name is not None and name in self.models:
                m = self.models[name]
                parts.append(f"{name} {m.done + m.in_chunk}/{m.total}")
                if m.chunk_started is not None:
                    parts.append(f"chunk {m.in_chunk}/{m.chunk_size}, {duration(self.clock() - m.chunk_started)} in")
            rate = self._tokens_per_s(name) if name else None
            if rate:
                parts.append(f"{rate:.0f} tok/s")
            eta = self.eta()
            parts.append(f"ETA {duration(eta)}" if eta is not None else "ETA after the first chunk")
            return " | ".join(parts)

    def eta(self) -> float | None:
        """Seconds left, or None before any chunk has been measured."""
        with self._lock:
            rates = [r for r in (m.seconds_per_request() for m in self.models.values()) if r is not None]
            if not rates:
                return None
            fallback = max(rates)
            left = 0.0
            now = self.clock()
            for m in self.models.values():
                per = m.seconds_per_request() or fallback
                if m.chunk_started is not None and m.in_chunk * LIVE_RATE_SHARE >= m.chunk_size:
                    # Enough of the chunk in flight has finished to give the current rate, which beats
                    # an older chunk's (a model's first chunk includes the engine's start-up, and
                    # later chunks are up to 16x longer: a stale rate would last for minutes).
                    left += (m.total - m.done - m.in_chunk) * (now - m.chunk_started) / m.in_chunk
                    continue
                if m.chunk_started is not None and m.chunk_size:
                    # A chunk running past its estimate is slower than estimated: so is the rest of it.
                    per = max(per, (now - m.chunk_started) / m.chunk_size)
                left += (m.total - m.done) * per
                if m.chunk_started is not None:
                    left -= min(now - m.chunk_started, m.chunk_size * per)  # the chunk in flight is partly done
            return max(0.0, left)

    def _rates(self, model: str) -> str:
        rate = self._tokens_per_s(model)
        eta = self.eta()
        out = f", {rate:.0f} tok/s" if rate else ""
        left = self._total() - self._done()
        return out + (f", ETA {duration(eta)}" if eta is not None and left else "")

    def _tokens_per_s(self, model: str) -> float | None:
        m = self.models.get(model)
        return m.tokens_out / m.measured_seconds if m and m.measured_seconds > 0 and m.tokens_out else None

    def _done(self, live: bool = False) -> int:
        return sum(m.done + (m.in_chunk if live else 0) for m in self.models.values())

    def _total(self) -> int:
        return sum(m.total for m in self.models.values())

    def _tick(self) -> None:
        while not self._stop.wait(self.interval_s):
            line = self.status()
            if self.display == "live":
                self.sink(line, True)
            else:
                self.sink(line.replace("ftevals: ", "ftevals: still generating ", 1), False)

    def _stop_ticker(self) -> None:
        self._stop.set()
        if self._ticker is not None and self._ticker is not threading.current_thread():
            self._ticker.join(timeout=5)
            self._ticker = None

    def sink_line(self, line: str) -> None:
        """A permanent line (also what claims.py says while it waits for another run)."""
        self.sink(line, False)



__all__ = ["Display", "GenerationProgress", "HookBar", "Sink", "duration"]


class HookBar:
    """A tqdm-shaped counter for engines that take a progress-bar factory (vLLM's
    `LLM.generate(use_tqdm=factory)`): it draws nothing and forwards each update to `report`.

    vLLM also wraps iterables in the factory (`factory(prompts, desc="Rendering prompts")`): those
    are passed through untouched, and only `update()` (finished requests) is reported. It reads
    `format_dict["elapsed"]` to compute its speed postfix, so that key is kept real.
    """

    def __init__(self, report: Callable[[int], None], iterable: Iterable[Any] | None = None, *args: object,
                 total: int | None = None, **kwargs: object) -> None:
        self.report = report
        self.iterable = iterable
        self.total = total
        self.n = 0
        self.postfix: object = None
        self._started = time.monotonic()

    def __iter__(self) -> Iterator[Any]:
        return iter(self.iterable if self.iterable is not None else ())

    def __len__(self) -> int:
        return len(self.iterable) if isinstance(self.iterable, Sized) else int(self.total or 0)

    @property
    def format_dict(self) -> dict[str, float]:
        return {"elapsed": max(time.monotonic() - self._started, 1e-6)}

    def update(self, n: int = 1) -> None:
        self.n += n
        self.report(n)

    def refresh(self) -> None:
        return None

    def close(self) -> None:
        return None
