"""Number formatting for the report, used as jinja2 filters.

How a value, a delta, a CI and a p-value look is decided once, in ftevals.numbers (gate messages, the
terminal summary and the CLI use it too), so the report reads like the gate messages
(`+0.390, 95% CI +0.320..+0.460`). This module only adapts it to the page: a missing value is a dash,
and an attribute a template reads off an absent optional part (jinja2's Undefined) counts as missing.
Percentages, seconds, raw values and trimmed text are the report's own.
"""

from __future__ import annotations

import math
from typing import Any

from jinja2 import Undefined

from .. import numbers
from ..numbers import is_number

DASH = "—"


def _value(x: Any) -> Any:
    # `run.backend.name` with no backend, say: the template's chained lookup gives Undefined.
    return None if isinstance(x, Undefined) else x


def num(x: Any, digits: int = 3) -> str:
    """A plain value: integers with thousands separators, floats with `digits` decimals."""
    x = _value(x)
    if isinstance(x, bool):
        return str(x)  # not a score (numbers.num would hide it), but the data says it: show it as it is
    return numbers.num(x, digits, missing=DASH)


def signed(x: Any, digits: int = 3) -> str:
    """A delta with its sign always shown: +0.390, -0.025."""
    x = _value(x)
    return num(x, digits) if isinstance(x, bool) else numbers.signed(x, digits, missing=DASH)


def ci(low: Any, high: Any, digits: int = 3, *, sign: bool = False) -> str:
    """A confidence interval as `low..high`; empty when either end is missing (the caller brackets it)."""
    return numbers.ci(_value(low), _value(high), digits, sign=sign, missing="")


def pval(p: Any) -> str:
    return numbers.pval(_value(p), missing=DASH)


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
    x = _value(x)
    # A non-finite float is how the records hold a number the file stores as null.
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return DASH
    if isinstance(x, float):
        return f"{x:.6g}"
    return str(x)


def trim(x: Any, limit: int = 120) -> str:
    """At most `limit` characters of a text, on one line, for lists that point at the full text."""
    x = _value(x)
    text = " ".join(str("" if x is None else x).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


FILTERS = {"num": num, "signed": signed, "ci": ci, "pval": pval, "pct": pct, "secs": secs, "trim": trim, "raw": raw}

__all__ = ["DASH", "FILTERS", "ci", "is_number", "num", "pct", "pval", "raw", "secs", "signed", "trim"]
