"""Rendering what a rater receives: packet.html (instructions, rubrics, items) and blank sheets.

Everything here is built from opaque values only (item codes, part names, letters); the template
is ftevals/rubrics/packet.html.j2, rendered with autoescape on because inputs and model outputs
are untrusted text.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

from ..results import ExampleResult
from ._common import ID_COLUMNS, _Item, _Part


def _display(value: Any) -> str:
    """A reference as text: references may be any JSON (labels, extracted fields)."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=2)


def _context(example: ExampleResult) -> list[dict[str, str]]:
    """Earlier turns of a multi-turn example (not the system prompt, not the final user turn)."""
    turns = [m for m in example.messages if m.get("role") in ("user", "assistant")]
    if turns and turns[-1].get("role") == "user":
        turns = turns[:-1]
    return [{"role": m["role"], "content": m.get("content", "")} for m in turns]


def _template():
    import jinja2  # imported lazily: only packet building needs it

    # autoescape=True always: inputs and model outputs are untrusted text.
    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True
    )
    source = resources.files("ftevals.rubrics").joinpath("packet.html.j2").read_text(encoding="utf-8")
    return env.from_string(source)


def _render_html(
    rater: str,
    parts: Sequence[_Part],
    orders: Mapping[str, list[str]],
    by_code: Mapping[str, _Item],
    examples: Mapping[str, Mapping[str, ExampleResult]],
) -> str:
    view_parts = []
    for p in parts:
        view_items = []
        for code in orders[p.part]:
            it = by_code[code]
            ex = examples[p.part][it.example]
            reference = ex.reference if p.rubric.show_reference else None
            view_items.append(
                {
                    "code": code,
                    "context": _context(ex),
                    "input": ex.input,
                    "reference": None if reference is None else _display(reference),
                    "responses": [
                        {"letter": letter, "text": ex.outputs[model].text}
                        for letter, model in zip(p.letters, it.order)
                    ],
                }
            )
        view_parts.append(
            {
                "number": p.number,
                "rubric": p.rubric,
                "levels": p.rubric.levels,
                "columns": p.columns,
                "sheet_csv": f"{p.part}.csv",
                "sheet_jsonl": f"{p.part}.jsonl",
                "entries": view_items,
            }
        )
    first = parts[0].rubric
    return _template().render(
        rater=rater,
        parts=view_parts,
        n_items=sum(len(v["entries"]) for v in view_parts),
        max_letters=max(len(p.models) for p in parts),
        scale_text=", ".join(
            sorted({f"{p.rubric.scale_min} to {p.rubric.scale_max}" for p in parts})
        ),
        example_criterion=first.criteria[0].id,
    )


def _render_csv(rater: str, part: _Part, codes: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(part.columns)
    blanks = [""] * (len(part.columns) - len(ID_COLUMNS))
    for code in codes:
        writer.writerow([rater, part.part, code, *blanks])
    # A byte-order mark makes spreadsheet programs read the file as UTF-8 (comments may be any script).
    return "\ufeff" + buf.getvalue()


def _render_jsonl(rater: str, part: _Part, codes: Sequence[str]) -> str:
    lines = []
    for code in codes:
        row: dict[str, Any] = {"rater": rater, "part": part.part, "item": code}
        row.update({col: None for col in part.columns[len(ID_COLUMNS):-2]})
        row.update({"preference": None, "comment": ""})
        lines.append(json.dumps(row, ensure_ascii=False))
    return "\n".join(lines) + "\n"
