"""A tiny OpenAI-compatible server on 127.0.0.1, in a thread, scriptable per test.

Each test decides how the server answers (`server.respond = fn`), and reads back what it saw:
requests, headers, the most requests it had in flight at once. Nothing leaves the loopback interface.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict/list -> JSON; bytes/str -> sent as is; None -> a normal completion
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


def completion(text: str, prompt_tokens: int = 7, completion_tokens: int = 3, finish: str = "stop") -> dict[str, Any]:
    return {
        "id": "cmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens},
    }


class FakeServer:
    """Records every POST; `respond(body, n)` (n = 1-based count of POSTs so far) picks the Reply."""

    # Tests reach these through the fixture (conftest modules are not importable by name).
    Reply = Reply
    completion = staticmethod(completion)

    def __init__(self) -> None:
        self.models = ["served-base", "lora-a"]
        self.respond: Callable[[dict[str, Any], int], Reply] = lambda body, n: Reply()
        self.posts: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.auth: list[str | None] = []
        self.inflight = 0
        self.max_inflight = 0
        self._models_inflight: list[str] = []
        self.max_models_inflight = 0  # distinct server model ids in flight at once
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False  # a handler still sleeping for a timeout test must not block teardown
        self._httpd.handle_error = lambda request, address: None  # type: ignore[method-assign]
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like real servers

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server.paths.append(self.path)
                if self.path == "/v1/models":
                    self._send(Reply(body={"object": "list", "data": [{"id": m, "object": "model"} for m in server.models]}))
                else:
                    self._send(Reply(404, {"error": {"message": f"no route {self.path}"}}))

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with server._lock:
                    server.paths.append(self.path)
                    server.auth.append(self.headers.get("Authorization"))
                    body = json.loads(raw)
                    server.posts.append(body)
                    n = len(server.posts)
                    server.inflight += 1
                    server.max_inflight = max(server.max_inflight, server.inflight)
                    server._models_inflight.append(body.get("model"))
                    server.max_models_inflight = max(server.max_models_inflight, len(set(server._models_inflight)))
                try:
                    reply = server.respond(body, n)
                    if reply.delay_s:
                        time.sleep(reply.delay_s)
                    if reply.body is None:
                        reply.body = completion(f"echo: {body['messages'][-1]['content']}" if "messages" in body else "ok")
                    self._send(reply)
                finally:
                    with server._lock:
                        server.inflight -= 1
                        server._models_inflight.remove(body.get("model"))

            def _send(self, reply: Reply) -> None:
                data = reply.body
                if isinstance(data, (dict, list)):
                    data = json.dumps(data)
                if isinstance(data, str):
                    data = data.encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        return Handler


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    server = FakeServer()
    yield server
    server.close()


@pytest.fixture
def make_fake_server() -> Iterator[Callable[[], FakeServer]]:
    """For tests that need several servers."""
    servers: list[FakeServer] = []

    def make() -> FakeServer:
        servers.append(FakeServer())
        return servers[-1]

    yield make
    for s in servers:
        s.close()


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL nothing listens on: bind an ephemeral port, then release it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
