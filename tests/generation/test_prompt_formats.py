"""Prompt formats: a model without a chat template is prompted with raw text (completion mode), a
suite can force either format, and the format is keyed and planned per (suite, model).

The tokenizers are real (the embedded model's, once with its chat template removed); no engine runs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from support.tinymodels import tokenizer_without_chat_template

from ftevals.backends.base import BackendDefaults
from ftevals.backends.openai_http import OpenAIBackend, OpenAISettings
from ftevals.backends.templates import bos_text, load_tokenizer, render_prompt, resolve_prompt_format
from ftevals.backends.vllm import VLLMBackend
from ftevals.cache import cache_key
from ftevals.data import Example, Message
from ftevals.errors import ConfigError, ModelSpecError
from ftevals.generate import Plan, build_messages
from ftevals.models import ModelFolder, ResolvedModel, unverified_models
from ftevals.prompts import completion_text
from ftevals.specs import ModelSpec, SamplingSpec

CHAT_TOKENS = ("<|im_start|>", "<|im_end|>")
QUESTION = Example("q1", (Message("system", "Answer with the intent."), Message("user", "Where is my card?")),
                   "card_arrival")
SHOTS = [Example("s1", (Message("user", "I lost my card"),), "lost_card"),
         Example("s2", (Message("user", "Can I top up by card?"),), "top_up_by_card")]


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory, default_model) -> Path:
    """A folder holding the embedded model's tokenizer without its chat template."""
    return tokenizer_without_chat_template(default_model.path, tmp_path_factory.mktemp("nochat") / "tok")


# ---------------------------------------------------------------------------------------------
# The raw prompt


def test_completion_text_lays_out_system_shots_and_question_as_plain_text() -> None:
    assert completion_text(build_messages(QUESTION, SHOTS)) == (
        "Answer with the intent.\n\n"
        "I lost my card\nlost_card\n\n"
        "Can I top up by card?\ntop_up_by_card\n\n"
        "Where is my card?\n"
    )
    # Without a system prompt or shots it is the question and the line the answer goes on.
    assert completion_text((Message("user", "Where is my card?"),)) == "Where is my card?\n"


class FakeTokenizer:
    """Only what BOS detection reads: a tokenizer that does (or does not) put BOS before text."""

    chat_template = None
    bos_token = "<s>"
    bos_token_id = 1

    def __init__(self, adds_bos: bool) -> None:
        self.adds_bos = adds_bos

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return ([1] if add_special_tokens and self.adds_bos else []) + [ord(c) for c in text]


def test_completion_mode_writes_bos_only_for_a_tokenizer_that_adds_it() -> None:
    messages = (Message("user", "Hi"),)
    # Llama-style: BOS before every document; the local backends encode without special tokens.
    assert render_prompt(FakeTokenizer(adds_bos=True), messages, "completion") == "<s>Hi\n"
    assert render_prompt(FakeTokenizer(adds_bos=False), messages, "completion") == "Hi\n"
    # A server adds it itself (the openai backend's /completions).
    assert render_prompt(FakeTokenizer(adds_bos=True), messages, "completion", bos=False) == "Hi\n"


def test_the_embedded_tokenizer_gets_no_special_tokens_in_completion_mode(base_dir: Path, default_model) -> None:
    raw, chat = load_tokenizer(base_dir), load_tokenizer(default_model.path)
    assert bos_text(raw) == ""  # its tokenizer adds no BOS (its bos_token is a chat token)
    messages = build_messages(QUESTION, SHOTS)
    assert render_prompt(raw, messages, "completion") == completion_text(messages)
    # The same messages through the chat template: every turn wrapped in chat tokens.
    assert all(t in render_prompt(chat, messages, "chat") for t in CHAT_TOKENS)


def test_auto_follows_the_tokenizer_and_chat_is_refused_without_a_template(base_dir: Path, default_model) -> None:
    raw, chat = load_tokenizer(base_dir), load_tokenizer(default_model.path)
    assert resolve_prompt_format(raw, "auto", base_dir) == "completion"
    assert resolve_prompt_format(chat, "auto", default_model.path) == "chat"
    assert resolve_prompt_format(chat, "completion", default_model.path) == "completion"
    with pytest.raises(ModelSpecError) as info:
        resolve_prompt_format(raw, "chat", base_dir)
    assert str(info.value) == (
        f"model folder {base_dir} has no chat template (tokenizer_config.json 'chat_template' or chat_template.jinja), "
        "but the suite sets prompt_format='chat'; add a chat template to the folder, or prompt it as a base model "
        "with raw text (prompt_format='auto' or 'completion')")


# ---------------------------------------------------------------------------------------------
# Keys and plans


def test_the_format_enters_the_cache_key_and_chat_keys_are_unchanged() -> None:
    inputs: dict[str, Any] = dict(backend={"backend": "vllm"}, base_fingerprint="sha256:b", adapter_fingerprint=None,
                                  prompt="Where is my card?\n", sampling=SamplingSpec(max_tokens=8).to_dict())
    chat = cache_key(**inputs)
    assert cache_key(**inputs, prompt_format="chat") == chat  # keys written before formats existed still hit
    assert cache_key(**inputs, prompt_format="completion") != chat  # same text, other format: never shared


