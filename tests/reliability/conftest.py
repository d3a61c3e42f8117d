"""Fixtures of the reliability tests: the fake server that answers with labels, the vLLM tripwire."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.fakeopenai import FakeOpenAI, label_answer
from support.miniproject import preload


@pytest.fixture(scope="session", autouse=True)
def _import_before_pytester() -> None:
    """In-process pytester runs restore sys.modules afterwards: load what the plugin imports lazily now."""
    preload()


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    """A local OpenAI-compatible server whose answers are BANKING77 labels, so that runs score them."""
    with FakeOpenAI(answer=label_answer) as fake:
        yield fake


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch, default_model) -> list[str]:
    """A vLLM engine start fails the test (the run should have been refused first); returns the starts."""
    import ftevals.backends.vllm

    # pytester points HOME at its own folder: keep using the converted embedded model.
    monkeypatch.setenv("FTEVALS_CACHE_DIR", str(default_model.path.parents[1]))
    started: list[str] = []

    def tripwire(self: object) -> None:
        started.append(str(getattr(self, "base_path", "?")))
        raise AssertionError("a vLLM engine was started for a run that should have been refused")

    monkeypatch.setattr(ftevals.backends.vllm._Engine, "start", tripwire)
    return started
