"""One run, several backends: each model is served by the backend its spec names, else the run's.

A team compares its base and local LoRA adapters (vLLM) with a managed fine-tune behind an
OpenAI-compatible URL in one suite, under the same paired statistics. `RoutedBackend` holds one
backend per name and hands each request to the backend of its model. Cache keys, rendering and
the integrity probe are each backend's own (`serving(model)`), so adding a managed model to a
suite never changes the cache keys of the local models beside it.

Settings: `--ftevals-backend-option KEY=VALUE` sets the run's backend; `NAME.KEY=VALUE` sets
backend NAME (`openai.base_urls=["http://10.0.0.5:8000/v1"]`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..data import Message
from ..errors import BackendError, ConfigError
from ..specs import ModelSpec
from .base import Backend, BackendDefaults, Generation, GenerationRequest, StrategyNote


def backend_of(spec: ModelSpec, default: str) -> str:
    """The name of the backend that serves `spec` in a run whose own backend is `default`."""
    return spec.backend or default


def split_options(default: str, names: Sequence[str], options: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Backend settings per backend name: `KEY` goes to the run's backend, `NAME.KEY` to backend NAME."""
    out: dict[str, dict[str, Any]] = {name: {} for name in names}
    for key, value in options.items():
        head, dot, rest = key.partition(".")
        if not dot:
            out.setdefault(default, {})[key] = value
            continue
        if head not in out:
            raise ConfigError(
                f"backend option {key!r} is for backend {head!r}, which serves no model in this run "
                f"(backends in use: {', '.join(names)}); drop it or name a model '{head}:...'"
            )
        out[head][rest] = value
    return out


class RoutedBackend(BackendDefaults):
    """Routes each request to the backend of its model; see the module docstring."""

    def __init__(self, default: str, backends: Mapping[str, Backend], routes: Mapping[str, str]) -> None:
        self.default = default
        self.backends = dict(backends)
        #: model name -> backend name
        self.routes = dict(routes)
        self.name = self.backends[default].name
        self._hook: Callable[[int], None] | None = None

    def serving(self, model: str) -> Backend:
        return self.backends[self.routes.get(model, self.default)]

    def identity(self) -> dict[str, Any]:
        # What the run records; cache keys use each model's own backend's identity (generate.py).
        ident = dict(self.backends[self.default].identity())
        ident["models_served_elsewhere"] = {
            model: {"backend": name, **self.backends[name].identity()}
            for model, name in sorted(self.routes.items()) if name != self.default
        }
        return ident

    def prompt_format(self, model: ModelSpec, requested: str) -> str:
        return self.serving(model.name).prompt_format(model, requested)

    def render(self, model: ModelSpec, messages: Sequence[Message], prompt_format: str = "chat") -> str:
        served = self.serving(model.name)
        return served.render(model, messages) if prompt_format == "chat" else served.render(model, messages, prompt_format)

    def prepare(self, requests: Sequence[GenerationRequest]) -> None:
        for name, group in self._by_backend(requests).items():
            self.backends[name].prepare([r for _, r in group])

    def model_order(self, names: Sequence[str]) -> list[str]:
        # The run's own backend first (its engine is usually the expensive one), then the others.
        order: list[str] = []
        for backend in [self.default] + [b for b in self.backends if b != self.default]:
            mine = [n for n in names if self.routes.get(n, self.default) == backend]
            order += self.backends[backend].model_order(mine)
        return order

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        out: list[Generation | None] = [None] * len(requests)
        for name, group in self._by_backend(requests).items():
            try:
                gens = self.backends[name].generate([r for _, r in group])
            except BackendError as exc:
                # generate.py keeps what a failed call finished, by index into *its* request list.
                partial = getattr(exc, "partial", None) or {}
                exc.partial = {group[i][0]: g for i, g in partial.items() if 0 <= i < len(group)}  # type: ignore[attr-defined]
                exc.partial.update({i: g for i, g in enumerate(out) if g is not None})  # type: ignore[attr-defined]
                raise
            for (i, _), g in zip(group, gens):
                out[i] = g
        return [g for g in out if g is not None]

    def first_token_logprobs(self, requests: Sequence[GenerationRequest]) -> list[dict[int, float]] | None:
        groups = self._by_backend(requests)
        if len(groups) != 1:
            return None  # the integrity probe asks per adapter, so one backend at a time
        (name, group), = groups.items()
        return self.backends[name].first_token_logprobs([r for _, r in group])

    def _by_backend(self, requests: Sequence[GenerationRequest]) -> dict[str, list[tuple[int, GenerationRequest]]]:
        groups: dict[str, list[tuple[int, GenerationRequest]]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(self.routes.get(r.model.name, self.default), []).append((i, r))
        return groups

    @property  # type: ignore[override]
    def progress_hook(self) -> Callable[[int], None] | None:
        return self._hook

    @progress_hook.setter
    def progress_hook(self, hook: Callable[[int], None] | None) -> None:
        self._hook = hook
        for b in self.backends.values():
            b.progress_hook = hook

    # Timings and choices are the sums and union of the backends'.
    @property  # type: ignore[override]
    def engine_start_seconds(self) -> float:
        return sum(float(b.engine_start_seconds) for b in self.backends.values())

    @property  # type: ignore[override]
    def generate_seconds(self) -> float:
        return sum(float(b.generate_seconds) for b in self.backends.values())

    @property  # type: ignore[override]
    def merge_seconds(self) -> float:
        return sum(float(b.merge_seconds) for b in self.backends.values())

    @property  # type: ignore[override]
    def choices(self) -> Mapping[str, StrategyNote]:
        merged: dict[str, StrategyNote] = {}
        for b in self.backends.values():
            merged.update(b.choices)
        return merged

    def close(self) -> None:
        errors = []
        for b in self.backends.values():
            try:
                b.close()
            except Exception as exc:  # close every backend even when one fails
                errors.append(exc)
        if errors:
            raise errors[0]


__all__ = ["RoutedBackend", "backend_of", "split_options"]
