"""How ftevals prints a number: one place for values, deltas, confidence intervals and p-values.

Gate messages (stored in the results file), the terminal summary, the CLI and the HTML report all call
these, so a delta, a CI and a p-value read the same everywhere: `+0.390, 95% CI +0.320..+0.460,
p<0.001`. Every function accepts anything (results files are data): a missing, non-numeric or
non-finite value prints as `missing` instead of raising.
"""

from __future__ import annotations

import math
from typing import Any

#: What a value that is absent or not finite prints as (the report passes its dash).
MISSING = "n/a"

#: Below this a p-value prints as `<0.001`: more digits would claim a precision the tests do not have.
P_FLOOR = 0.001

#: Smaller magnitudes are float summation noise (a delta of two equal means can come out -1.4e-17):
#: they print as zero rather than as a number that looks like a finding.
NOISE = 1e-12


def is_number(x: Any) -> bool:
    """A finite int or float (bool is an int subclass, but True is not a score)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def num(x: Any, digits: int = 3, *, missing: str = MISSING) -> str:
    """A value: integers as counts (1,234), floats with `digits` decimals, or 3 significant digits
    when the decimals would hide it (0.0004 -> 0.0004, not 0.000)."""
    if not is_number(x):
        return missing if x is None or isinstance(x, (int, float)) else str(x)
    if isinstance(x, int):
        return f"{x:,}"
    if abs(x) < NOISE:
        x = 0.0
    if x == 0.0 or 10.0 ** -digits <= abs(x) < 1e6:
        return f"{x:,.{digits}f}"
    return f"{x:.3g}"


def signed(x: Any, digits: int = 3, *, missing: str = MISSING) -> str:
    """A delta, its sign always shown: +0.390, -0.025, +0.000."""
    text = num(x, digits, missing=missing)
    return text if not is_number(x) or text.startswith("-") else "+" + text


def ci(low: Any, high: Any, digits: int = 3, *, sign: bool = False, missing: str = "") -> str:
    """A confidence interval as `low..high`; signed for intervals of a delta."""
    if not (is_number(low) and is_number(high)):
        return missing
    show = signed if sign else num
    return f"{show(low, digits)}..{show(high, digits)}"


def level(alpha: float) -> str:
    """The CI's name for a significance level: 0.05 -> `95% CI`."""
    return f"{round((1.0 - alpha) * 100.0, 6):g}% CI"


def pval(p: Any, *, missing: str = MISSING) -> str:
    """A p-value alone (a table cell): `<0.001` or `0.012`."""
    if not is_number(p):
        return missing
    return f"<{P_FLOOR}" if p < P_FLOOR else f"{p:.3f}"


def p_clause(p: Any, *, missing: str = MISSING) -> str:
    """A p-value in a sentence: `p<0.001` or `p=0.012`."""
    if not is_number(p):
        return f"p={missing}"
    text = pval(p)
    return "p" + text if text.startswith("<") else "p=" + text


__all__ = ["MISSING", "P_FLOOR", "ci", "is_number", "level", "num", "p_clause", "pval", "signed"]
