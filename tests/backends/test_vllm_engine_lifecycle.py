"""The vLLM engine after a death, and each request's latency from vLLM's own timings (no engine started).

One model's failure costs only that model: an engine that died after answering is started afresh
for the next model of its base; one that died (or failed to start) before answering anything cannot
serve its base model at all, so the next model fails at once with the same cause instead of paying
another start-up to die the same way.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from ftevals.backends.vllm_engine import VLLMSettings, _Engine, request_latency
from ftevals.errors import BackendError


class _DeadLLM:
    def __init__(self) -> None:
        self.llm_engine = SimpleNamespace(engine_core=SimpleNamespace(shutdown=lambda **_: None))


def engine() -> _Engine:
    e = _Engine(Path("/models/base"), [], VLLMSettings())
    e.llm = _DeadLLM()
    return e


def test_an_engine_that_answered_before_it_died_is_started_afresh() -> None:
    e = engine()
    e.calls_done = 3
    e._forget_dead_engine("the vLLM engine for /models/base died during generation: killed by SIGKILL")
    assert e.llm is None and e.broken is None  # the next model's start() builds a new engine


def test_an_engine_that_died_before_answering_is_not_started_again() -> None:
    e = engine()
    cause = "the vLLM engine for /models/base died during generation: ... head_dim=16"
    e._forget_dead_engine(cause)
    assert e.llm is None and e.broken == cause
    with pytest.raises(BackendError, match="not started again: the vLLM engine for /models/base died .* head_dim=16"):
        e.start()


def test_latency_is_the_engine_time_of_the_request() -> None:
    timed = SimpleNamespace(metrics=SimpleNamespace(scheduled_ts=100.0, last_token_ts=100.25))
    assert request_latency(timed) == 0.25
    assert request_latency(SimpleNamespace(metrics=None)) is None  # stats off: no made-up number
    assert request_latency(SimpleNamespace(metrics=SimpleNamespace(scheduled_ts=0.0, last_token_ts=5.0))) is None
