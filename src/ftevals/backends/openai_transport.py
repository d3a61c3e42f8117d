"""The HTTP plumbing of the openai backend: URLs, retryable and fatal failures, a connection pool
per URL, and the router that spreads requests over several server URLs (least in-flight first,
ties broken round-robin). Standard library only."""

from __future__ import annotations

import email.utils
import http.client
import json
import threading
import time
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

from ..errors import ConfigError

#: How much of a server's error body is quoted in our messages (they can be whole HTML pages).
_MAX_QUOTED = 300


def _normalize_url(url: str) -> str:
    parts = urlsplit(str(url).strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"openai backend: {url!r} is not an http(s) URL; expected e.g. http://127.0.0.1:8000/v1")
    path = parts.path.rstrip("/") or "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _display_url(url: str) -> str:
    """The URL without user:password@, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


# ---------------------------------------------------------------------------------------------
# Errors


class _Transient(Exception):
    """A failure worth retrying; `retry_after` is the server's requested wait, if it gave one."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _NotSent(Exception):
    """A queued request skipped because an earlier one failed for good."""


def _hint(status: int, api_key_env: str | None) -> str:
    if status == 401:
        if api_key_env:
            return f"set ${api_key_env} to the server's API key"
        return "this server wants an API key: set api_key_env to the variable that holds it"
    if status == 403:
        return "the API key is not allowed to use this model"
    if status == 404:
        return (
            "is the adapter loaded? start the server with vllm serve BASE --enable-lora --lora-modules NAME=PATH, "
            "or map the ftevals model to the server's id with model_names={NAME: SERVER_ID}"
        )
    if status in (400, 413, 422):
        return "the server rejected the request: check max_tokens against its context length, and the sampling options"
    return "see the server's log"


def _server_message(body: bytes) -> str:
    """The server's own error text: OpenAI-style {"error": {"message"}} or vLLM's {"message"}, else the body."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and err.get("message"):
            text = str(err["message"])
        elif isinstance(err, str) and err:
            text = err
        elif data.get("message"):
            text = str(data["message"])
    text = " ".join(text.split())
    return text if len(text) <= _MAX_QUOTED else text[:_MAX_QUOTED] + "..."


def _retry_after(value: str | None) -> float | None:
    """Retry-After is either seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


# ---------------------------------------------------------------------------------------------
# Transport: pooled connections and a router over the URLs


class _Pool:
    """Idle keep-alive connections per URL; a thread takes one for a request and gives it back."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._idle: dict[str, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    def take(self, url: str) -> tuple[http.client.HTTPConnection, bool]:
        """A connection to url's host and whether it was used before (and so may have gone stale)."""
        with self._lock:
            idle = self._idle.get(url)
            if idle:
                return idle.pop(), True
        parts = urlsplit(url)
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        return cls(parts.hostname or "", parts.port, timeout=self.timeout_s), False

    def give_back(self, url: str, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._idle.setdefault(url, []).append(conn)

    def close(self) -> None:
        with self._lock:
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for c in conns:
            c.close()


class _Router:
    """Picks the URL with the fewest requests in flight; ties go round-robin so load spreads evenly."""

    def __init__(self, urls: Sequence[str]) -> None:
        self.urls = list(urls)
        self._inflight = [0] * len(self.urls)
        self._next = 0
        self._lock = threading.Lock()

    def acquire(self, avoid: int | None = None) -> int:
        n = len(self.urls)
        with self._lock:
            # After a failure on one server, try another one if there is one.
            candidates = [i for i in range(n) if i != avoid] or list(range(n))
            pick = min(candidates, key=lambda i: (self._inflight[i], (i - self._next) % n))
            self._next = (pick + 1) % n
            self._inflight[pick] += 1
            return pick

    def release(self, i: int) -> None:
        with self._lock:
            self._inflight[i] -= 1


# ---------------------------------------------------------------------------------------------
# The backend
