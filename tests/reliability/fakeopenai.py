"""A scriptable OpenAI-compatible server on 127.0.0.1, in a thread, for the fault and secret tests.

`policy(body, n, attempt)` decides each answer to POST /v1/chat/completions: n counts POSTs so far
(1-based), attempt counts POSTs with this same body. It returns None (a normal answer) or a
`Reply`. Everything the server saw is kept: bodies, Authorization headers, answered-OK bodies.
"""

from __future__ import annotations

import json
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict -> JSON; bytes -> as is; None -> a normal completion
    headers: dict[str, str] = field(default_factory=dict)


def answer_for(body: dict[str, Any]) -> str:
    """A deterministic answer: what the model 'says' depends only on the request."""
    user = body["messages"][-1]["content"]
    return "card_arrival" if len(user) % 2 == 0 else "exchange_rate"


def completion(text: str) -> dict[str, Any]:
    return {"id": "cmpl-1", "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}}


class FakeOpenAI:
    def __init__(self) -> None:
        self.policy: Callable[[dict[str, Any], int, int], Reply | None] = lambda body, n, attempt: None
        self.posts: list[dict[str, Any]] = []
        self.answered: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self._attempts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def reset(self) -> None:
        """Forget what was asked (attempt counts included), as a freshly started server would."""
        with self._lock:
            self.posts.clear()
            self.answered.clear()
            self.auth.clear()
            self._attempts.clear()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in two writes: without this, Nagle and delayed ACKs add
                # 40 ms to every answer.
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, reply: Reply) -> None:
                raw = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self._send(Reply(body={"object": "list", "data": [{"id": "served-base", "object": "model"}]}))

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                key = json.dumps(body, sort_keys=True)
                with server._lock:
                    server.posts.append(body)
                    server.auth.append(self.headers.get("Authorization"))
                    server._attempts[key] += 1
                    n, attempt = len(server.posts), server._attempts[key]
                reply = server.policy(body, n, attempt)
                if reply is None:
                    with server._lock:
                        server.answered.append(body)
                    reply = Reply(body=completion(answer_for(body)))
                elif reply.body is None:
                    reply = Reply(reply.status, completion(answer_for(body)), reply.headers)
                self._send(reply)

        return Handler

    @contextmanager
    def running(self) -> Iterator[FakeOpenAI]:
        thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._httpd.shutdown()
            self._httpd.server_close()


__all__ = ["FakeOpenAI", "Reply", "answer_for", "completion"]
