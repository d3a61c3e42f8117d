"""Moved to the views/ package (one module per report section); kept so that existing imports work."""

from __future__ import annotations

from .views import Report, SuiteView, build_report, normalize_prices

__all__ = ["Report", "SuiteView", "build_report", "normalize_prices"]
