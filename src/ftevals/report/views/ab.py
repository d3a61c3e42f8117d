"""Online A/B outcomes of two of the suite's models (ftevals ab), beside the offline verdict."""

from __future__ import annotations

from ...results import ABResult
from .base import SuiteData


def ab(data: SuiteData) -> ABResult | None:
    """The suite's A/B record as it is: the template draws its outcomes table and agreement line."""
    return data.suite.ab
