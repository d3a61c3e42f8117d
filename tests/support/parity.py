"""vLLM vs transformers+peft parity, tolerant of near-ties only.

Two float32 implementations of the same model (vLLM's CPU kernels, PyTorch's) round differently, so
where the top two next tokens are close the argmax can go either way. Measured on the embedded
model, the first differing token of a vLLM/transformers disagreement had logit gaps of 0.005, 0.079
and 0.128 under transformers, on logits around 30. What an ignored or misapplied adapter looks like
is of another order: the base model and the adapter part ways at gaps of several logits. So parity
means: at least `min_identical` identical outputs AND every disagreement starts at a near-tie
(gap <= NEAR_TIE_LOGIT_GAP); an adapter's effect must show a gap >= ADAPTER_EFFECT_LOGIT_GAP.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: Largest gap between the two disputed tokens' logits (under transformers) that counts as a tie.
NEAR_TIE_LOGIT_GAP = 0.25
#: Smallest gap at which the base model and the adapter must part on at least one prompt.
ADAPTER_EFFECT_LOGIT_GAP = 2.0

#: The prompts, output length and parity floor the architecture tests share (test_architectures.py,
#: test_default_strategy.py), and their engine: small, float32 on every machine (parity is between
#: two float32 implementations; "auto" picks bf16 on CPUs with AVX512-BF16, where a tuned Qwen2
#: parted from float32 transformers beyond a tie).
QUESTIONS = (
    "Where is my card?",
    "How do I reset my password?",
    "What is the capital of France?",
    "Write a haiku about rain.",
    "Can I pay with a credit card?",
    "Why was my transfer declined?",
)
MAX_TOKENS = 8
MIN_IDENTICAL = 4
ENGINE = dict(max_model_len=512, cpu_kv_cache_gb=1, dtype="float32")


def logit_gap_at_divergence(hf_backend: Any, request: Any, text_a: str, text_b: str) -> float:
    """Logit gap (under transformers, with the request's model) between the tokens where the texts first differ."""
    import torch

    from ftevals.backends.hf import _adapter

    tok = hf_backend.tokenizer(request.model)
    prompt_ids = tok.encode(request.prompt, add_special_tokens=False)
    a, b = tok.encode(text_a, add_special_tokens=False), tok.encode(text_b, add_special_tokens=False)
    common = 0
    while common < min(len(a), len(b)) and a[common] == b[common]:
        common += 1
    if common == min(len(a), len(b)):
        return 0.0  # one is a prefix of the other: they differ only where one stopped
    model = hf_backend._model_for(str(hf_backend.models[request.model.name].base.path))
    with torch.no_grad(), _adapter(model, request.model.name if request.model.adapter else None):
        logits = model(torch.tensor([prompt_ids + a[:common]])).logits[0, -1]
    return abs(float(logits[a[common]] - logits[b[common]]))


def assert_parity(vllm_outputs: Mapping[str, str], hf_outputs: Mapping[str, str], requests: Sequence[Any],
                  hf_backend: Any, *, min_identical: int) -> None:
    """vLLM's outputs equal transformers+peft's for the given requests, up to near-ties (see module doc)."""
    mismatches = {r.key: (vllm_outputs[r.key], hf_outputs[r.key]) for r in requests
                  if vllm_outputs[r.key] != hf_outputs[r.key]}
    assert len(requests) - len(mismatches) >= min_identical, (
        f"only {len(requests) - len(mismatches)}/{len(requests)} greedy outputs are identical between vLLM and "
        f"transformers+peft: {mismatches}"
    )
    by_key = {r.key: r for r in requests}
    for key, (v, h) in mismatches.items():
        gap = logit_gap_at_divergence(hf_backend, by_key[key], v, h)
        assert gap <= NEAR_TIE_LOGIT_GAP, f"{key}: vLLM {v!r} vs transformers {h!r} diverge at a logit gap of {gap:.4f}"


def adapter_effect_gaps(hf_outputs: Mapping[str, str], base_requests: Sequence[Any], tuned_keys: Sequence[str],
                        hf_backend: Any) -> list[float]:
    """For each prompt where base and adapter differ: how strongly the base prefers its own token (logits)."""
    gaps = []
    for request, tuned in zip(base_requests, tuned_keys):
        if hf_outputs[request.key] != hf_outputs[tuned]:
            gaps.append(logit_gap_at_divergence(hf_backend, request, hf_outputs[request.key], hf_outputs[tuned]))
    return gaps


__all__ = ["ADAPTER_EFFECT_LOGIT_GAP", "NEAR_TIE_LOGIT_GAP", "adapter_effect_gaps", "assert_parity",
           "logit_gap_at_divergence"]
