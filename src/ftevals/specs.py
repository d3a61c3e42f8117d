"""Frozen records that name what runs: models (a base, optionally an adapter), prompting and sampling.

Adapters are data, not subclasses: a `ModelSpec` names a base model and at most one adapter folder,
and every backend knows how to serve that pair. These records are hashed into cache keys and copied
into results files, so they hold only plain, JSON-friendly values.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import ConfigError

#: The alias users write for the embedded default model (SmolLM2-135M-Instruct).
DEFAULT_BASE = "default"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


def check_name(kind: str, name: str) -> str:
    """Reject names that could escape an output folder or break a report (`../x`, `a/b`, spaces)."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or name in {".", ".."}:
        raise ConfigError(
            f"{kind} name {name!r} is not allowed: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class ModelSpec:
    """One contender in a comparison: a base model, optionally a LoRA adapter, and how it is prompted.

    `base` is a model folder or the alias "default" (the embedded model). `adapter` is a PEFT adapter
    folder or None. `fewshot` > 0 makes this the prompting baseline: the base model (or adapter) given
    that many solved examples from the suite's training pool before each question.

    `backend` names the backend that serves this model when it is not the run's own (a managed
    fine-tune on an OpenAI-compatible server beside local adapters in vLLM): `openai:MODEL_ID`.
    For a server backend, `base` is the server's model id.
    """

    name: str
    base: str = DEFAULT_BASE
    adapter: str | None = None
    fewshot: int = 0
    backend: str | None = None

    def __post_init__(self) -> None:
        check_name("model", self.name)
        if self.fewshot < 0:
            raise ConfigError(f"model {self.name!r}: fewshot must be >= 0, got {self.fewshot}")

    @property
    def is_adapter(self) -> bool:
        return self.adapter is not None

    @property
    def served_elsewhere(self) -> bool:
        """Named with a server backend (`openai:MODEL_ID`): a managed model whose weights and base
        are not ours to see (no local folder to anchor, fingerprint or match against a base)."""
        return self.backend is not None and not _serves_local_folders(self.backend)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["backend"] is None:
            del d["backend"]  # keeps the specs of single-backend runs (and their records) as they were
        return d


def parse_model_spec(name: str, text: str) -> ModelSpec:
    """Parse `base`, `base+path/to/adapter`, `PATH`, `PATH+ADAPTER`, each optionally `@fewshot=K`,
    and each optionally led by `BACKEND:` to serve it with another backend than the run's.

    `base` (or "default") means the embedded default model. Examples:
    `base`, `base+adapters/banking77`, `/models/llama+/adapters/v2`, `base@fewshot=8`,
    `openai:ft:gpt-4o-mini-2024-07-18:acme::abc123` (a managed fine-tune, by its server model id).
    """
    raw = text.strip()
    backend, server_id = _backend_prefix(raw)
    if backend is not None and not _serves_local_folders(backend):
        # A server's model id is opaque (`ft:gpt-4o-mini:acme::abc`, `org/model`): no `+` or `@` parsing.
        if not server_id:
            raise ConfigError(f"model {name!r}: {text!r} names no model after '{backend}:'; "
                              f"write e.g. '{backend}:ft:gpt-4o-mini-2024-07-18:acme::abc123'")
        return ModelSpec(name=name, base=server_id, backend=backend)
    if backend is not None:
        raw = server_id
    fewshot = 0
    head, at, opts = raw.rpartition("@")
    # `@KEY=VALUE` is an option; a bare `@REVISION` belongs to a Hugging Face id (`org/name@v1`).
    if at and "=" in opts:
        raw = head
        key, _, value = opts.partition("=")
        if key.strip() != "fewshot" or not value.strip().isdigit():
            raise ConfigError(
                f"model {name!r}: bad option {('@' + opts)!r} in {text!r}; the only option is '@fewshot=K' "
                "with K a whole number, e.g. 'base@fewshot=8'"
            )
        fewshot = int(value)
    base, plus, adapter = raw.partition("+")
    base = base.strip()
    if not base:
        raise ConfigError(f"model {name!r}: {text!r} names no base model; write e.g. 'base' or 'base+adapters/x'")
    if base == "base":
        base = DEFAULT_BASE
    adapter_path = adapter.strip() or None
    if plus and adapter_path is None:
        raise ConfigError(f"model {name!r}: {text!r} ends with '+' but names no adapter folder after it")
    return ModelSpec(name=name, base=base, adapter=adapter_path, fewshot=fewshot, backend=backend)


def _backend_prefix(text: str) -> tuple[str | None, str]:
    """(`openai`, `ft:gpt-4o`) for `openai:ft:gpt-4o`; (None, text) when the text names no backend.

    Only a registered backend name counts as a prefix, so a folder such as `runs:v2` stays a folder.
    """
    from .backends.registry import backend_names  # here, not at import: backends import this module

    head, colon, rest = text.partition(":")
    if colon and head.strip() in backend_names():
        return head.strip(), rest.strip()
    return None, text


def _serves_local_folders(backend: str) -> bool:
    from .backends.registry import loads_local_weights

    return loads_local_weights(backend)


@dataclass(frozen=True)
class SamplingSpec:
    """How tokens are drawn. Greedy (temperature 0) by default, so results are reproducible.

    `seed` matters only when temperature > 0; it is still recorded and keyed so that a seeded
    sampled run can be reproduced exactly.
    """

    max_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ConfigError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        object.__setattr__(self, "stop", tuple(self.stop))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d


__all__ = ["DEFAULT_BASE", "ModelSpec", "SamplingSpec", "check_name", "parse_model_spec"]
