"""Sections that show a part of the suite much as the results file has it: the contamination check,
the baseline comparison, and metric details no dedicated section draws (custom metrics).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import SuiteData, _d, _s


def contamination(data: SuiteData) -> Mapping[str, Any] | None:
    c = data.raw.get("contamination")
    return c if isinstance(c, Mapping) else None


def baseline(data: SuiteData) -> Mapping[str, Any] | None:
    b = data.raw.get("baseline")
    return b if isinstance(b, Mapping) else None


def other_details(data: SuiteData) -> list[tuple[str, str, Any]]:
    """Detail entries the sections above do not draw (custom metrics), shown generically."""
    names, details = data.models, data.details
    out = []
    drawn = {"labels", "columns", "confusion_matrix", "per_class", "unparseable", "n"}
    for m in names:
        for metric, entry in _d(details.get(m)).items():
            e = _d(entry)
            if "error_kinds" in e:
                continue  # the errors-by-kind section shows all of it
            rest = {k: v for k, v in e.items() if k not in drawn} if e else entry
            if rest:
                out.append((m, _s(metric), rest))
    return out


__all__ = ["baseline", "contamination", "other_details"]
