"""Metrics: small pure functions with their metadata, looked up by name.

The built-in metrics live in `classification`, `text` and `format`; they are registered the first
time the registry is consulted (`get_metric`, `list_metrics`), so importing this package stays cheap
and never pulls in heavy libraries. See docs/metrics.md for every metric's range and parameters.
"""

from __future__ import annotations

from .base import Metric, MetricKind, Scored, get_metric, list_metrics, register_metric

__all__ = ["Metric", "MetricKind", "Scored", "get_metric", "list_metrics", "register_metric"]
