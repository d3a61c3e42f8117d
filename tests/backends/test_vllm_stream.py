"""`stream_outputs` against a stand-in for vLLM's `LLM` (the real engine runs it in
tests/integration/test_vllm_lora.py and tests/reliability/test_engine_death.py): outputs in request
order whatever order they finish in, each handed over once as it finishes, and the unfinished
requests aborted when anything goes wrong."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from ftevals.backends.vllm_stream import stream_outputs


@dataclass
class Completion:
    text: str
    token_ids: tuple[int, ...] = (1, 2)
    finish_reason: str = "stop"


@dataclass
class Out:
    request_id: str
    finished: bool
    text: str

    @property
    def outputs(self) -> list[Completion]:
        return [Completion(self.text)]


class FakeEngine:
    """Finishes one queued request per step, last queued first, with an unfinished partial output
    for the next one in between (vLLM's steps return both)."""

    def __init__(self, llm: FakeLLM, fail_at_step: int | None = None) -> None:
        self.llm, self.fail_at_step = llm, fail_at_step
        self.steps = 0
        self.aborted: list[tuple[list[str], bool]] = []

    def has_unfinished_requests(self) -> bool:
        return bool(self.llm.queue)

    def step(self) -> list[Out]:
        self.steps += 1
        if self.fail_at_step == self.steps:
            raise KeyboardInterrupt
        external, prompt = self.llm.queue.pop()
        partial = [Out(self.llm.queue[-1][0], False, "")] if self.llm.queue else []
        # A prompt as text, or vLLM's TokensPrompt (a dict of token ids) as the backend sends it.
        text = prompt.upper() if isinstance(prompt, str) else "T" + "".join(map(str, prompt["prompt_token_ids"]))
        return partial + [Out(external, True, text)]

    def abort_request(self, ids: list[str], internal: bool = False) -> None:
        self.aborted.append((list(ids), internal))


class FakeLLM:
    def __init__(self, fail_at_step: int | None = None) -> None:
        self.queue: list[tuple[str, str]] = []
        self.counter = 10
        self.llm_engine = FakeEngine(self, fail_at_step)

    def enqueue(self, prompts: list[str], params: list[Any], lora_request: Any = None, use_tqdm: bool = True) -> list[str]:
        ids = []
        for p in prompts:
            external = str(self.counter)
            self.counter += 1
            self.queue.append((external, p))
            ids.append(f"{external}-abcd1234")  # vLLM 0.32 returns its internal ids
        return ids


def test_outputs_come_back_in_request_order_and_each_is_handed_over_once_as_it_finishes() -> None:
    llm = FakeLLM()
    handed: list[tuple[int, str]] = []
    outs = stream_outputs(llm, ["a", "b", "c"], [None] * 3, None, lambda i, out: handed.append((i, out.text)))
    assert [o.text for o in outs] == ["A", "B", "C"]
    assert handed == [(2, "C"), (1, "B"), (0, "A")]  # in the order they finished
    assert llm.llm_engine.aborted == []


def test_an_interrupted_stream_aborts_what_did_not_finish_and_keeps_what_did() -> None:
    llm = FakeLLM(fail_at_step=2)
    handed: list[int] = []
    with pytest.raises(KeyboardInterrupt):
        stream_outputs(llm, ["a", "b", "c"], [None] * 3, None, lambda i, out: handed.append(i))
    assert handed == [2]
    # The two unfinished requests, by the internal ids vLLM returned for them.
    assert llm.llm_engine.aborted == [(["10-abcd1234", "11-abcd1234"], True)]


def test_a_callback_that_fails_stops_the_stream_and_aborts_the_rest() -> None:
    llm = FakeLLM()

    def fail(i: int, out: Out) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        stream_outputs(llm, ["a", "b"], [None] * 2, None, fail)
    # The request whose output reached the callback counts as finished; the other is aborted.
    assert llm.llm_engine.aborted == [(["10-abcd1234"], True)]


def test_an_engine_that_stops_with_requests_unanswered_is_an_error() -> None:
    llm = FakeLLM()
    llm.llm_engine.has_unfinished_requests = lambda: False  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="the engine stopped with 2 of 2 requests unanswered"):
        stream_outputs(llm, ["a", "b"], [None] * 2, None, lambda i, out: None)


def test_a_progress_bar_factory_is_told_of_each_finished_request_and_closed() -> None:
    updates: list[int] = []
    closed: list[bool] = []

    class Bar:
        def __init__(self, total: int, desc: str) -> None:
            assert total == 2

        def update(self, n: int) -> None:
            updates.append(n)

        def close(self) -> None:
            closed.append(True)

    stream_outputs(FakeLLM(), ["a", "b"], [None] * 2, None, lambda i, out: None, Bar)
    assert updates == [1, 1] and closed == [True]


@pytest.mark.vllm  # imports vLLM's request types; starts no engine
def test_a_commit_that_fails_inside_the_engine_call_keeps_its_own_error(tmp_path) -> None:
    """The vLLM backend turns what fails in an engine call into a BackendError; a CacheError raised
    by the caller's commit (a full disk...) must reach the user as itself."""
    from ftevals.backends.base import GenerationRequest
    from ftevals.backends.vllm import VLLMSettings, _Engine
    from ftevals.data import Message
    from ftevals.errors import CacheError
    from ftevals.specs import ModelSpec, SamplingSpec

    engine = _Engine(tmp_path, [], VLLMSettings())
    engine.llm = FakeLLM()
    requests = [GenerationRequest(f"k{i}", ModelSpec("base"), (Message("user", p),), p, SamplingSpec(), f"e{i}")
                for i, p in enumerate(["a", "b"])]

    def commit(index, generation):
        raise CacheError("cannot write to the generation cache: disk full")

    with pytest.raises(CacheError, match="disk full"):
        engine.generate(requests, [[1], [2]], lora=False, on_result=commit)
    handed = []
    engine.llm = FakeLLM()
    outs = engine.generate(requests, [[1], [2]], lora=False, on_result=lambda i, g: handed.append((i, g.text)))
    assert [g.text for g in outs] == ["T1", "T2"] and handed == [(1, "T2"), (0, "T1")]
    assert outs[0].tokens_in == 1 and outs[0].tokens_out == 2
