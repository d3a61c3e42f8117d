"""Bad model and adapter folders are refused before any engine starts, with a message that names the
model, the file and the fix; through the pytest plugin that is a usage error (exit 4) that leaves no
results, report or cache behind.

Every case breaks one thing in a real folder: the committed banking77 adapter or the embedded model.
The vLLM engine is replaced by a tripwire for the plugin runs, so a case that got as far as starting
one fails instead of spending 40 s.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from brokenmodels import (
    copy_adapter,
    edit_config,
    lora_adapter,
    model_without_chat_template,
    truncate,
)

from ftevals.backends.vllm import VLLMBackend, VLLMSettings
from ftevals.errors import ModelSpecError
from ftevals.models import resolve_models
from ftevals.specs import ModelSpec


@dataclass(frozen=True)
class Case:
    name: str
    #: (tmp folder, embedded model folder) -> (base spec, adapter folder or None)
    build: Callable[[Path, Path], tuple[str, Path | None]]
    #: The message after "model 'bad': ", as a regular expression; {adapter} and {base} are filled in.
    message: str


def adapter_case(name: str, breaker: Callable[[Path], object], message: str) -> Case:
    def build(tmp: Path, _default: Path) -> tuple[str, Path | None]:
        folder = tmp / "adapter"
        breaker(folder)
        return "default", folder

    return Case(name, build, message)


def garbage_weights(folder: Path) -> None:
    copy_adapter(folder)
    (folder / "adapter_model.safetensors").write_bytes(b"this is not a safetensors file at all\n" * 40)


CASES = [
    adapter_case("missing-adapter", lambda f: None,
                 r"adapter folder {adapter} does not exist; check the path in the model spec"),
    adapter_case("no-adapter-config", lambda f: (copy_adapter(f), (f / "adapter_config.json").unlink()),
                 r"{adapter} has no adapter_config.json; expected a PEFT adapter folder \(save_pretrained\)"),
    adapter_case("config-not-json", lambda f: (copy_adapter(f), (f / "adapter_config.json").write_text("{r: 16,")),
                 r"{adapter}/adapter_config.json: not valid JSON \(.*\); re-save the adapter"),
    adapter_case("no-weights", lambda f: (copy_adapter(f), (f / "adapter_model.safetensors").unlink()),
                 r"{adapter} has no adapter_model.safetensors; save the adapter with safe_serialization=True"),
    adapter_case("other-base-model",
                 lambda f: edit_config(copy_adapter(f), base_model_name_or_path="meta-llama/Llama-3.2-1B-Instruct"),
                 r"adapter {adapter} was trained on 'meta-llama/Llama-3.2-1B-Instruct', but the base model is "
                 r"{base} \(.*HuggingFaceTB/SmolLM2-135M-Instruct.*\); use the adapter with its own base model"),
    adapter_case("shapes-of-another-model", lambda f: lora_adapter(f, rank=16, in_features=1024),
                 r"adapter {adapter}: base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight has shape "
                 r"\[16, 1024\], but on this base model it must be \[16, 576\] \(module "
                 r"model.layers.0.self_attn.q_proj: weight \[576, 576\], linear, stored \(out, in\)\); the adapter was "
                 r"trained for a different base model"),
    adapter_case("rank-other-than-config", lambda f: edit_config(lora_adapter(f, rank=16), r=8),
                 r"adapter {adapter}: module 'model.layers.0.self_attn.q_proj' has rank 16 \(lora_A \[16, 576\]\) and "
                 r"16 \(lora_B \[576, 16\]\), but adapter_config.json gives it rank 8 \(r or rank_pattern\); fix "
                 r"'r'/'rank_pattern' or re-save the adapter"),
    adapter_case("unknown-target-module",
                 lambda f: edit_config(copy_adapter(f), target_modules=["q_proj", "v_proj", "qkv_fused", "c_attn"]),
                 r"{adapter}/adapter_config.json: target_modules names 'c_attn', 'qkv_fused', which a llama base "
                 r"model does not have \(its LoRA-able modules: down_proj, embed_tokens, gate_proj, k_proj, o_proj, "
                 r"q_proj, up_proj, v_proj\); fix target_modules or use the adapter with its own base model"),
    adapter_case("garbage-safetensors", garbage_weights,
                 r"{adapter}/adapter_model.safetensors is not a readable safetensors file \(header length is "
                 r"implausible\); re-save or re-train the adapter"),
    adapter_case("truncated-safetensors", lambda f: truncate(copy_adapter(f) / "adapter_model.safetensors"),
                 r"{adapter}/adapter_model.safetensors is damaged: its header describes 7,404,368 bytes but the "
                 r"file has 3,702,184 \(a truncated copy or download\?\); copy or re-save the adapter again"),
    Case("missing-base-folder", lambda tmp, _d: (str(tmp / "no-such-model"), None),
         r"base model folder {base} does not exist; give a local model folder \(hub downloads are off\) or "
         r"'default' for the embedded SmolLM2-135M-Instruct"),
]


def expected(case: Case, base: str, adapter: Path | None, default_model: Path) -> str:
    base_path = default_model if base == "default" else Path(base)
    pattern = case.message.replace("{adapter}", re.escape(str(adapter))).replace("{base}", re.escape(str(base_path)))
    return "model 'bad': " + pattern


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_resolve_models_refuses_with_a_precise_message(case: Case, tmp_path: Path, default_model) -> None:
    base, adapter = case.build(tmp_path, default_model.path)
    specs = [ModelSpec("base"), ModelSpec("bad", base=base, adapter=str(adapter) if adapter else None)]
    with pytest.raises(ModelSpecError) as info:
        resolve_models(specs)
    assert re.fullmatch(expected(case, base, adapter, default_model.path), str(info.value)), str(info.value)


def test_rank_above_vllms_limit_is_refused_when_the_backend_is_built(tmp_path: Path, default_model) -> None:
    adapter = lora_adapter(tmp_path / "r1024", rank=1024)
    # The adapter itself is well-formed (it would run merged, or with the hf backend)...
    models = resolve_models([ModelSpec("base"), ModelSpec("bad", adapter=str(adapter))])
    assert models["bad"].adapter is not None and models["bad"].adapter.rank == 1024
    assert VLLMBackend(models, VLLMSettings(strategy="merged")).models is models
    # ...but vLLM cannot serve it as a LoRA: refused before an engine exists, not at engine start.
    with pytest.raises(ModelSpecError) as info:
        VLLMBackend(models, VLLMSettings(strategy="multi-lora"))
    assert str(info.value) == (
        f"model 'bad': adapter {adapter} has LoRA rank 1024, above vLLM's largest supported rank 512; serve it "
        "merged (--ftevals-backend-option strategy=merged), use the hf backend, or retrain it with r <= 512"
    )


def test_a_good_adapter_passes_every_check(default_model) -> None:
    """The control: the unbroken folders resolve, so each case above fails for its one broken thing."""
    from brokenmodels import GOOD_ADAPTER

    models = resolve_models([ModelSpec("base"), ModelSpec("good", adapter=str(GOOD_ADAPTER))])
    assert models["good"].adapter is not None and models["good"].adapter.rank == 16
    assert VLLMBackend(models).models is models


# ---------------------------------------------------------------------------------------------
# Through the pytest plugin: exit 4, the message, nothing written, no engine started

SUITE = """
from ftevals import Suite

