"""The real vLLM CPU engine with the embedded model and a real LoRA adapter, against transformers+peft.

Guards the failure other harnesses have had, where an adapter is silently ignored and the "tuned"
numbers are the base model's: the adapter's greedy outputs must differ from the base's, and vLLM's
greedy outputs must equal the transformers+peft reference, prompt for prompt, for both models, up to
near-ties (the rule and its measurements: tests/support/parity.py). The parity test asks for at
least 8 identical outputs of 12 per model, and the adapter test checks that base and adapter part
at a gap far above the near-tie threshold.
"""

from __future__ import annotations

import pytest
from support.parity import ADAPTER_EFFECT_LOGIT_GAP, adapter_effect_gaps, assert_parity

from ftevals.backends.base import GenerationRequest
from ftevals.specs import SamplingSpec

pytestmark = pytest.mark.vllm

N_PROMPTS = 12
MIN_IDENTICAL = 8


@pytest.fixture(scope="module")
def requests(banking77_models, banking77_examples, vllm_backend):
    sampling = SamplingSpec(max_tokens=16)
    out = []
    for name in ("base", "banking77"):
        model = banking77_models[name]
        for ex in banking77_examples[:N_PROMPTS]:
            prompt = vllm_backend.render(model.spec, ex.messages)
            out.append(GenerationRequest(f"{name}:{ex.id}", model.spec, ex.messages, prompt, sampling, ex.id))
    return out


@pytest.fixture(scope="module")
def vllm_outputs(vllm_backend, requests):
    return {r.key: g.text for r, g in zip(requests, vllm_backend.generate(requests))}


@pytest.fixture(scope="module")
def hf_backend(banking77_models):
    from ftevals.backends.hf import HFBackend

    hf = HFBackend(banking77_models)
    yield hf
    hf.close()


@pytest.fixture(scope="module")
def hf_outputs(hf_backend, requests):
    return {r.key: g.text for r, g in zip(requests, hf_backend.generate(requests))}


def _ids(examples):
    return [ex.id for ex in examples[:N_PROMPTS]]


def test_adapter_changes_greedy_outputs(vllm_outputs, banking77_examples):
    ids = _ids(banking77_examples)
    differing = [i for i in ids if vllm_outputs[f"base:{i}"] != vllm_outputs[f"banking77:{i}"]]
    # The adapter was trained to answer with a bare label; the base model chats. If vLLM dropped
    # the LoRA weights (or applied them to base requests), the pairs would be identical.
    assert len(differing) >= N_PROMPTS - 1, {i: (vllm_outputs[f"base:{i}"], vllm_outputs[f"banking77:{i}"]) for i in ids}


def test_adapter_answers_in_label_format(vllm_outputs, banking77_examples):
    answers = [vllm_outputs[f"banking77:{i}"].strip() for i in _ids(banking77_examples)]
    # snake_case single tokens: the format the adapter was trained on, which the base never uses.
    assert all(a and " " not in a and a == a.lower() for a in answers), answers
    base_answers = [vllm_outputs[f"base:{i}"].strip() for i in _ids(banking77_examples)]
    assert sum(" " in a for a in base_answers) >= N_PROMPTS // 2, base_answers


def test_adapter_effect_is_far_above_implementation_noise(hf_outputs, hf_backend, requests, banking77_examples):
    by_key = {r.key: r for r in requests}
    ids = _ids(banking77_examples)
    # Under the base model: how strongly does it prefer its own token over the adapter's?
    gaps = adapter_effect_gaps(hf_outputs, [by_key[f"base:{i}"] for i in ids], [f"banking77:{i}" for i in ids],
                               hf_backend)
    assert gaps and max(gaps) >= ADAPTER_EFFECT_LOGIT_GAP, gaps


@pytest.mark.parametrize("model", ["base", "banking77"])
def test_vllm_matches_transformers_peft(vllm_outputs, hf_outputs, hf_backend, requests, model):
    assert_parity(vllm_outputs, hf_outputs, [r for r in requests if r.key.startswith(f"{model}:")], hf_backend,
                  min_identical=MIN_IDENTICAL)


def test_requests_are_handed_over_as_they_finish_and_equal_a_plain_call(vllm_backend, requests, vllm_outputs):
    """The streaming path (LLM.enqueue and the engine's step loop, used when generate.py listens
    through `result_hook`) answers like vLLM's own generate call, and hands over every request once."""
    handed: dict[int, str] = {}

    def hook(index, generation):
        assert index not in handed, f"request {index} handed over twice"
        handed[index] = generation.text

    vllm_backend.result_hook = hook
    try:
        outs = vllm_backend.generate(requests)
    finally:
        vllm_backend.result_hook = None
    assert vllm_backend.streams_results
    assert handed == {i: g.text for i, g in enumerate(outs)}
    assert {r.key: g.text for r, g in zip(requests, outs)} == vllm_outputs
