"""Sections that show a part of the suite much as the results file has it: the contamination check,
the baseline comparison, and metric details no dedicated section draws (custom metrics).
"""

from __future__ import annotations

from typing import Any

from ...results import BaselineRecord, Contamination
from .base import SuiteData, _d


def contamination(data: SuiteData) -> Contamination | None:
    return data.suite.contamination


def baseline(data: SuiteData) -> BaselineRecord | None:
    return data.suite.baseline


def other_details(data: SuiteData) -> list[tuple[str, str, Any]]:
    """Detail entries the sections above do not draw (custom metrics), shown generically."""
    details = data.suite.details
    out = []
    drawn = {"labels", "columns", "confusion_matrix", "per_class", "unparseable", "n"}
    for m in data.models:
        # A metric's breakdown is free-form JSON (usually an object; anything else is shown as it is).
        for metric, entry in _d(details.get(m)).items():
            e = _d(entry)
            if "error_kinds" in e:
                continue  # the errors-by-kind section shows all of it
            rest = {k: v for k, v in e.items() if k not in drawn} if e else entry
            if rest:
                out.append((m, metric, rest))
    return out


__all__ = ["baseline", "contamination", "other_details"]
