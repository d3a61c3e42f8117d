"""The one table of generation backends: name -> where its class lives.

The CLI (`--backend` choices), the pytest plugin (`--ftevals-backend`, `ftevals_backend`), the
pipeline (which backends read local weights) and `make_backend` all read this table, so a new
backend is one module plus one `register_backend(...)` line, never a list edited in three places.

Entries name their class by module path and are imported only when a backend is built: importing
this module (or the plugin, or the CLI) never imports torch, vLLM or an HTTP client.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, MissingDependencyError


@dataclass(frozen=True)
class BackendEntry:
    """Where a backend lives and what a run needs to know about it before building it."""

    #: The name users pass (`--ftevals-backend NAME`); recorded in results.
    name: str
    #: Dotted module path holding the class, imported lazily by `load()`.
    module: str
    #: The class in `module`; it satisfies `ftevals.backends.base.Backend`.
    class_name: str
    #: True when the backend loads weights from local folders, so the run fingerprints them;
    #: False when weights live elsewhere (a server) or nowhere (replay): specs are recorded unverified.
    loads_local_weights: bool
    #: The `pip install 'ftevals[EXTRA]'` extra that brings its dependencies, if there is one.
    extra: str | None = None

    def load(self) -> Any:
        """Import the module and return the backend class."""
        try:
            module = importlib.import_module(self.module)
        except ModuleNotFoundError as exc:
            if exc.name and (self.module == exc.name or self.module.startswith(exc.name + ".")):
                raise ConfigError(f"backend {self.name!r}: cannot import module {self.module!r} ({exc})") from exc
            if exc.name and self.extra:  # a dependency is missing, and we know what brings it
                raise MissingDependencyError(exc.name, f"pip install 'ftevals[{self.extra}]'",
                                             f"needed by the {self.name} backend") from exc
            raise
        try:
            return getattr(module, self.class_name)
        except AttributeError:
            raise ConfigError(f"backend {self.name!r}: module {self.module!r} has no class "
                              f"{self.class_name!r}") from None


REGISTRY: dict[str, BackendEntry] = {}


def register_backend(entry: BackendEntry) -> None:
    """Add a backend (or replace one of the same name) so every entry point can use it by name."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", entry.name):
        raise ConfigError(f"backend name {entry.name!r} must be one word of letters, digits, _ or -")
    REGISTRY[entry.name] = entry


def backend_names() -> tuple[str, ...]:
    """Registered backend names, built-ins first, in registration order."""
    return tuple(REGISTRY)


def backend_entry(name: str) -> BackendEntry:
    """The entry for `name`; an unknown name is a ConfigError listing the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown backend {name!r}; expected one of {', '.join(REGISTRY)}") from None


def loads_local_weights(name: str) -> bool:
    """Whether backend `name` reads model folders from disk (so their weights can be fingerprinted)."""
    return backend_entry(name).loads_local_weights


for _entry in (
    BackendEntry("vllm", "ftevals.backends.vllm", "VLLMBackend", loads_local_weights=True, extra="vllm"),
    BackendEntry("hf", "ftevals.backends.hf", "HFBackend", loads_local_weights=True, extra="hf"),
    BackendEntry("openai", "ftevals.backends.openai_http", "OpenAIBackend", loads_local_weights=False),
    BackendEntry("replay", "ftevals.backends.replay", "ReplayBackend", loads_local_weights=False),
):
    register_backend(_entry)
del _entry

__all__ = ["REGISTRY", "BackendEntry", "backend_entry", "backend_names", "loads_local_weights", "register_backend"]
