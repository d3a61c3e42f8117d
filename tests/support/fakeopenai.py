"""A scriptable OpenAI-compatible server on 127.0.0.1, in a thread: nothing leaves the loopback interface.

Each test decides how the server answers with `server.respond = fn`: `respond(body, n)` (n = the
1-based count of POSTs so far) returns a `Reply`, and `Reply()` is a normal completion whose text is
`server.answer(body)`. `server.attempt(body)` says how often this same body has been POSTed, the
current POST included, so that a policy can fail a first attempt and let the retry through.

What the server saw stays readable: every POST body, path and Authorization header, the bodies it
answered with a normal completion, the most requests (and distinct models) it had in flight at once.

    with FakeOpenAI() as server:          # or server = FakeOpenAI() ... server.close()
        server.respond = lambda body, n: Reply(429) if server.attempt(body) == 1 else Reply()
"""

from __future__ import annotations

import dataclasses
import json
import zlib
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict/list -> JSON; bytes/str -> sent as is; None -> a normal completion
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


def completion(text: str, prompt_tokens: int = 7, completion_tokens: int = 3, finish: str = "stop",
               logprobs: Any = None) -> dict[str, Any]:
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
    if logprobs is not None:
        choice["logprobs"] = logprobs
    return {
        "id": "cmpl-1",
        "object": "chat.completion",
        "choices": [choice],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens},
    }


def model_logprobs(body: dict[str, Any]) -> dict[str, Any] | None:
    """When asked (`logprobs`, as the engine-integrity probe asks), chat-style top log-probabilities
    that depend on the model id, as a server that really applies each model's weights gives."""
    if not body.get("logprobs"):
        return None
    shift = zlib.crc32(str(body.get("model")).encode()) % 1000 / 1000
    top = [{"token": "card", "logprob": -0.2 - shift}, {"token": "lost", "logprob": -1.9 + shift}]
    return {"content": [{"token": "card", "logprob": -0.2 - shift, "top_logprobs": top}]}


def echo(body: dict[str, Any]) -> str:
    """The default answer: the last message back, so that a test can tell the answers apart."""
    return f"echo: {body['messages'][-1]['content']}" if "messages" in body else "ok"


def label_answer(body: dict[str, Any]) -> str:
    """A BANKING77 intent that depends only on the request, for runs that score the answers."""
    user = body["messages"][-1]["content"]
    return "card_arrival" if len(user) % 2 == 0 else "exchange_rate"


def closed_url() -> str:
    """A loopback URL nothing listens on: bind an ephemeral port, then release it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def _body_key(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True)


class FakeOpenAI:
    """Serves GET /v1/models (`models`) and POST .../completions (`respond`); records every request."""

    # Tests that only get the server from a fixture reach these through it.
    Reply = Reply
    completion = staticmethod(completion)

    def __init__(self, answer: Callable[[dict[str, Any]], str] = echo) -> None:
        self.models = ["HuggingFaceTB/SmolLM2-135M-Instruct", "lora-a"]  # as `vllm serve ORG/NAME` lists them
        self.answer = answer
        self.respond: Callable[[dict[str, Any], int], Reply] = lambda body, n: Reply()
        self.posts: list[dict[str, Any]] = []
        #: Requests of the engine-integrity probe (they ask for `logprobs`), apart from `posts`.
        self.probes: list[dict[str, Any]] = []
        #: How probes are met: "answer" (log-probabilities per model id), "ignore" (a completion
        #: without them, as servers that drop unknown fields do) or "refuse" (HTTP 400).
        self.probe_mode = "answer"
        self.paths: list[str] = []
        self.auth: list[str | None] = []
        self.answered: list[dict[str, Any]] = []  # bodies that got a normal completion
        self.inflight = 0
        self.max_inflight = 0
        self._models_inflight: list[str] = []
        self.max_models_inflight = 0  # distinct server model ids in flight at once
        self._attempts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False  # a handler still sleeping for a timeout test must not block teardown
        self._httpd.handle_error = lambda request, address: None  # type: ignore[method-assign]
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def attempt(self, body: dict[str, Any]) -> int:
        """How many times this body has been POSTed so far (1 while its first POST is answered)."""
        with self._lock:
            return self._attempts[_body_key(body)]

    def reset(self) -> None:
        """Forget what was asked (attempt counts included), as a freshly started server would."""
        with self._lock:
            self.posts.clear()
            self.probes.clear()
            self.paths.clear()
            self.auth.clear()
            self.answered.clear()
            self._attempts.clear()
            self.max_inflight = self.max_models_inflight = 0

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAI:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like real servers

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in two writes: without this, Nagle and delayed ACKs add
                # 40 ms to every answer.
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                server.paths.append(self.path)
                if self.path == "/v1/models":
                    self._send(Reply(body={"object": "list", "data": [{"id": m, "object": "model"} for m in server.models]}))
                else:
                    self._send(Reply(404, {"error": {"message": f"no route {self.path}"}}))

            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw)
                if body.get("logprobs"):
                    # The engine-integrity probe: answered as is, kept apart from the generation
                    # requests the tests count and script faults on.
                    with server._lock:
                        server.probes.append(body)
                    if server.probe_mode == "refuse":
                        self._send(Reply(400, {"error": {"message": "logprobs are not supported"}}))
                    else:
                        lp = model_logprobs(body) if server.probe_mode == "answer" else None
                        self._send(Reply(body=completion(server.answer(body), logprobs=lp)))
                    return
                with server._lock:
                    server.paths.append(self.path)
                    server.auth.append(self.headers.get("Authorization"))
                    server.posts.append(body)
                    server._attempts[_body_key(body)] += 1
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
                        if reply.status == 200:
                            with server._lock:
                                server.answered.append(body)
                        reply = dataclasses.replace(reply, body=completion(server.answer(body)))
                finally:
                    # Before the reply goes out: once the client has it, it may send the next model's
                    # request, which must not find this one still counted in flight.
                    with server._lock:
                        server.inflight -= 1
                        server._models_inflight.remove(body.get("model"))
                self._send(reply)

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


__all__ = ["FakeOpenAI", "Reply", "closed_url", "completion", "echo", "label_answer", "model_logprobs"]