@pytest.fixture(scope="module")
def vllm(base_dir: Path, default_model) -> VLLMBackend:
    """A vLLM backend (no engine is started: planning only renders) over a chat and a base model."""
    models = {
        "chat": ResolvedModel(ModelSpec("chat"), ModelFolder(default_model.path, "sha256:chat"), None),
        "raw": ResolvedModel(ModelSpec("raw", base=str(base_dir)), ModelFolder(base_dir, "sha256:raw"), None),
    }
    return VLLMBackend(models)


def _add(plan: Plan, backend: Any, suite: str, model: str, fmt: str = "auto", shots: list[Example] = SHOTS) -> str:
    plan.add(suite, backend.models[model], QUESTION, build_messages(QUESTION, shots), SamplingSpec(max_tokens=8),
             backend, fmt)
    return plan.items[-1].key


def test_a_plan_renders_each_suite_and_model_in_its_format(vllm: VLLMBackend) -> None:
    plan = Plan()
    raw_key = _add(plan, vllm, "auto", "raw")
    chat_key = _add(plan, vllm, "auto", "chat")
    forced_key = _add(plan, vllm, "forced", "chat", "completion")
    assert plan.formats == {("auto", "raw"): "completion", ("auto", "chat"): "chat", ("forced", "chat"): "completion"}
    raw, chat, forced = (plan.requests[k] for k in (raw_key, chat_key, forced_key))
    assert (raw.prompt_format, chat.prompt_format, forced.prompt_format) == ("completion", "chat", "completion")
    assert raw.prompt == forced.prompt == completion_text(build_messages(QUESTION, SHOTS))
    assert not any(t in raw.prompt for t in CHAT_TOKENS) and all(t in chat.prompt for t in CHAT_TOKENS)
    # The chat model prompted raw is another request than the chat model chatting.
    assert len({raw_key, chat_key, forced_key}) == 3


def test_the_hf_backend_renders_the_same_prompts(vllm: VLLMBackend) -> None:
    from ftevals.backends.hf import HFBackend

    hf = HFBackend(vllm.models)
    for model in ("raw", "chat"):
        for fmt in ("auto", "completion"):
            spec, messages = vllm.models[model].spec, build_messages(QUESTION, SHOTS)
            resolved = vllm.prompt_format(spec, fmt)
            assert hf.prompt_format(spec, fmt) == resolved
            assert hf.render(spec, messages, resolved) == vllm.render(spec, messages, resolved)


def test_a_suite_forcing_chat_on_a_base_model_is_refused_naming_suite_model_and_folder(vllm: VLLMBackend,
                                                                                       base_dir: Path) -> None:
    with pytest.raises(ModelSpecError, match=re.escape(
            f"suite 'strict', model 'raw': model folder {base_dir} has no chat template")):
        _add(Plan(), vllm, "strict", "raw", "chat")


def test_openai_chat_endpoint_refuses_completion_and_the_completions_endpoint_renders_raw(base_dir: Path) -> None:
    models = unverified_models([ModelSpec("raw", base=str(base_dir))])
    chat = OpenAIBackend(models, OpenAISettings(model_names={"raw": "served-raw"}))
    assert chat.prompt_format(models["raw"].spec, "auto") == "chat"
    with pytest.raises(ConfigError, match="for raw \\(completion\\) prompts use --ftevals-backend-option chat=false"):
        chat.prompt_format(models["raw"].spec, "completion")
    completions = OpenAIBackend(models, OpenAISettings(chat=False, model_names={"raw": "served-raw"}))
    plan = Plan()
    key = _add(plan, completions, "s", "raw")
    assert plan.formats[("s", "raw")] == "completion"
    assert plan.requests[key].prompt == (
        '{"model":"served-raw","prompt":"Answer with the intent.\\n\\nI lost my card\\nlost_card\\n\\n'
        'Can I top up by card?\\ntop_up_by_card\\n\\nWhere is my card?\\n"}')


class TwoArgumentBackend(BackendDefaults):
    """A backend written before prompt formats: render(model, messages), the default prompt_format."""

    name = "two"

    def __init__(self, models: dict[str, ResolvedModel]) -> None:
        self.models = models

    def identity(self) -> dict[str, Any]:
        return {"backend": self.name}

    def render(self, model: ModelSpec, messages: Any) -> str:
        return messages[-1].content

    def generate(self, requests: Any) -> list[Any]:
        raise AssertionError("not called")


def test_a_backend_without_raw_prompts_keeps_working_and_refuses_completion() -> None:
    backend = TwoArgumentBackend(unverified_models([ModelSpec("m")]))
    plan = Plan()
    key = _add(plan, backend, "s", "m", shots=[])
    assert plan.requests[key].prompt == "Where is my card?" and plan.formats[("s", "m")] == "chat"
    with pytest.raises(ConfigError, match="suite 't', model 'm': the two backend cannot send raw"):
        _add(plan, backend, "t", "m", "completion")
