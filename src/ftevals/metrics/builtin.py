"""Importing this module registers every built-in metric (docs/metrics.md lists them).

`ftevals.metrics` has the registry import it on the first lookup, so that importing the package
stays cheap; a new built-in module is added here and nowhere else.
"""

from __future__ import annotations

from . import classification, format, text

__all__ = ["classification", "format", "text"]
