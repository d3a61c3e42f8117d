"""A backend per model: local contenders and a managed fine-tune (`openai:MODEL_ID`) in one suite.

The local side is the replay backend here (no engine, so this runs in a second); the real pairing
of a local vLLM engine with a `vllm serve` playing the managed endpoint is in test_vllm_serve.py.
"""

from __future__ import annotations

import json

import pytest

from ftevals.backends import make_run_backend
from ftevals.backends.openai_http import OpenAIBackend, OpenAISettings
from ftevals.backends.routed import RoutedBackend, split_options
from ftevals.data import Message
from ftevals.errors import ConfigError
from ftevals.integrity import IntegrityError
from ftevals.pipeline import RunConfig, execute, prepare
from ftevals.results import Results
from ftevals.specs import ModelSpec, parse_model_spec
from tests.support import replayrun

MANAGED_ID = "ft:gpt-4o-mini-2024-07-18:acme::abc123"


def test_a_backend_prefix_names_the_server_model_id_verbatim():
    spec = parse_model_spec("gpt", f"openai:{MANAGED_ID}")
    assert spec == ModelSpec("gpt", base=MANAGED_ID, backend="openai")
    assert spec.to_dict()["backend"] == "openai"
    # A local backend's prefix keeps the usual base+adapter grammar.
    assert parse_model_spec("t", "hf:base+adapters/x@fewshot=2") == ModelSpec("t", "default", "adapters/x", 2, "hf")
    # Only a registered backend is a prefix: anything else stays a path, and records stay as they were.
    assert parse_model_spec("t", "runs:v2") == ModelSpec("t", base="runs:v2")
    assert "backend" not in ModelSpec("t").to_dict()
    with pytest.raises(ConfigError, match="names no model after 'openai:'"):
        parse_model_spec("gpt", "openai:")


def test_options_go_to_their_backend_and_a_stray_prefix_is_refused():
    opts = split_options("vllm", ["vllm", "openai"], {"dtype": "float32", "openai.base_urls": ["http://h:1/v1"]})
    assert opts == {"vllm": {"dtype": "float32"}, "openai": {"base_urls": ["http://h:1/v1"]}}
    with pytest.raises(ConfigError, match="for backend 'openai', which serves no model in this run"):
        split_options("vllm", ["vllm"], {"openai.concurrency": 2})


def test_a_plain_base_model_is_never_guessed(fake_server):
    fake_server.models = ["some-other-model", "lora-a"]
    backend = OpenAIBackend({}, OpenAISettings(base_urls=(fake_server.url,), api_key_env=None))
    with pytest.raises(ConfigError) as info:
        backend.render(ModelSpec("base"), (Message("user", "x"),))
    msg = str(info.value)
    assert "matches none of the model ids" in msg and "some-other-model, lora-a" in msg
    assert "model_names" in msg and "base=openai:SERVER_ID" in msg
    mapped = OpenAIBackend({}, OpenAISettings(base_urls=(fake_server.url,), api_key_env=None,
                                              model_names={"base": "some-other-model"}))
    assert json.loads(mapped.render(ModelSpec("base"), ()))["model"] == "some-other-model"
    backend.close()
    mapped.close()


