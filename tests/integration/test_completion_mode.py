"""A raw-prompt suite end to end: a base model without a chat template, through the pytest plugin and
the real vLLM CPU engine, prompted in completion mode with the suite's template (and a few-shot
contender, so shots are laid out as raw text too).

The model is a tiny random Qwen2 built in the test (tests/support/tinymodels.py) on the embedded
model's tokenizer with its chat template removed: nothing comes from a hub, and its outputs are
noise, so the test checks what the engine was given and what was recorded, not answer quality.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.tinymodels import ARCHS, build_model, tokenizer_without_chat_template

from ftevals.backends.templates import load_tokenizer
from ftevals.data import Message
from ftevals.models import has_chat_template
from ftevals.prompts import completion_text
from ftevals.results import load

pytestmark = pytest.mark.vllm

CSV = """\
label,channel,text
card_arrival,app,Where is my new card?
lost_card,web,I lost my card yesterday
card_arrival,phone,My card has still not arrived
lost_card,app,Someone stole my card
"""
POOL = """\
label,channel,text
card_arrival,web,When will the card come?
lost_card,phone,My card is gone
"""
TEMPLATE = "Ticket ({channel}): {text}\\nOne of: {labels}\\nLabel:"

SUITE = f"""\
from ftevals import FewShot, SamplingSpec, Suite

raw = Suite(
    name="raw-prompt",
    task="classification",
    dataset="tickets.csv",
    columns={{"prompt": "text", "reference": "label"}},
    labels=["card_arrival", "lost_card"],
    system_prompt="Label each support ticket.",
    prompt_template="{TEMPLATE}",
    models=["tiny"],
    reference="tiny",
    fewshot=FewShot(k=2, pool="pool.csv"),
    # A base model runs on past its answer: stop at the blank line that ends a shot.
    sampling=SamplingSpec(max_tokens=8, stop=("\\n\\n",)),
    gates=["accuracy >= 0.0"],
)
"""

INI = """\
[pytest]
ftevals_models =
    tiny = {model}
ftevals_backend = vllm
ftevals_backend_options =
    max_model_len=512
    cpu_kv_cache_gb=1
ftevals_cache_dir = cache
ftevals_results = out/results.json
ftevals_report = out/report.html
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, default_model) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    root = tmp_path_factory.mktemp("completion")
    tokenizer = tokenizer_without_chat_template(default_model.path, root / "tokenizer")
    model = build_model(ARCHS["qwen2"], tokenizer, root / "tiny")
    project = root / "project"
    project.mkdir()
    (project / "pytest.ini").write_text(INI.format(model=model), encoding="utf-8")
    (project / "tickets.csv").write_text(CSV, encoding="utf-8")
    (project / "pool.csv").write_text(POOL, encoding="utf-8")
    (project / "test_raw.py").write_text(SUITE, encoding="utf-8")
    # Fingerprint memos and engine logs of this throwaway model stay out of the user's cache.
    env = {**os.environ, "FTEVALS_CACHE_DIR": str(root / "cache")}
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=600)
    return model, project, done


def test_a_base_model_runs_a_raw_prompt_suite_through_the_plugin_and_vllm(run) -> None:
    model, project, done = run
    assert not has_chat_template(model)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "2 passed" in done.stdout  # the contender's gate and the baseline (created)
    assert "tiny (completion)" in done.stdout and "tiny-fewshot2 (completion)" in done.stdout

    suite = load(project / "out/results.json").suites[0]
    assert suite.prompt_formats == {"tiny": "completion", "tiny-fewshot2": "completion"}
    assert len(suite.examples) == 4
    assert all(set(ex.outputs) == {"tiny", "tiny-fewshot2"} for ex in suite.examples)
    assert all(0 < out.tokens_out <= 8 for ex in suite.examples for out in ex.outputs.values())

    tokenizer = load_tokenizer(model)
    for ex in suite.examples:
        prompt = completion_text([Message(m["role"], m["content"]) for m in ex.messages])
        assert prompt.startswith("Label each support ticket.\n\nTicket (") and prompt.endswith("\nLabel:\n")
        assert "<|im_start|>" not in prompt and "<|im_end|>" not in prompt
        # The engine was given exactly this raw text: its token count is the prompt's, no chat wrapping.
        assert ex.outputs["tiny"].tokens_in == len(tokenizer.encode(prompt, add_special_tokens=False))
        # The few-shot contender read the same question after two solved shots.
        assert ex.outputs["tiny-fewshot2"].tokens_in > ex.outputs["tiny"].tokens_in

    report = (project / "out/report.html").read_text(encoding="utf-8")
    assert "<td>completion</td>" in report

