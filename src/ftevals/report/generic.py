"""Generic layout for data the report has no dedicated section for (custom metric details, parts of
human ratings whose shape may still change): recognise records and lay them out as a table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_ROWS = 100
MAX_COLUMNS = 12


@dataclass(frozen=True)
class Table:
    columns: list[str]
    rows: list[tuple[str, list[Any]]]  # (row label, one cell per column)
    more: int  # rows left out


def _scalar(x: Any) -> bool:
    return x is None or isinstance(x, (str, int, float, bool))


def _record(x: Any) -> bool:
    # (Lists may arrive as tuples: the typed records keep their arrays immutable.) A record: a non-empty mapping whose values are scalars or short lists of scalars.
    return (
        isinstance(x, Mapping)
        and bool(x)
        and all(_scalar(v) or (isinstance(v, (list, tuple)) and len(v) <= 10 and all(map(_scalar, v))) for v in x.values())
    )


def tabular(x: Any) -> Table | None:
    """A table for {name: record} or [record, ...] with at most MAX_COLUMNS distinct keys, else None."""
    if isinstance(x, Mapping) and len(x) >= 2 and all(_record(v) for v in x.values()):
        items = [(str(k), v) for k, v in x.items()]
    elif isinstance(x, (list, tuple)) and len(x) >= 1 and all(_record(v) for v in x):
        items = [(str(i + 1), v) for i, v in enumerate(x)]
    else:
        return None
    columns: list[str] = []
    for _, record in items:
        columns += [str(k) for k in record if str(k) not in columns]
    if len(columns) > MAX_COLUMNS:
        return None
    rows = [(label, [record.get(c) for c in columns]) for label, record in items[:MAX_ROWS]]
    return Table(columns, rows, max(0, len(items) - MAX_ROWS))


__all__ = ["Table", "tabular"]
