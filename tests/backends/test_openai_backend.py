"""The openai backend against a scripted in-process server on 127.0.0.1 (see conftest.py)."""

from __future__ import annotations

import json
import time

import pytest

from ftevals.backends import make_backend
from ftevals.backends.base import Backend, GenerationRequest
from ftevals.backends.openai_http import OpenAIBackend, OpenAISettings
from ftevals.data import Message
from ftevals.errors import BackendError, ConfigError
from ftevals.specs import ModelSpec, SamplingSpec

BASE = ModelSpec("base")
ADAPTER = ModelSpec("lora-a", adapter="adapters/lora-a")
GREEDY = SamplingSpec(max_tokens=8)
SERVED_BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"


def make(urls, **kw) -> OpenAIBackend:
    # Short timeouts and near-zero backoff keep every failure test well under a second.
    kw.setdefault("backoff_s", 0.001)
    kw.setdefault("timeout_s", 5.0)
    kw.setdefault("api_key_env", None)
    return OpenAIBackend({}, OpenAISettings(base_urls=tuple([urls] if isinstance(urls, str) else urls), **kw))


def requests_for(backend: OpenAIBackend, texts, model: ModelSpec = BASE, sampling: SamplingSpec = GREEDY):
    out = []
    for i, t in enumerate(texts):
        msgs = (Message("system", "be brief"), Message("user", t))
        out.append(GenerationRequest(f"k{i}", model, msgs, backend.render(model, msgs), sampling, f"ex-{i}"))
    return out