def test_openai_base_url_is_honoured(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://10.1.2.3:9000/v1")
    assert OpenAISettings().base_urls == ("http://10.1.2.3:9000/v1",)
    monkeypatch.delenv("OPENAI_BASE_URL")
    assert OpenAISettings().base_urls == ("http://127.0.0.1:8000/v1",)


def test_local_models_and_a_managed_fine_tune_in_one_suite(fake_server, tmp_path, monkeypatch):
    """Replay serves base and adapter, the fake server the managed model: one suite, paired stats."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-not-to-be-seen")
    labels = json.loads(replayrun.LABELS.read_text())
    answers = {ex.user_text: ex.reference for ex in replayrun.load_dataset(replayrun.DATASET)}
    # The managed model answers every example right: it must come out better than the base.
    fake_server.answer = lambda body: answers.get(body["messages"][-1]["content"], labels[0])
    fake_server.models = [MANAGED_ID]
    models = {**replayrun.MODELS, "gpt": parse_model_spec("gpt", f"openai:{MANAGED_ID}")}
    suite = replayrun.suite(24)
    suite = type(suite)(**{**suite.__dict__, "models": (*suite.models, "gpt"), "gates": ("gpt: accuracy > base",)})
    preds = replayrun.write_predictions(tmp_path / "preds.jsonl")
    config = RunConfig(models=models, backend="replay", cache_dir=tmp_path / "cache", resamples=200,
                       backend_options={"path": str(preds), "openai.base_urls": [fake_server.url]})
    results = execute(prepare([suite], config))
    assert isinstance(results, Results)
    suite_result = results.suites[0]
    gpt = suite_result.scores["gpt"]["accuracy"].value
    assert gpt == 1.0, gpt
    assert {p["model"] for p in fake_server.posts} == {MANAGED_ID}
    assert len(fake_server.posts) == 24
    # The managed model is compared with the base like any other contender, and it is recorded.
    cmp = next(c for c in suite_result.comparisons if c.model == "gpt" and c.metric == "accuracy")
    assert cmp.delta > 0
    assert results.models["gpt"].backend == "openai" and results.models["base"].backend is None
    assert results.run.backend.name == "replay"
    served = results.run.backend.settings["models_served_elsewhere"]["gpt"]
    assert served["backend"] == "openai"
    text = json.dumps(results.to_dict())
    assert "sk-secret-not-to-be-seen" not in text and "OPENAI_API_KEY" not in text.replace('"api_key_env"', "")
    assert suite_result.gates[0].passed

    # Re-run: everything from the cache, and the local models' keys did not move when gpt joined.
    fake_server.reset()
    again = execute(prepare([suite], config))
    assert fake_server.posts == [] and again.run.timings["generated"] == 0


def test_a_run_with_one_backend_is_not_routed(tmp_path):
    preds = replayrun.write_predictions(tmp_path / "preds.jsonl")
    from ftevals.models import unverified_models

    resolved = unverified_models(replayrun.MODELS.values())
    backend = make_run_backend("replay", resolved, {"path": str(preds)})
    assert not isinstance(backend, RoutedBackend) and backend.serving("base") is backend


def test_a_managed_candidate_joins_every_suite_and_is_gated_like_an_adapter():
    """`pytest suites/ --ftevals-model "gpt=openai:ft:..."`: a CI job's managed fine-tune has no base
    we can see, so it joins every selected suite (unless one opts out) and unqualified gates apply."""
    from ftevals.suite import gated_model_names, suite_model_names, unused_candidates

    table = {**replayrun.MODELS, "gpt": parse_model_spec("gpt", f"openai:{MANAGED_ID}")}
    suite = replayrun.suite(10)
    assert suite_model_names(suite, table, ("gpt",)) == ["base", "banking77", "gpt"]
    assert unused_candidates([suite], table, ("gpt",)) == []
    opted_out = type(suite)(**{**suite.__dict__, "candidates": False})
    assert unused_candidates([opted_out], table, ("gpt",)) == ["gpt"]
    assert gated_model_names(suite, [table[m] for m in ("base", "banking77", "gpt")]) == ["banking77", "gpt"]


def test_an_adapter_on_a_server_gets_the_engine_integrity_check(fake_server, tmp_path):
    """Base and adapter served by an OpenAI-compatible server answer alike (echo): the outputs cannot
    tell, so the probe asks the server for first-token log-probabilities. They differ per model id:
    a weak adapter, recorded. A server that drops the fields leaves nothing to tell: the adapter fails
    (its gates fail with the cause), the base is still scored and written."""
    suite = replayrun.suite(8)  # base and banking77
    config = RunConfig(models=replayrun.MODELS, backend="openai", cache_dir=tmp_path / "cache", resamples=100,
                       backend_options={"base_urls": [fake_server.url], "model_names": {"banking77": "lora-a"}})
    results = execute(prepare([suite], config))
    check = results.integrity["banking77"]
    assert check.changed_outputs == 0 and check.applied and check.probe == "first-token-logprobs"
    assert {p["model"] for p in fake_server.probes} == {"HuggingFaceTB/SmolLM2-135M-Instruct", "lora-a"}
    fake_server.probe_mode = "ignore"
    failed = execute(prepare([suite], RunConfig(**{**config.__dict__, "cache_dir": tmp_path / "cache2"})))
    (only,) = failed.suites
    assert only.models == ("base",) and "banking77" not in only.scores
    assert "cannot report log-probabilities" in only.failures["banking77"]
    assert all(not g.passed and "banking77 was not evaluated: engine integrity" in g.message for g in only.gates)
