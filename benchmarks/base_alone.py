"""Benchmark only: the main job's requests, every one served by its base model, in one engine.

Issue 15's machine-independent goal compares the cold main job with "the time the base model alone
takes to generate the same requests in one engine". This pytest plugin registers a backend,
`vllm-base-alone`, that plans exactly what the main job plans (same suites, same requests, same
deduplication, same sampling) and then answers each adapter's requests with the base model's
weights: no adapter is merged, swapped or applied. Its outputs are the base's, so its gates fail
(the integrity check's log-probability probe still sees the real adapters and lets it through);
only its wall time is used.

    python -m pytest suites/ -p benchmarks.base_alone --ftevals-backend vllm-base-alone

Never use it to evaluate anything. Its identity differs from the vllm backend's, so its outputs
never land under the vllm backend's cache keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ftevals.backends.base import Generation, GenerationRequest
from ftevals.backends.registry import BackendEntry, register_backend
from ftevals.backends.vllm import VLLMBackend


class BaseAloneBackend(VLLMBackend):
    name = "vllm-base-alone"

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "backend": self.name, "benchmark": "every request served by its base model"}

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        bases = {str(m.base.path): m.spec for m in self.models.values() if m.adapter is None}
        as_base = [replace(r, model=bases[str(self.models[r.model.name].base.path)]) for r in requests]
        return super().generate(as_base)


register_backend(BackendEntry("vllm-base-alone", "benchmarks.base_alone", "BaseAloneBackend", loads_local_weights=True,
                              extra="vllm"))
