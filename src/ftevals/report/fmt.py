"""Number formatting for the report, used as jinja2 filters.

One place decides how a value, a delta, a CI and a p-value look, so that the report reads like the gate
messages (`+0.390, 95% CI +0.320..+0.460`). Every function accepts anything: results files are data,
and a missing or non-numeric value renders as a dash instead of breaking the page.
"""

from __future__ import annotations

import math
from typing import Any

from jinja2 import Undefined

DASH = "—"


def _missing(x: Any) -> bool:
    # Templates read raw results mappings, where a missing key arrives as jinja2's Undefined.
    return x is None or isinstance(x, Undefined)


def is_number(x: Any) -> bool:
    # bool is an int subclass, but True is not a score.
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def num(x: Any, digits: int = 3) -> str:
    """A plain value: integers with thousands separators, floats with `digits` decimals."""
    if _missing(x):
        return DASH
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    if isinstance(x, int):
        return f"{x:,}"
    if not math.isfinite(x):
        return DASH
    return f"{x:,.{digits}f}"


def signed(x: Any, digits: int = 3) -> str:
    """A delta with its sign always shown: +0.390, -0.025."""
    if not is_number(x):
        return num(x, digits)
    return f"{x:+,.{digits}f}"


def ci(low: Any, high: Any, digits: int = 3, *, sign: bool = False) -> str:
    """A confidence interval as `low..high` (the notation of gate messages)."""
    if not (is_number(low) and is_number(high)):
        return ""
    show = signed if sign else num
    return f"{show(low, digits)}..{show(high, digits)}"


def pval(p: Any) -> str:
    if not is_number(p):
        return DASH
    if p < 0.001:
        return "<0.001"
    return f"{p:.3f}"


def pct(x: Any, digits: int = 0) -> str:
    if not is_number(x):
        return DASH
    return f"{100 * x:.{digits}f}%"


def secs(x: Any) -> str:
    if not is_number(x):
        return DASH
    if x < 10:
        return f"{x:.2f} s"
    return f"{x:,.1f} s"


def raw(x: Any) -> str:
    """A value as it is in the file (no thousands separators: seeds and ports are not quantities)."""
    if _missing(x):
        return DASH
    if isinstance(x, float):
        return f"{x:.6g}"
    return str(x)


def trim(x: Any, limit: int = 120) -> str:
    """At most `limit` characters of a text, on one line, for lists that point at the full text."""
    text = " ".join(str("" if _missing(x) else x).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


FILTERS = {"num": num, "signed": signed, "ci": ci, "pval": pval, "pct": pct, "secs": secs, "trim": trim, "raw": raw}

__all__ = ["DASH", "FILTERS", "ci", "is_number", "num", "pct", "pval", "raw", "secs", "signed", "trim"]
