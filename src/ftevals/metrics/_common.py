"""Small helpers shared by the built-in metric modules (not part of the public API)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import MetricError

if TYPE_CHECKING:
    from ..data import Example

#: Example ids listed per error kind in `details`; a report needs a sample, not the full list.
MAX_IDS_PER_KIND = 50


def check_aligned(predictions: Sequence[Any], examples: Sequence[Example], metric: str) -> None:
    """Refuse mismatched inputs: every metric scores prediction i against example i."""
    if len(predictions) != len(examples):
        raise MetricError(
            f"metric {metric!r} got {len(predictions)} predictions for {len(examples)} examples; "
            "expected one prediction per example, in the same order"
        )


def as_text(prediction: Any) -> str:
    """A prediction as text: a missing generation (None) scores like an empty answer."""
    return "" if prediction is None else str(prediction)


def ids_by_kind(kinds: Sequence[str | None], examples: Sequence[Example]) -> dict[str, list[str]]:
    """Up to MAX_IDS_PER_KIND example ids for each non-None kind, in example order."""
    out: dict[str, list[str]] = {}
    for kind, ex in zip(kinds, examples):
        if kind is not None:
            ids = out.setdefault(kind, [])
            if len(ids) < MAX_IDS_PER_KIND:
                ids.append(ex.id)
    return out
