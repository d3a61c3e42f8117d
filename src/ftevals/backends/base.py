"""The one small protocol every generation backend implements, and the records it exchanges.

A backend turns `GenerationRequest`s into `Generation`s. Models are data: a request names the
`ModelSpec` (base + optional adapter) it is for, and the backend decides how to serve it (vLLM:
one engine per base, each adapter a LoRARequest; HF: peft; a server: the model name it exposes).

Backends also say how a prompt is *rendered* (`render`), because the rendered prompt is what the
generation cache keys on: two backends that render differently must not share cache entries. A
prompt is rendered in a prompt format (`prompt_format`): "chat" (the model's chat template) or
"completion" (raw text for a model without one, ftevals/prompts.py).

`Backend` lists everything generic code (generate.py, pipeline.py, `make_backend`) touches on a
backend. Most members have a default that almost every backend wants; `BackendDefaults` holds them,
so a new backend subclasses it and writes only `name`, `identity`, `render` and `generate`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from ..data import Message
from ..errors import ConfigError
from ..specs import ModelSpec, SamplingSpec


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt for one model. `prompt` is the backend's rendered form of `messages`."""

    key: str  # content-addressed cache key (see cache.py); also unique within a batch
    model: ModelSpec
    messages: tuple[Message, ...]
    prompt: str
    sampling: SamplingSpec
    #: Example id(s) this request serves; informational (one prompt can serve several suites).
    example_id: str = ""
    #: How `prompt` was rendered: "chat" (chat template) or "completion" (raw text).
    prompt_format: str = "chat"


@dataclass(frozen=True)
class Generation:
    text: str
    tokens_in: int
    tokens_out: int
    finish_reason: str = "stop"
    #: Seconds from sending to the last token, where the backend can measure a single request.
    latency_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "finish_reason": self.finish_reason,
            "latency_s": self.latency_s,
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Generation:
        return Generation(
            text=str(d["text"]),
            tokens_in=int(d.get("tokens_in", 0)),
            tokens_out=int(d.get("tokens_out", 0)),
            finish_reason=str(d.get("finish_reason", "stop")),
            latency_s=d.get("latency_s"),
        )


class StrategyNote(Protocol):
    """A backend's record of how it chose to serve one model, written to `run.timings.strategy_choices`."""

    def to_dict(self) -> dict[str, Any]: ...


@runtime_checkable
class Backend(Protocol):
    """Turns requests into generations. Implementations: vllm, hf, openai, replay.

    Built by `make_backend` as `cls(models, settings)`: `models` maps each contender's name to its
    `ResolvedModel`, `settings` is an instance of `settings_type` built from the backend options
    (None when `settings_type` is None and no options were given).
    """

    #: Short name recorded in results and in cache keys ("vllm", "hf", "openai", "replay").
    name: str

    #: The frozen dataclass of this backend's settings (`--ftevals-backend-option KEY=VALUE`);
    #: None: the backend takes no settings. Default None.
    settings_type: ClassVar[type[Any] | None]

    #: True when answers are looked up by (model, example id) rather than computed from the prompt
    #: (replay): the cache then keys each model and example apart even when prompts are equal.
    #: Default False.
    answers_by_example: ClassVar[bool]

    #: Seconds spent so far starting engines, generating, and merging adapters; recorded in the
    #: results' `run.timings`. Default 0.0 (a backend that does not measure them).
    engine_start_seconds: float
    generate_seconds: float
    merge_seconds: float

    #: Per-model serving decisions (vLLM's "auto" strategy), recorded in
    #: `run.timings.strategy_choices`. Default empty.
    choices: Mapping[str, StrategyNote]

    #: Set by generate.py around its calls: the backend calls it with a count as requests of the
    #: current `generate` call finish, so the progress display moves inside long engine calls.
    #: Any thread may call it. Default None (nobody listens; a backend need not report).
    progress_hook: Callable[[int], None] | None

    #: True when the backend calls `result_hook` with every request it finishes, as it finishes:
    #: generate.py then commits finished work during long calls and sends bigger chunks. Default False.
    streams_results: ClassVar[bool]

    #: Set by generate.py around each `generate` call of a backend that `streams_results`: called
    #: with (index in that call's `requests`, generation) as each request finishes, from the
    #: thread that called `generate`. Default None.
    result_hook: Callable[[int, Generation], None] | None

    def identity(self) -> dict[str, Any]:
        """Everything about this backend that can change outputs (dtype, strategy, server URL...).

        It enters every cache key; things that cannot change outputs (timeouts, concurrency) stay out.
        """
        ...

    def prompt_format(self, model: ModelSpec, requested: str) -> str:
        """What a suite's `prompt_format` ("auto", "chat" or "completion") means for this model here:
        "chat" or "completion". Raises ModelSpecError / ConfigError for a format it cannot serve.
        Default: "chat" for "auto" and "chat"; "completion" is refused (no raw-prompt path)."""
        ...

    def render(self, model: ModelSpec, messages: Sequence[Message], prompt_format: str = "chat") -> str:
        """The exact prompt this backend will feed the model, in a format `prompt_format` returned.

        Called with `prompt_format` only for "completion": a backend that never answers "completion"
        may keep the two-argument `render(model, messages)`."""
        ...

    def prepare(self, requests: Sequence[GenerationRequest]) -> None:
        """Told the whole uncached workload once, before the first `generate`. Default: ignore it."""
        ...

    def model_order(self, names: Sequence[str]) -> list[str]:
        """The order to generate models in (e.g. to avoid engine restarts). Default: as given."""
        ...

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Generate for all requests (any mix of models), in order. May batch internally."""
        ...

    def serving(self, model: str) -> Backend:
        """The backend that serves model `model`: itself, except in a run that mixes backends
        (routed.py), where rendering and cache keys are the serving backend's. Default: self."""
        ...

    def first_token_logprobs(self, requests: Sequence[GenerationRequest]) -> list[dict[int, float]] | None:
        """Greedy first-token log-probabilities (top token id -> logprob) per request, for the engine
        integrity probe (integrity.py). Default None: the backend cannot report them."""
        ...

    def verify_schedule(self, samples: Sequence[tuple[GenerationRequest, str]]) -> str:
        """After generation, for the engine-integrity record: check that how this backend batched and
        served models left base-model outputs untouched, given a few base requests and the outputs
        the run got for them; return how requests were scheduled and what was checked, in words
        (what was not checked must say so). Raise `ftevals.IntegrityError` when the check fails.
        Default: no check, and the words say so."""
        ...

    def close(self) -> None:
        """Release engines, processes, connections. Idempotent. Default: nothing to release."""
        ...


