"""Fixtures for the scriptable OpenAI-compatible server on 127.0.0.1 in tests/support/fakeopenai.py.

Each test decides how the server answers (`server.respond = fn`), and reads back what it saw:
requests, headers, the most requests it had in flight at once. Nothing leaves the loopback interface.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from support.fakeopenai import FakeOpenAI, closed_url


@pytest.fixture
def fake_server() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI()
    yield server
    server.close()


@pytest.fixture
def make_fake_server() -> Iterator[Callable[[], FakeOpenAI]]:
    """For tests that need several servers."""
    servers: list[FakeOpenAI] = []

    def make() -> FakeOpenAI:
        servers.append(FakeOpenAI())
        return servers[-1]

    yield make
    for s in servers:
        s.close()


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL nothing listens on: bind an ephemeral port, then release it."""
    return closed_url()
