"""The one small protocol every generation backend implements, and the records it exchanges.

A backend turns `GenerationRequest`s into `Generation`s. Models are data: a request names the
`ModelSpec` (base + optional adapter) it is for, and the backend decides how to serve it (vLLM:
one engine per base, each adapter a LoRARequest; HF: peft; a server: the model name it exposes).

Backends also say how a prompt is *rendered* (`render`), because the rendered prompt is what the
generation cache keys on: two backends that render differently must not share cache entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..data import Message
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


@runtime_checkable
class Backend(Protocol):
    """Turns requests into generations. Implementations: vllm, hf, openai, replay."""

    #: Short name recorded in results and in cache keys ("vllm", "hf", "openai", "replay").
    name: str

    def identity(self) -> dict[str, Any]:
        """Everything about this backend that can change outputs (dtype, strategy, server URL...).

        It enters every cache key; things that cannot change outputs (timeouts, concurrency) stay out.
        """
        ...

    def render(self, model: ModelSpec, messages: Sequence[Message]) -> str:
        """The exact prompt this backend will feed the model (chat template applied)."""
        ...

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Generate for all requests (any mix of models), in order. May batch internally."""
        ...

    def close(self) -> None:
        """Release engines, processes, connections. Idempotent."""
        ...


__all__ = ["Backend", "Generation", "GenerationRequest"]