checked = Suite(name="checked", task="classification", dataset="data.jsonl", models=("base", "bad"),
                gates=("accuracy >= 0.0",))
"""
ROWS = [{"id": f"r{i}", "messages": [{"role": "user", "content": f"where is my card {i}?"},
                                     {"role": "assistant", "content": "card_arrival"}]} for i in range(3)]
RANK_CASE = Case("rank-1024", lambda tmp, _d: ("default", lora_adapter(tmp / "adapter", rank=1024)),
                 r"adapter {adapter} has LoRA rank 1024, above vLLM's largest supported rank 512; .*")


@pytest.mark.parametrize("case", [*CASES, RANK_CASE], ids=[c.name for c in [*CASES, RANK_CASE]])
def test_plugin_stops_with_a_usage_error_before_any_engine(case: Case, pytester: pytest.Pytester, default_model,
                                                           no_engine: list[str]) -> None:
    (pytester.path / "models").mkdir()
    base, adapter = case.build(pytester.path / "models", default_model.path)
    pytester.makepyfile(test_checked=SUITE)
    (pytester.path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    spec = ("base" if base == "default" else base) + (f"+{adapter}" if adapter else "")
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "-p", "no:hypothesispytest",
        "--ftevals-backend", "vllm", "--ftevals-model", f"bad={spec}",
        "--ftevals-results", "out/results.json", "--ftevals-report", "out/report.html",
        "--ftevals-cache-dir", "cache",
        # Rank 1024 is refused for LoRA requests only; the default (merged) serves it.
        *(["--ftevals-backend-option", "strategy=multi-lora"] if case is RANK_CASE else []),
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR == 4, result.stdout.str() + result.stderr.str()
    errors = [line for line in result.stderr.lines if line.startswith("ERROR: ftevals: ")]
    assert len(errors) == 1, result.stderr.str()
    assert re.fullmatch("ERROR: ftevals: " + expected(case, base, adapter, default_model.path), errors[0]), errors[0]
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert no_engine == []
    assert not (pytester.path / "out").exists() and not (pytester.path / "cache").exists()


def test_a_base_without_chat_template_is_accepted_for_completion_mode(tmp_path: Path, default_model) -> None:
    # Base models usually ship no chat template: suites prompt them with raw text (docs/suites.md).
    base = model_without_chat_template(default_model.path, tmp_path / "nochat")
    assert resolve_models([ModelSpec("bad", base=str(base))])["bad"].base.path == base


def test_a_suite_insisting_on_chat_refuses_a_base_without_template_before_any_engine(
        pytester: pytest.Pytester, default_model, no_engine: list[str]) -> None:
    base = model_without_chat_template(default_model.path, pytester.path / "nochat")
    pytester.makepyfile(test_checked=SUITE.replace('gates=("accuracy >= 0.0",)',
                                                   'gates=("accuracy >= 0.0",), prompt_format="chat"'))
    (pytester.path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "--ftevals-backend", "vllm",
        "--ftevals-model", f"bad={base}", "--ftevals-results", "out/results.json", "--ftevals-report", "out/report.html",
        "--ftevals-cache-dir", "cache",
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    errors = [line for line in result.stderr.lines if line.startswith("ERROR: ftevals: ")]
    assert errors == [
        f"ERROR: ftevals: suite 'checked', model 'bad': model folder {base} has no chat template (tokenizer_config.json "
        "'chat_template' or chat_template.jinja), but the suite sets prompt_format='chat'; add a chat template to the "
        "folder, or prompt it as a base model with raw text (prompt_format='auto' or 'completion')"], result.stderr.str()
    assert no_engine == []
    assert not (pytester.path / "out").exists() and not (pytester.path / "cache").exists()


@pytest.mark.parametrize("case", [c for c in CASES if c.name in ("truncated-safetensors", "unknown-target-module",
                                                                 "other-base-model")], ids=lambda c: c.name)
def test_models_inspect_reports_the_same_problem_with_exit_2(case: Case, tmp_path: Path, default_model,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from ftevals.cli import main

    base, adapter = case.build(tmp_path, default_model.path)
    assert main(["models", "inspect", str(adapter)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ftevals: error: ") and err.endswith("\n")
    message = expected(case, base, adapter, default_model.path).removeprefix("model 'bad': ")
    assert re.fullmatch(message, err.removeprefix("ftevals: error: ").rstrip("\n")), err
