"""The CSV reader behind `load_dataset`: a column mapping, quoted multi-line values, row-level problems.

Split from data.py, which it serves (imported there lazily: it uses data.py's records and checks).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from .data import (MAX_ROW_BYTES, Example, Message, _count, _templated, _too_big, content_id)
from .errors import ConfigError, DatasetError, Problem
from .prompts import PromptTemplate, csv_fields


#: What a CSV column mapping may name: prompt and reference are required, id and label optional.
CSV_FIELDS = ("prompt", "reference", "id", "label")


def _load_csv(
    p: Path,
    text: str,
    problems: list[Problem],
    columns: Mapping[str, str] | None,
    system_prompt: str | None,
    auto_lines: set[int],
    template: PromptTemplate | None = None,
) -> list[tuple[int, Example]]:
    """Rows of a CSV file through a column mapping ({field: column}, fields as in CSV_FIELDS).

    Without a mapping the columns are called prompt and reference; an "id" column is used when
    there is one. A "label" column becomes `metadata.label`, so classification CSVs get the same
    conflicting-label and label-set checks as JSONL.
    """
    unknown = sorted(set(columns or {}) - set(CSV_FIELDS))
    if unknown:
        raise ConfigError(
            f"{p}: unknown CSV column mapping key(s) {', '.join(map(repr, unknown))}; "
            f"expected some of {', '.join(CSV_FIELDS)} (e.g. columns={{'prompt': 'text', 'reference': 'category'}})"
        )
    mapping = {"prompt": "prompt", "reference": "reference", **(columns or {})}
    with _csv_field_limit(MAX_ROW_BYTES):
        records = _csv_records(p, text, problems)
    if not records:
        return []
    header_line, header = records[0]
    if "id" not in mapping and "id" in header:
        mapping["id"] = "id"
    missing = [f"{k} -> {v!r}" for k, v in mapping.items() if v not in header]
    if missing:
        raise DatasetError(
            Problem(
                str(p),
                header_line,
                f"CSV header {header} lacks the mapped column(s) {', '.join(missing)}; expected those columns, "
                "or a mapping such as columns={'prompt': 'text', 'reference': 'category'}",
            )
        )
    index = {field: header.index(col) for field, col in mapping.items()}
    if template is not None:
        template.check_answer_columns([mapping[f] for f in ("reference", "label") if f in mapping], str(p))
    out: list[tuple[int, Example]] = []
    for lineno, values in records[1:]:
        if len(values) != len(header):
            problems.append(
                Problem(str(p), lineno, f"row has {_count(len(values), 'field')} but the header has {len(header)}; "
                        "expected one value per column (quote values that contain commas)")
            )
            continue
        size = sum(len(v.encode("utf-8")) for v in values)
        if size > MAX_ROW_BYTES:
            problems.append(Problem(str(p), lineno, _too_big(size)))
            continue
        cell = {field: values[i].strip() for field, i in index.items()}
        empty = [f for f in mapping if not cell[f]]
        if empty:
            problems.append(Problem(str(p), lineno, f"column {mapping[empty[0]]!r} ({empty[0]}) is empty; expected a value"))
            continue
        prompt = ((Message("system", system_prompt),) if system_prompt else ()) + (Message("user", cell["prompt"]),)
        metadata = {"label": cell["label"]} if "label" in cell else {}
        if "id" in cell:
            ex_id = cell["id"]
        else:
            ex_id = content_id(p.stem, prompt, cell["reference"], metadata)
            auto_lines.add(lineno)
        ex: Example | None = Example(ex_id, prompt, cell["reference"], metadata, f"{p}:{lineno}")
        if template is not None:
            ex = _templated(ex, template, csv_fields(header, values, cell["prompt"]), p, lineno, problems)
        if ex is not None:
            out.append((lineno, ex))
    return out


def _csv_records(p: Path, text: str, problems: list[Problem]) -> list[tuple[int, list[str]]]:
    """(first line, values) of each non-blank CSV record; a record may span lines (quoted newlines)."""
    # strict: an unterminated or stray quote is an error, not a value that swallows the next rows.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records: list[tuple[int, list[str]]] = []
    while True:
        first_line = reader.line_num + 1
        try:
            values = next(reader)
        except StopIteration:
            return records
        except csv.Error as exc:
            what = (
                f"a value is over the {MAX_ROW_BYTES:,}-byte row limit" if "field limit" in str(exc)
                else f"unreadable CSV ({exc}); expected RFC 4180 CSV"
            )
            problems.append(Problem(str(p), first_line, f"{what}; the rest of the file was not read"))
            return records
        if values:
            records.append((first_line, values))


@contextmanager
def _csv_field_limit(limit: int) -> Iterator[None]:
    # The csv module refuses fields over 128 KiB by default, below our row limit; the setting is
    # process-wide, so it is restored at once.
    old = csv.field_size_limit()
    csv.field_size_limit(max(old, limit))
    try:
        yield
    finally:
        csv.field_size_limit(old)


__all__ = ["CSV_FIELDS", "_load_csv"]
