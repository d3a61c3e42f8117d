"""The batch-invariance check on the real vLLM CPU engine with adapters as LoRA requests: after the
engine served the committed banking77 adapter, the base's greedy requests run again in it give the
outputs generated before, so the check passes on a sound engine and records what it re-ran (its
failure, with a stand-in engine: tests/backends/test_vllm_schedule_check.py)."""

from __future__ import annotations

import pytest

from ftevals.backends.base import GenerationRequest
from ftevals.specs import SamplingSpec

pytestmark = pytest.mark.vllm

#: As many prompts as the run generates in one call (re-run: the integrity check's 4 of them).
N = 8


def test_base_requests_re_run_after_lora_requests_give_the_kept_outputs(vllm_backend, banking77_models,
                                                                         banking77_examples) -> None:
    from ftevals.integrity import SCHEDULE_PROMPTS

    sampling = SamplingSpec(max_tokens=16)

    def requests(name: str) -> list[GenerationRequest]:
        spec = banking77_models[name].spec
        return [GenerationRequest(f"check-{name}:{ex.id}", spec, ex.messages, vllm_backend.render(spec, ex.messages),
                                  sampling, ex.id) for ex in banking77_examples[:N]]

    base = requests("base")
    kept = [g.text for g in vllm_backend.generate(base)]
    tuned = [g.text for g in vllm_backend.generate(requests("banking77"))]
    assert sum(a != b for a, b in zip(kept, tuned)) >= N // 2  # the adapter was served and acts
    samples = list(zip(base, kept))[:SCHEDULE_PROMPTS]
    said = vllm_backend.verify_schedule(samples)
    assert said == ("one model per engine call; adapters served as LoRA requests in the base's engine; base requests "
                    f"re-run after them give the run's greedy outputs ({SCHEDULE_PROMPTS}/{SCHEDULE_PROMPTS})")
