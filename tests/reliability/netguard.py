"""A guard that sees every attempt of this Python process to reach beyond the loopback interface.

It wraps `socket.getaddrinfo` (a name lookup is a DNS query) and `socket.socket.connect` /
`connect_ex` for stream sockets (TCP). A UDP `connect()` sends no packet (vLLM uses one to learn the
machine's own address), so it is not counted. Connections made outside Python's socket module (a C
library opening its own sockets) are out of its sight; the tests that use it say what they cover.

    guard = NetworkGuard(refuse=True).install(monkeypatch)
    ...                                   # code under test
    assert guard.attempts == []
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from typing import Any

import pytest

_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}


def is_loopback(host: Any) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    host = str(host).strip("[]")
    if host.lower() in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


class NetworkBlocked(OSError):
    """What a refused attempt raises: an OSError, as a real unreachable network would."""


class NetworkGuard:
    def __init__(self, *, refuse: bool) -> None:
        self.refuse = refuse
        self.attempts: list[str] = []
        self._lock = threading.Lock()

    def _seen(self, what: str) -> None:
        with self._lock:
            self.attempts.append(what)
        if self.refuse:
            raise NetworkBlocked(f"network access outside 127.0.0.1 attempted in a test: {what}")

    def install(self, monkeypatch: pytest.MonkeyPatch) -> NetworkGuard:
        real_getaddrinfo = socket.getaddrinfo
        real_connect = socket.socket.connect
        real_connect_ex = socket.socket.connect_ex
        guard = self

        def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            if not is_loopback(host):
                guard._seen(f"name lookup of {host!r}")
            return real_getaddrinfo(host, *args, **kwargs)

        def check(sock: socket.socket, address: Any) -> None:
            if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
                host = address[0] if isinstance(address, tuple) else address
                if not is_loopback(host):
                    guard._seen(f"TCP connection to {address!r}")

        def connect(sock: socket.socket, address: Any) -> None:
            check(sock, address)
            return real_connect(sock, address)

        def connect_ex(sock: socket.socket, address: Any) -> int:
            check(sock, address)
            return real_connect_ex(sock, address)

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        monkeypatch.setattr(socket.socket, "connect", connect)
        monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
        return self


__all__ = ["NetworkBlocked", "NetworkGuard", "is_loopback"]