def test_success_fills_text_usage_finish_and_latency(fake_server):
    backend = make(fake_server.url)
    assert isinstance(backend, Backend)
    gens = backend.generate(requests_for(backend, ["hello", "world"]))
    assert [g.text for g in gens] == ["echo: hello", "echo: world"]
    assert all(g.tokens_in == 7 and g.tokens_out == 3 and g.finish_reason == "stop" for g in gens)
    assert all(g.latency_s is not None and 0 < g.latency_s < 5 for g in gens)
    # Two requests run concurrently, so they may reach the server in either order.
    body = next(b for b in fake_server.posts if b["messages"][-1]["content"] == "hello")
    assert fake_server.paths[-1] == "/v1/chat/completions"
    # A plain base model is the listed id of its base (here the default's HF id); greedy requests carry no seed.
    assert body["model"] == SERVED_BASE
    assert body["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]
    assert body["max_tokens"] == 8 and body["temperature"] == 0.0 and body["top_p"] == 1.0
    assert "seed" not in body and "stop" not in body
    backend.close()


def test_model_ids_sampling_fields_and_render(fake_server):
    backend = make(fake_server.url, model_names={"mapped": "ft:custom-7"})
    sampled = SamplingSpec(max_tokens=5, temperature=0.7, top_p=0.9, seed=11, stop=("\n",))
    backend.generate(requests_for(backend, ["a"], ADAPTER, sampled) + requests_for(backend, ["b"], ModelSpec("mapped")))
    first, second = fake_server.posts
    assert first["model"] == "lora-a"  # an adapter is addressed by its ftevals name (--lora-modules NAME=PATH)
    assert (first["seed"], first["temperature"], first["top_p"], first["stop"]) == (11, 0.7, 0.9, ["\n"])
    assert second["model"] == "ft:custom-7"
    msgs = (Message("user", "x"),)
    rendered = backend.render(BASE, msgs)
    assert rendered == backend.render(BASE, msgs)
    assert json.loads(rendered) == {"model": SERVED_BASE, "messages": [{"role": "user", "content": "x"}]}
    assert backend.render(ADAPTER, msgs) != rendered  # a different server model never shares a cache entry
    assert fake_server.paths.count("/v1/models") == 1  # listed once, then remembered


def test_429_is_retried_and_retry_after_honoured(fake_server):
    fake_server.respond = lambda body, n: (
        fake_server.Reply(429, {"error": {"message": "slow down"}}, {"Retry-After": "1" if n == 1 else "0"})
        if n <= 2
        else fake_server.Reply()
    )
    backend = make(fake_server.url, max_retries=4)
    started = time.monotonic()
    (gen,) = backend.generate(requests_for(backend, ["hi"]))
    assert gen.text == "echo: hi"
    assert len(fake_server.posts) == 3 and gen.extra["attempts"] == 3
    assert time.monotonic() - started >= 0.95  # waited the server's Retry-After: 1


def test_500s_exhaust_retries_with_a_clear_error(fake_server):
    fake_server.respond = lambda body, n: fake_server.Reply(500, {"message": "engine core died"})
    backend = make(fake_server.url, max_retries=2)
    with pytest.raises(BackendError) as info:
        backend.generate(requests_for(backend, ["hi"]))
    msg = str(info.value)
    assert len(fake_server.posts) == 3
    assert "0 of 1 requests succeeded" in msg
    assert "failed after 3 attempts" in msg and "HTTP 500" in msg and "engine core died" in msg


def test_400_is_not_retried(fake_server):
    fake_server.respond = lambda body, n: fake_server.Reply(400, {"error": {"message": "max_tokens is too large " + "x" * 1000}})
    backend = make(fake_server.url, max_retries=4)
    with pytest.raises(BackendError) as info:
        backend.generate(requests_for(backend, ["hi"]))
    msg = str(info.value)
    assert len(fake_server.posts) == 1
    assert "HTTP 400" in msg and "max_tokens is too large" in msg and "context length" in msg
    assert "x" * 400 not in msg  # the server's message is truncated


def test_404_model_hint_names_lora_modules_and_lists_models(fake_server):
    fake_server.respond = lambda body, n: fake_server.Reply(404, {"error": {"message": f"The model `{body['model']}` does not exist."}})
    backend = make(fake_server.url)
    with pytest.raises(BackendError) as info:
        backend.generate(requests_for(backend, ["hi"], ModelSpec("missing-lora", adapter="x")))
    msg = str(info.value)
    assert len(fake_server.posts) == 1
    assert "HTTP 404" in msg and "missing-lora" in msg and "does not exist" in msg
    assert "is the adapter loaded?" in msg and "--lora-modules NAME=PATH" in msg
    assert "HuggingFaceTB/SmolLM2-135M-Instruct, lora-a" in msg


def test_malformed_json_is_retried_then_reported(fake_server):
    fake_server.respond = lambda body, n: fake_server.Reply(200, "<html>proxy error" if n == 1 else None)
    backend = make(fake_server.url, max_retries=2)
    (gen,) = backend.generate(requests_for(backend, ["hi"]))
    assert gen.text == "echo: hi" and gen.extra["attempts"] == 2

    fake_server.respond = lambda body, n: fake_server.Reply(200, {"choices": []})
    with pytest.raises(BackendError) as info:
        backend.generate(requests_for(backend, ["again"]))
    assert "failed after 3 attempts" in str(info.value) and "malformed response" in str(info.value)
    assert len(fake_server.posts) == 2 + 3


def test_timeout_is_retried_then_reported(fake_server):
    fake_server.respond = lambda body, n: fake_server.Reply(delay_s=1.0)
    backend = make(fake_server.url, timeout_s=0.2, max_retries=1)
    started = time.monotonic()
    with pytest.raises(BackendError) as info:
        backend.generate(requests_for(backend, ["hi"]))
    assert "timed out" in str(info.value) and "after 2 attempts" in str(info.value)
    assert time.monotonic() - started < 2.0
    backend.close()


def test_connection_refused(closed_port_url):
    backend = make(closed_port_url, max_retries=1, model_names={"base": "m"})
    with pytest.raises(BackendError) as info:
        backend.generate(requests_for(backend, ["hi"]))
    msg = str(info.value)
    assert "connection failed" in msg and "ConnectionRefusedError" in msg and "after 2 attempts" in msg
    assert closed_port_url in msg


def test_concurrency_bound_is_respected(fake_server):
    fake_server.respond = lambda body, n: fake_server.Reply(delay_s=0.15)
    backend = make(fake_server.url, concurrency=3)
    gens = backend.generate(requests_for(backend, [f"q{i}" for i in range(9)]))
    assert [g.text for g in gens] == [f"echo: q{i}" for i in range(9)]  # in request order
    assert fake_server.max_inflight == 3
    backend.close()


def test_models_are_never_in_flight_together(fake_server):
    fake_server.respond = lambda body, n: fake_server.Reply(delay_s=0.05)
    backend = make(fake_server.url, concurrency=4)
    mixed = [r for pair in zip(requests_for(backend, ["a", "b", "c"]), requests_for(backend, ["a", "b", "c"], ADAPTER)) for r in pair]
    gens = backend.generate(mixed)
    assert [g.text for g in gens] == ["echo: a", "echo: a", "echo: b", "echo: b", "echo: c", "echo: c"]
    assert fake_server.max_models_inflight == 1 and fake_server.max_inflight == 3
    assert [p["model"] for p in fake_server.posts] == [SERVED_BASE] * 3 + ["lora-a"] * 3

    backend = make(fake_server.url, concurrency=6, one_model_at_a_time=False)
    backend.generate(mixed)
    assert fake_server.max_models_inflight == 2  # the switch is what keeps them apart


def test_spreads_requests_over_two_urls_and_fails_over(make_fake_server, closed_port_url):
    a, b = make_fake_server(), make_fake_server()
    # Each answer takes a moment, so that two requests are in flight at once even on a loaded
    # machine (instant answers let one server take nearly all of them, least-in-flight being 0).
    a.respond = b.respond = lambda body, n: a.Reply(delay_s=0.05)
    backend = make([a.url, b.url], concurrency=2, model_names={"base": "m"})
    gens = backend.generate(requests_for(backend, [f"q{i}" for i in range(10)]))
    assert len(gens) == 10
    assert len(a.posts) + len(b.posts) == 10 and len(a.posts) >= 3 and len(b.posts) >= 3

    # One server down: every request still succeeds, retried on the other one.
    backend = make([closed_port_url, a.url], concurrency=2, max_retries=1, model_names={"base": "m"})
    before = len(a.posts)
    assert len(backend.generate(requests_for(backend, [f"r{i}" for i in range(6)]))) == 6
    assert len(a.posts) - before == 6


def test_api_key_is_sent_but_never_stored_or_shown(fake_server, monkeypatch):
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("FTEVALS_TEST_KEY", secret)
    backend = make(fake_server.url, api_key_env="FTEVALS_TEST_KEY")
    backend.generate(requests_for(backend, ["hi"]))
    assert fake_server.auth == [f"Bearer {secret}"]
    assert secret not in repr(backend.settings) and secret not in json.dumps(backend.identity())

    # A server that echoes the rejected key (some do) must not leak it into our error.
    fake_server.respond = lambda body, n: fake_server.Reply(401, {"error": {"message": f"Incorrect API key provided: {secret}"}})
    with pytest.raises(BackendError) as info:
        backend.generate(requests_for(backend, ["hi"]))
    msg = str(info.value)
    assert "HTTP 401" in msg and "set $FTEVALS_TEST_KEY" in msg
    assert secret not in msg and secret not in repr(info.value.__cause__)


def test_identity_keys_outputs_not_transport():
    one = make(["http://a:1/v1", "http://b:2/v1"], concurrency=2, timeout_s=3)
    other = make(["http://b:2", "http://a:1/v1/"], concurrency=50, timeout_s=99, max_retries=0)
    # Replicas in any order share cache entries; transport settings never enter the key.
    assert one.identity() == other.identity() == {"backend": "openai", "endpoint": "chat/completions"}
    assert make("http://a:1/v1", cache_tag="vllm-0.32-fp32").identity()["cache_tag"] == "vllm-0.32-fp32"
    assert make("http://a:1/v1", chat=False).identity() != one.identity()


def test_partial_progress_is_reported(fake_server):
    fake_server.respond = lambda body, n: (
        fake_server.Reply(400, {"error": {"message": "prompt too long"}}) if body["messages"][-1]["content"] == "q2" else fake_server.Reply()
    )
    backend = make(fake_server.url, concurrency=1)
    with pytest.raises(BackendError) as info:
        backend.generate(requests_for(backend, [f"q{i}" for i in range(5)]))
    assert "2 of 5 requests succeeded" in str(info.value)
    assert {i: g.text for i, g in info.value.partial.items()} == {0: "echo: q0", 1: "echo: q1"}
    assert len(fake_server.posts) == 3  # the queued rest was not sent after a failure retries cannot fix


def test_settings_are_validated():
    with pytest.raises(ConfigError, match="not an http"):
        OpenAISettings(base_urls=("ftp://x",))
    with pytest.raises(ConfigError, match="base_urls is empty"):
        OpenAISettings(base_urls=())
    with pytest.raises(ConfigError, match="concurrency"):
        OpenAISettings(concurrency=0)
    assert OpenAISettings(base_urls="http://h:9").base_urls == ("http://h:9/v1",)


def test_make_backend_builds_it(fake_server):
    backend = make_backend("openai", {}, {"base_urls": [fake_server.url], "model_names": {"base": "m"}})
    assert isinstance(backend, OpenAIBackend) and backend.name == "openai"
    assert backend.generate(requests_for(backend, ["z"]))[0].text == "echo: z"


def test_completions_mode_renders_the_template_locally(fake_server):
    from ftevals.models import unverified_models

    # A server run resolves models without opening folders; the template comes from the base spec.
    models = unverified_models([BASE])
    fake_server.respond = lambda body, n: fake_server.Reply(
        body={"choices": [{"index": 0, "text": " card_arrival", "finish_reason": "length"}], "usage": {"prompt_tokens": 30, "completion_tokens": 2}}
    )
    backend = OpenAIBackend(models, OpenAISettings(base_urls=(fake_server.url,), chat=False, api_key_env=None))
    (gen,) = backend.generate(requests_for(backend, ["where is my card?"]))
    assert (gen.text, gen.finish_reason, gen.tokens_in, gen.tokens_out) == (" card_arrival", "length", 30, 2)
    assert fake_server.paths[-1] == "/v1/completions"
    prompt = fake_server.posts[0]["prompt"]
    assert prompt.startswith("<|im_start|>system\nbe brief<|im_end|>") and prompt.endswith("<|im_start|>assistant\n")
    assert "messages" not in fake_server.posts[0]


def test_first_token_logprobs_come_from_the_server_per_model(fake_server):
    """The engine-integrity probe on a server: top log-probabilities of the first token, asked with
    `logprobs`/`top_logprobs` and max_tokens 1; a server that refuses or ignores them gives None."""
    backend = make(fake_server.url)
    base, adapter = requests_for(backend, ["a"]), requests_for(backend, ["a"], ADAPTER)
    probs = backend.first_token_logprobs(base + adapter)
    assert probs is not None and len(probs) == 2 and all(len(p) == 2 for p in probs)
    assert probs[0] != probs[1]  # two model ids, two sets of weights
    asked = fake_server.probes
    assert [p["model"] for p in asked] == [SERVED_BASE, "lora-a"]
    assert all(p["logprobs"] is True and p["top_logprobs"] == 5 and p["max_tokens"] == 1 for p in asked)
    assert fake_server.posts == []  # no generation request was made
    for mode in ("refuse", "ignore"):
        fake_server.probe_mode = mode
        assert backend.first_token_logprobs(base) is None, mode