class BackendDefaults:
    """The protocol's defaults; subclass it and write `name`, `identity`, `render`, `generate`."""

    settings_type: ClassVar[type[Any] | None] = None
    answers_by_example: ClassVar[bool] = False
    engine_start_seconds: float = 0.0
    generate_seconds: float = 0.0
    merge_seconds: float = 0.0
    # Read-only, so that no backend can fill a dict shared by every instance.
    choices: Mapping[str, StrategyNote] = MappingProxyType({})
    progress_hook: Callable[[int], None] | None = None
    streams_results: ClassVar[bool] = False
    result_hook: Callable[[int, Generation], None] | None = None

    def _report_done(self, n: int) -> None:
        """Tell the progress display that n more requests finished (no-op when nobody listens)."""
        hook = self.progress_hook
        if hook is not None and n:
            hook(n)

    def prompt_format(self, model: ModelSpec, requested: str) -> str:
        if requested == "completion":
            raise ConfigError(f"the {getattr(self, 'name', '?')} backend cannot send raw (completion) prompts; "
                              "use prompt_format='auto' or 'chat', or a backend that renders prompts itself (vllm, hf)")
        return "chat"

    def prepare(self, requests: Sequence[GenerationRequest]) -> None:
        return None

    def model_order(self, names: Sequence[str]) -> list[str]:
        return list(names)

    def serving(self, model: str) -> Backend:
        return self  # type: ignore[return-value]

    def first_token_logprobs(self, requests: Sequence[GenerationRequest]) -> list[dict[int, float]] | None:
        return None

    def verify_schedule(self, samples: Sequence[tuple[GenerationRequest, str]]) -> str:
        # Recorded in the results as the batch-invariance half of the integrity check: a backend
        # that re-runs nothing must not read as if it had checked something.
        return "one model per engine call; base outputs not checked after serving adapters (this backend cannot re-check them)"

    def close(self) -> None:
        return None


def protocol_members() -> tuple[str, ...]:
    """The names of every `Backend` member: what a backend class must have (tests check the built-ins)."""
    skip = {"__init__", "__subclasshook__", "__non_callable_proto_members__"}
    names = set(Backend.__annotations__)
    names |= {n for n, v in vars(Backend).items() if callable(v) and not n.startswith("_")}
    return tuple(sorted(names - skip))


__all__ = ["Backend", "BackendDefaults", "Generation", "GenerationRequest", "StrategyNote", "protocol_members"]
