"""Two small charts drawn as inline SVG: values with 95% CI whiskers, and deltas against the reference.

No charting library: the report is one self-contained file that must open offline, and these two
shapes are all it needs. Both charts are horizontal (one row per model) so that model names, which can
be long, sit on the left instead of being rotated under a bar. Every piece of text goes through
`escape` and every number is formatted here, which is what makes the returned markup safe to inline.
Colours come from CSS classes (`.bar`, `.wh`, ...) styled by the report's stylesheet.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from .fmt import ci, is_number, num, signed


@dataclass(frozen=True)
class Bar:
    """One row of a chart: a model's value (or delta) and its CI; `tone` picks the CSS class."""

    label: str
    value: float | None
    low: float | None = None
    high: float | None = None
    tone: str = "m"


ROW_H = 20
LABEL_W = 120
PLOT_W = 200
VALUE_W = 150
TOP = 18
AXIS_H = 16
WIDTH = LABEL_W + PLOT_W + VALUE_W
LABEL_CHARS = 18


def _c(x: float) -> str:
    # Coordinates to one decimal: enough for a 200 px plot, and short in the file.
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _scale(lo: float, hi: float) -> Callable[[float], float]:
    span = hi - lo if hi > lo else 1.0

    def to_x(v: float) -> float:
        v = min(max(v, lo), hi)  # whiskers past the axis are clipped, not drawn over the labels
        return LABEL_W + (v - lo) / span * PLOT_W

    return to_x


def _label(text: str) -> str:
    short = text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"
    return f'<text class="lb" x="{LABEL_W - 6}" text-anchor="end">{escape(short)}<title>{escape(text)}</title></text>'


def _finite(bars: Sequence[Bar]) -> list[float]:
    return [v for b in bars for v in (b.value, b.low, b.high) if is_number(v)]


def _domain(bars: Sequence[Bar], value_range: Sequence[float] | None) -> tuple[float, float]:
    if value_range and len(value_range) == 2 and all(is_number(v) for v in value_range):
        lo, hi = float(value_range[0]), float(value_range[1])
        if hi > lo:
            return lo, hi
    values = _finite(bars) or [0.0, 1.0]
    lo, hi = min(0.0, *values), max(0.0, *values)
    return (lo, hi * 1.05 or 1.0) if hi > lo else (lo, lo + 1.0)


def _frame(title: str, n_rows: int, body: list[str]) -> Markup:
    height = TOP + n_rows * ROW_H + AXIS_H
    head = (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" role="img" aria-label="{escape(title)}">'
        f'<text class="tt" x="0" y="12">{escape(title)}</text>'
    )
    return Markup(head + "".join(body) + "</svg>")


def _axis(to_x: Callable[[float], float], ticks: Sequence[float], n_rows: int, fmt: Callable[[float], str]) -> list[str]:
    y0, y1 = TOP - 2, TOP + n_rows * ROW_H
    out = []
    for t in ticks:
        x = _c(to_x(t))
        out.append(f'<line class="gr" x1="{x}" x2="{x}" y1="{y0}" y2="{y1}"/>')
        out.append(f'<text class="ax" x="{x}" y="{y1 + 12}" text-anchor="middle">{escape(fmt(t))}</text>')
    return out


def _whisker(to_x: Callable[[float], float], bar: Bar, y: float) -> list[str]:
    if not (is_number(bar.low) and is_number(bar.high)):
        return []
    x1, x2 = _c(to_x(bar.low)), _c(to_x(bar.high))
    top, bottom, mid = _c(y - 5), _c(y + 5), _c(y)
    return [
        f'<line class="wh" x1="{x1}" x2="{x2}" y1="{mid}" y2="{mid}"/>'
        f'<line class="wh" x1="{x1}" x2="{x1}" y1="{top}" y2="{bottom}"/>'
        f'<line class="wh" x1="{x2}" x2="{x2}" y1="{top}" y2="{bottom}"/>'
    ]


def bar_chart(bars: Sequence[Bar], *, title: str, value_range: Sequence[float] | None = None) -> Markup:
    """Horizontal bars from the axis origin to each value, with the 95% CI as a whisker."""
    lo, hi = _domain(bars, value_range)
    to_x = _scale(lo, hi)
    origin = to_x(min(max(0.0, lo), hi))
    body = _axis(to_x, (lo, (lo + hi) / 2, hi), len(bars), lambda v: num(v, 2))
    for i, bar in enumerate(bars):
        y = TOP + i * ROW_H
        mid = y + ROW_H / 2
        body.append(f'<g transform="translate(0 {_c(mid + 4)})">{_label(bar.label)}</g>')
        if is_number(bar.value):
            x = to_x(bar.value)
            left, width = min(origin, x), abs(x - origin)
            body.append(
                f'<rect class="bar {escape(bar.tone)}" x="{_c(left)}" y="{_c(y + 4)}" '
                f'width="{_c(max(width, 1))}" height="{ROW_H - 8}"/>'
            )
        body.extend(_whisker(to_x, bar, mid))
        text = num(bar.value) + (f" [{ci(bar.low, bar.high)}]" if is_number(bar.low) else "")
        body.append(f'<text class="vl" x="{LABEL_W + PLOT_W + 6}" y="{_c(mid + 4)}">{escape(text)}</text>')
    return _frame(title, len(bars), body)


def delta_chart(bars: Sequence[Bar], *, title: str) -> Markup:
    """Each model's delta against the reference as a dot with its CI, around a zero line.

    The axis is symmetric around zero so that the size of a change reads at a glance; deltas are
    `model - reference` as in the results file, so for lower-is-better metrics left is better, and
    the dot's colour (the verdict, via `tone`) says which way is good.
    """
    extent = max((abs(v) for v in _finite(bars)), default=0.0) * 1.1 or 0.01
    to_x = _scale(-extent, extent)
    body = _axis(to_x, (-extent, 0.0, extent), len(bars), lambda v: signed(v, 2) if v else "0")
    for i, bar in enumerate(bars):
        y = TOP + i * ROW_H
        mid = y + ROW_H / 2
        body.append(f'<g transform="translate(0 {_c(mid + 4)})">{_label(bar.label)}</g>')
        body.extend(_whisker(to_x, bar, mid))
        if is_number(bar.value):
            body.append(f'<circle class="pt {escape(bar.tone)}" cx="{_c(to_x(bar.value))}" cy="{_c(mid)}" r="4"/>')
        text = signed(bar.value) + (f" [{ci(bar.low, bar.high, sign=True)}]" if is_number(bar.low) else "")
        body.append(f'<text class="vl" x="{LABEL_W + PLOT_W + 6}" y="{_c(mid + 4)}">{escape(text)}</text>')
    return _frame(title, len(bars), body)


__all__ = ["Bar", "bar_chart", "delta_chart"]
