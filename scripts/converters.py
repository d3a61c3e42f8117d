"""Converters from the public datasets' own layouts to ftevals chat JSONL.

Each converter takes the raw rows of one public dataset and returns chat rows
(`{"id", "messages", "metadata"}`) whose last assistant turn is the reference. The system prompts
live here, next to the data they describe, because the demo adapters are trained on exactly these
rows and the suites evaluate exactly these prompts.

`scripts/import_datasets.py` runs them over the copies in `../shared/datasets/` and writes `data/`.
Nothing here is read at evaluation time except the converted files, so this module lives with the
script that uses it, not in the installed package (tests/data/test_converters.py loads it from here).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

# Kept short on purpose: on a 2-core CPU every prompt token costs training and evaluation time.
BANKING77_SYSTEM = "Classify the banking customer's message. Reply with its intent label only."

RESTAURANT8K_SLOTS = ("people", "date", "time", "first_name", "last_name")
RESTAURANT8K_SYSTEM = (
    "You extract restaurant booking details from the guest's reply. Answer with one JSON object "
    "whose keys are among people, date, time, first_name and last_name, with values copied "
    "verbatim from the reply. Leave out details that are not mentioned; answer {} if there are none."
)

DIALOGSUM_SYSTEM = (
    "Summarise the dialogue in one or two sentences. Refer to the speakers as #Person1# and #Person2#."
)

GSM8K_SYSTEM = "Solve the maths word problem step by step. End with a line of the form '#### <number>'."


def _chat(system: str, user: str, assistant: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": user},
        {"role": "assistant", "content": assistant},
    ]


def banking77_rows(csv_text: str, split: str) -> Iterator[dict[str, Any]]:
    """BANKING77 `text,category` CSV -> one chat row per utterance; the reference is the label."""
    for i, row in enumerate(csv.DictReader(io.StringIO(csv_text))):
        text, label = row["text"].strip(), row["category"].strip()
        yield {
            "id": f"banking77-{split}-{i:05d}",
            "messages": _chat(BANKING77_SYSTEM, text, label),
            "metadata": {"label": label},
        }


def restaurant8k_target(text: str, labels: Iterable[dict[str, Any]]) -> dict[str, str]:
    """The gold JSON object of one Restaurant-8k turn: slot -> verbatim span of the user's text.

    Spans are character offsets into the text; a missing `startIndex` means 0 (dataset README).
    """
    target: dict[str, str] = {}
    for label in labels:
        span = label.get("valueSpan", {})
        start = int(span.get("startIndex", 0))
        end = int(span.get("endIndex", len(text)))
        if not 0 <= start < end <= len(text):
            # Slicing would quietly give "" or a clipped value; a wrong gold answer is worse than none.
            raise ValueError(
                f"Restaurant-8k span {start}..{end} of slot {label.get('slot')!r} does not fit the "
                f"{len(text)}-character text {text!r}"
            )
        target[label["slot"]] = text[start:end]
    # A fixed key order keeps the reference string (and so exact-match scores) deterministic.
    return {slot: target[slot] for slot in RESTAURANT8K_SLOTS if slot in target}


def restaurant8k_user_turn(row: dict[str, Any]) -> str:
    requested = row.get("context", {}).get("requestedSlots", [])
    asked = ", ".join(requested) if requested else "nothing in particular"
    return f"The host asked for: {asked}.\nGuest: {row['userInput']['text']}"


def restaurant8k_rows(json_text: str, split: str) -> Iterator[dict[str, Any]]:
    for i, row in enumerate(json.loads(json_text)):
        text = row["userInput"]["text"]
        target = restaurant8k_target(text, row.get("labels", []))
        yield {
            "id": f"restaurant8k-{split}-{i:05d}",
            "messages": _chat(RESTAURANT8K_SYSTEM, restaurant8k_user_turn(row), json.dumps(target, ensure_ascii=False)),
            "metadata": {"slots": target, "requested": row.get("context", {}).get("requestedSlots", [])},
        }


def dialogsum_rows(jsonl_text: str, split: str) -> Iterator[dict[str, Any]]:
    """DialogSum rows; test rows carry three references (summary1 is the reference, all in metadata)."""
    for line in jsonl_text.splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if "summary1" in row:
            refs = [row[f"summary{k}"] for k in (1, 2, 3)]
            topic = row.get("topic1", "")
        else:
            refs = [row["summary"]]
            topic = row.get("topic", "")
        yield {
            "id": f"dialogsum-{row['fname']}",
            "messages": _chat(DIALOGSUM_SYSTEM, row["dialogue"], refs[0]),
            "metadata": {"references": refs, "topic": topic},
        }


_GSM8K_ANSWER = re.compile(r"####\s*(.+?)\s*$")


def gsm8k_final_answer(answer: str) -> str:
    match = _GSM8K_ANSWER.search(answer.strip())
    if not match:
        raise ValueError(f"GSM8K answer has no '#### <number>' line: {answer[-80:]!r}")
    return match.group(1).replace(",", "").strip()


def gsm8k_rows(jsonl_text: str, split: str) -> Iterator[dict[str, Any]]:
    for i, line in enumerate(l for l in jsonl_text.splitlines() if l.strip()):
        row = json.loads(line)
        yield {
            "id": f"gsm8k-{split}-{i:04d}",
            "messages": _chat(GSM8K_SYSTEM, row["question"], row["answer"]),
            "metadata": {"answer": gsm8k_final_answer(row["answer"])},
        }


__all__ = [
    "BANKING77_SYSTEM",
    "DIALOGSUM_SYSTEM",
    "GSM8K_SYSTEM",
    "RESTAURANT8K_SLOTS",
    "RESTAURANT8K_SYSTEM",
    "banking77_rows",
    "dialogsum_rows",
    "gsm8k_final_answer",
    "gsm8k_rows",
    "restaurant8k_rows",
    "restaurant8k_target",
]
