"""The generation cache key: everything that can change a generation changes the key; nothing else does."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytest

from ftevals.backends.openai_http import OpenAIBackend, OpenAISettings
from ftevals.backends.replay import ReplayBackend, ReplaySettings
from ftevals.backends.vllm import VLLMBackend, VLLMSettings, is_cpu_platform
from ftevals.cache import cache_key
from ftevals.data import Example, Message
from ftevals.generate import Plan
from ftevals.models import unverified_models
from ftevals.specs import ModelSpec, SamplingSpec

BASE: dict[str, Any] = {
    "backend": {"backend": "vllm", "dtype": "bfloat16", "tensor_parallel_size": 1},
    "base_fingerprint": "sha256:base-weights",
    "adapter_fingerprint": "sha256:adapter-weights",
    "prompt": "<|im_start|>user\nWhere is my card?<|im_end|>\n<|im_start|>assistant\n",
    "sampling": SamplingSpec(max_tokens=16).to_dict(),
}


def key(**change: Any) -> str:
    return cache_key(**{**BASE, **change})


def test_the_key_is_a_stable_sha256_of_the_inputs() -> None:
    k = key()
    assert len(k) == 64 and int(k, 16) >= 0
    assert key() == k
    # Dict order is not content.
    assert key(backend=dict(reversed(list(BASE["backend"].items()))), sampling=dict(reversed(list(BASE["sampling"].items())))) == k


@pytest.mark.parametrize(("field", "value"), [
    ("backend", {"backend": "hf", "dtype": "bfloat16", "tensor_parallel_size": 1}),
    ("backend", {"backend": "vllm", "dtype": "float32", "tensor_parallel_size": 1}),
    ("backend", {"backend": "vllm", "dtype": "bfloat16", "tensor_parallel_size": 2}),
    ("base_fingerprint", "sha256:retrained-base"),
    ("adapter_fingerprint", "sha256:adapter-v2"),
    ("adapter_fingerprint", None),
    ("prompt", BASE["prompt"].replace("card", "cards")),
    ("prompt", BASE["prompt"] + " "),
])
def test_each_input_changes_the_key(field: str, value: Any) -> None:
    assert key(**{field: value}) != key()


@pytest.mark.parametrize("change", [
    {"max_tokens": 17}, {"temperature": 0.7}, {"top_p": 0.9}, {"seed": 1}, {"stop": ("\n",)},
])
def test_each_sampling_parameter_changes_the_key(change: dict[str, Any]) -> None:
    assert key(sampling=replace(SamplingSpec(max_tokens=16), **change).to_dict()) != key()


def test_seed_is_keyed_even_for_greedy_decoding() -> None:
    # Recorded and keyed so a seeded sampled run can be reproduced; greedy runs just pay one miss.
    greedy = [key(sampling=SamplingSpec(max_tokens=16, seed=s).to_dict()) for s in (0, 1)]
    assert greedy[0] != greedy[1]


# ---------------------------------------------------------------------------------------------
# what stays out: timeouts, concurrency, retries, delays, chunk size


def test_openai_identity_ignores_how_answers_arrive() -> None:
    a = OpenAIBackend({}, OpenAISettings(base_urls=("http://127.0.0.1:1/v1",)))
    b = OpenAIBackend({}, OpenAISettings(base_urls=("http://127.0.0.1:2/v1", "http://127.0.0.1:3/v1"), concurrency=64,
                                         timeout_s=5.0, max_retries=0, backoff_s=2.0, jitter_seed=3))
    assert a.identity() == b.identity()
    assert OpenAIBackend({}, OpenAISettings(cache_tag="engine-0.9")).identity() != a.identity()
    assert OpenAIBackend({}, OpenAISettings(chat=False)).identity() != a.identity()


def test_vllm_identity_keys_numerics_not_memory_or_progress() -> None:
    # Building the backend starts no engine (engines start on the first generate), so this is cheap.
    a = VLLMBackend({}, VLLMSettings(dtype="float32"))
    b = VLLMBackend({}, VLLMSettings(dtype="float32", gpu_memory_utilization=0.5, cpu_kv_cache_gb=8, progress=True))
    assert a.identity() == b.identity()
    assert a._engines == {} and b._engines == {}
    for other in (VLLMSettings(dtype="bfloat16"), VLLMSettings(dtype="float32", tensor_parallel_size=2),
                  VLLMSettings(dtype="float32", max_model_len=4096)):
        assert VLLMBackend({}, other).identity() != a.identity()


@pytest.mark.parametrize("change", [
    {"dtype": "bfloat16"}, {"max_model_len": 4096}, {"tensor_parallel_size": 2}, {"pipeline_parallel_size": 2},
    {"trust_remote_code": True}, {"strategy": "multi-lora"}, {"strategy": "auto"}, {"enforce_eager": True},
    {"enforce_eager": False}, {"engine_args": {"quantization": "fp8"}}, {"engine_args": {"kv_cache_dtype": "fp8"}},
])
def test_every_vllm_setting_that_can_change_outputs_misses_the_cache(change: dict[str, Any]) -> None:
    base = VLLMSettings(dtype="float32")
    changed = VLLMSettings(**{**asdict(base), **change})
    def key(settings: VLLMSettings) -> str:
        return cache_key(backend=VLLMBackend({}, settings).identity(), base_fingerprint="sha256:b",
                         adapter_fingerprint=None, prompt="p", sampling={"max_tokens": 8})

    if changed == base or VLLMBackend({}, changed).identity() == VLLMBackend({}, base).identity():
        # enforce_eager=None resolves to eager on the CPU: naming the default is not a change.
        assert change == {"enforce_eager": is_cpu_platform()}
        return
    assert key(changed) != key(base)


def test_engine_args_are_keyed_in_any_order() -> None:
    one = VLLMSettings(engine_args={"a": 1, "b": [2, 3]})
    two = VLLMSettings(engine_args={"b": [2, 3], "a": 1})
    assert VLLMBackend({}, one).identity() == VLLMBackend({}, two).identity()


def _predictions(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"model": "base", "id": "e1", "text": text}) + "\n")
    return path


def test_replay_identity_is_the_file_content_not_its_path_or_delay(tmp_path: Path) -> None:
    one = ReplayBackend({}, ReplaySettings(path=str(_predictions(tmp_path, "a.jsonl", "x"))))
    copy = ReplayBackend({}, ReplaySettings(path=str(_predictions(tmp_path, "b.jsonl", "x")), delay_s=0.5))
    edited = ReplayBackend({}, ReplaySettings(path=str(_predictions(tmp_path, "c.jsonl", "y"))))
    assert one.identity() == copy.identity()
    assert edited.identity() != one.identity()


def _plan(backend: ReplayBackend, specs: list[ModelSpec], sampling: SamplingSpec, examples: list[Example]) -> Plan:
    plan = Plan()
    resolved = unverified_models(specs)
    for spec in specs:
        for ex in examples:
            plan.add("suite", resolved[spec.name], ex, ex.messages, sampling, backend)
    return plan


def test_plan_keys_follow_models_prompts_and_sampling(tmp_path: Path) -> None:
    backend = ReplayBackend({}, ReplaySettings(path=str(_predictions(tmp_path, "p.jsonl", "x"))))
    examples = [Example(f"e{i}", (Message("user", f"question {i}"),), "r") for i in range(3)]
    base, tuned = ModelSpec("base"), ModelSpec("tuned", adapter="adapters/v1")
    plan = _plan(backend, [base, tuned], SamplingSpec(), examples)
    assert len(plan.requests) == 6 and len(plan.items) == 6
    # Identical requests from a second suite collapse into one.
    again = _plan(backend, [base, tuned], SamplingSpec(), examples)
    assert set(again.requests) == set(plan.requests)
    # The replay backend answers by (model name, example id), so an alias of a model is a different
    # request there (its saved predictions may differ), even though the spec is the same.
    aliased = _plan(backend, [base, tuned, ModelSpec("tuned-alias", adapter="adapters/v1")], SamplingSpec(), examples)
    assert set(plan.requests) < set(aliased.requests) and len(aliased.requests) == 9
    # Another adapter, other sampling: all new keys.
    v2 = _plan(backend, [ModelSpec("tuned", adapter="adapters/v2")], SamplingSpec(), examples)
    sampled = _plan(backend, [base], SamplingSpec(temperature=0.8, seed=7), examples)
    assert not set(v2.requests) & set(plan.requests)
    assert not set(sampled.requests) & set(plan.requests)
