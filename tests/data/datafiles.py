"""Row builders for the data-layer tests (imported by the test modules of this folder)."""

from __future__ import annotations

import json
from typing import Any


def chat(user: str, reference: str, *, id: str | None = None, label: str | None = None,
         system: str | None = "Classify the message.") -> dict[str, Any]:
    """One chat JSONL row; `label` goes to metadata.label (what classification rows carry)."""
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": user},
        {"role": "assistant", "content": reference},
    ]
    row: dict[str, Any] = {"messages": messages}
    if id is not None:
        row = {"id": id, **row}
    if label is not None:
        row["metadata"] = {"label": label}
    return row


def jsonl(*rows: dict[str, Any] | str) -> str:
    """Rows as JSONL; a str row is written as is (to plant a malformed line)."""
    return "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows)
