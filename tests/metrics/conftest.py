"""Fixtures for the metric tests: examples built in memory, and the real datasets shipped in data/."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from ftevals.data import Example, Message, load_dataset

DATA = Path(__file__).resolve().parents[2] / "data"


def _make_examples(
    references: Sequence[str], metadata: Sequence[Mapping[str, Any]] | None = None, prefix: str = "ex"
) -> list[Example]:
    """Examples with the given references (and metadata), ids prefix-0, prefix-1, ..."""
    metadata = metadata or [{} for _ in references]
    return [
        Example(f"{prefix}-{i}", (Message("user", "input"),), ref, dict(meta))
        for i, (ref, meta) in enumerate(zip(references, metadata))
    ]


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A private copy of the metric table, so metrics registered by a test do not leak into other tests."""
    from ftevals.metrics import list_metrics
    from ftevals.metrics import registry as table

    list_metrics()  # load the built-ins into the real table first
    monkeypatch.setattr(table, "_REGISTRY", dict(table._REGISTRY))
    return table._REGISTRY


@pytest.fixture(scope="session")
def make_examples():
    """`make_examples(references, metadata=None, prefix="ex")` -> examples with ids prefix-0, prefix-1, ..."""
    return _make_examples


@pytest.fixture(scope="session")
def dialogsum_test() -> list[Example]:
    return list(load_dataset(DATA / "dialogsum" / "test.jsonl").examples)


@pytest.fixture(scope="session")
def dialogsum_bart_predictions() -> list[str]:
    """The dataset authors' BART-large outputs, one per test row (the file has no final newline)."""
    lines = (DATA / "dialogsum" / "bart_large_test_predictions.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 500
    return lines


@pytest.fixture(scope="session")
def restaurant8k_test() -> list[Example]:
    return list(load_dataset(DATA / "restaurant8k" / "test.jsonl").examples)


@pytest.fixture(scope="session")
def banking77_test() -> list[Example]:
    return list(load_dataset(DATA / "banking77" / "test.jsonl").examples)


@pytest.fixture(scope="session")
def gsm8k_test() -> list[Example]:
    return list(load_dataset(DATA / "gsm8k" / "test.jsonl").examples)
