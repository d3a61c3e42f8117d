"""Metrics: small pure functions with their metadata, looked up by name.

`base` holds the contract (`Metric`, `Scored`), `registry` the table of metrics by name; neither
imports a metric. The built-in metrics live in `classification`, `text` and `format`, gathered by
`builtin`, which this package has the registry import the first time it is consulted
(`get_metric`, `list_metrics`), so importing this package stays cheap and never pulls in heavy
libraries. See docs/metrics.md for every metric's range and parameters.
"""

from __future__ import annotations

from .base import Metric, MetricKind, Scored
from .registry import get_metric, list_metrics, register_lazily, register_metric

register_lazily(f"{__name__}.builtin")

__all__ = ["Metric", "MetricKind", "Scored", "get_metric", "list_metrics", "register_metric"]
