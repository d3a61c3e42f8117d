"""Production traffic as an eval set: logged chat requests and responses -> a validated JSONL eval file.

    ftevals data import-logs logs.jsonl --out data/support/prod.jsonl --redact --train data/train.jsonl --sample 500

Each log line is one request and its response, in either form:
- OpenAI request/response objects: `{"request": {"messages": [...]}, "response": {"choices": [{"message":
  {"content": "..."}}]}}` (also `"response": "text"`);
- a chat transcript: `{"messages": [..., {"role": "assistant", "content": "..."}]}`, the last assistant
  turn being the response.
Other top-level fields whose values are plain scalars (`resolved`, `escalated`, `rating`, `ts`, ...)
are kept as the example's metadata (outcome fields for A/B analysis and slicing). The logged response
becomes the example's reference: the eval set asks "does the candidate answer like production did?".

Steps, each counting what it drops, by reason:
1. parse (unreadable JSON, no messages, no user turn, roles out of order, empty response);
2. redaction (optional): e-mail addresses and phone numbers in every turn become `[EMAIL]`/`[PHONE]`;
3. exact duplicates (same normalised conversation) and near duplicates (word 3-gram Jaccard >= 0.8
   with an earlier kept request's last user turn, the contamination check's rule);
4. contamination: requests that duplicate or nearly duplicate a training file's inputs;
5. a seeded sample of what is left (`--sample N`).
The written file is then loaded back with `load_dataset`, so it is valid for suites as written.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .contamination import check_contamination, word_ngrams
from .data import ROLES, Dataset, Example, Message, content_id, fingerprint_examples, load_dataset, normalize_text
from .errors import ConfigError, DatasetError, Problem
from .fsutil import atomic_write_text

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# International or national numbers of 7+ digits with the usual separators; not years or amounts.
_PHONE = re.compile(r"(?<![\w.])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]\d{2,4}){1,4}(?![\w.])")


_DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{4}")


def redact(text: str) -> tuple[str, int]:
    """(text with e-mail addresses and phone numbers replaced, how many were replaced)."""
    text, emails = _EMAIL.subn("[EMAIL]", text)
    count = 0

    def phone(m: re.Match[str]) -> str:
        nonlocal count
        if sum(ch.isdigit() for ch in m.group()) < 7 or _DATE.fullmatch(m.group()):
            return m.group()  # a date, an amount, an order number fragment
        count += 1
        return "[PHONE]"

    return _PHONE.sub(phone, text), emails + count


@dataclass
class ImportReport:
    read: int = 0
    written: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    redactions: int = 0
    problems: list[Problem] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"read {self.read} logged requests, wrote {self.written} examples"]
        out += [f"  dropped {n}: {reason}" for reason, n in sorted(self.dropped.items(), key=lambda kv: (-kv[1], kv[0]))]
        if self.redactions:
            out.append(f"  redacted {self.redactions} e-mail addresses and phone numbers")
        return out


def _messages(row: Mapping[str, Any]) -> tuple[list[Any], Any]:
    """(request messages, response) from either log form; raises ValueError with the reason."""
    if "request" in row:
        request = row["request"]
        msgs = request.get("messages") if isinstance(request, Mapping) else None
        response = row.get("response")
        if isinstance(response, Mapping):
            choices = response.get("choices") or []
            response = (choices[0].get("message") or {}).get("content") if choices and isinstance(choices[0], Mapping) else None
        return (msgs if isinstance(msgs, list) else []), response
    msgs = row.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return [], None
    last = msgs[-1]
    if isinstance(last, Mapping) and last.get("role") == "assistant":
        return msgs[:-1], last.get("content")
    return msgs, row.get("response")


def _parse(path: Path, lineno: int, line: str, report: ImportReport, redacting: bool) -> Example | None:
    def drop(reason: str, detail: str) -> None:
        report.dropped[reason] += 1
        report.problems.append(Problem(str(path), lineno, detail))

    try:
        row = json.loads(line)
    except ValueError as exc:
        drop("unreadable JSON", f"not JSON ({exc.msg})")
        return None
    if not isinstance(row, dict):
        drop("unreadable JSON", f"a JSON {type(row).__name__}, expected an object")
        return None
    raw, response = _messages(row)
    if not raw:
        drop("no messages", "no request messages (expected 'messages' or 'request.messages')")
        return None
    if not isinstance(response, str) or not response.strip():
        drop("empty response", "no response text (expected 'response' or a final assistant turn)")
        return None
    msgs: list[Message] = []
    for m in raw:
        if not isinstance(m, Mapping) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            drop("bad message", "a message is not {role: system|user|assistant, content: text}")
            return None
        msgs.append(Message(m["role"], m["content"]))
    if msgs[-1].role != "user" or any(m.role == "system" for m in msgs[1:]):
        drop("roles out of order", "the request must end with a user turn (system only first)")
        return None
    if redacting:
        cleaned = []
        for m in msgs:
            text, n = redact(m.content)
            report.redactions += n
            cleaned.append(Message(m.role, text))
        msgs = cleaned
        response, n = redact(response)
        report.redactions += n
    metadata = {k: v for k, v in row.items() if k not in {"messages", "request", "response", "id"}
                and (v is None or isinstance(v, (str, int, float, bool)))}
    metadata["log_line"] = lineno
    ex_id = str(row["id"]) if isinstance(row.get("id"), (str, int)) else content_id(path.stem, msgs, response, {})
    return Example(ex_id, tuple(msgs), response.strip(), metadata, f"{path}:{lineno}")


def _dedupe(examples: list[Example], report: ImportReport, threshold: float, ngram: int) -> list[Example]:
    kept: list[Example] = []
    seen: set[str] = set()
    index: dict[str, list[int]] = defaultdict(list)
    grams_of: list[frozenset[str]] = []
    for ex in examples:
        key = "\x00".join(f"{m.role}:{normalize_text(m.content)}" for m in ex.messages)
        if key in seen:
            report.dropped["exact duplicate"] += 1
            continue
        grams = word_ngrams(ex.user_text, ngram)
        shared: Counter[int] = Counter(i for g in grams for i in index.get(g, ()))
        if any(n / (len(grams) + len(grams_of[i]) - n) >= threshold for i, n in shared.items()):
            report.dropped["near duplicate"] += 1
            continue
        seen.add(key)
        for g in grams:
            index[g].append(len(kept))
        grams_of.append(grams)
        kept.append(ex)
    return kept


def import_logs(logs: Path, out: Path, *, redacting: bool = False, train_files: Sequence[Path] = (),
                sample: int | None = None, seed: int = 0, threshold: float = 0.8, ngram: int = 3) -> ImportReport:
    """Read `logs`, write the eval set to `out` (atomically) and return what was kept and dropped."""
    if sample is not None and sample < 1:
        raise ConfigError(f"--sample must be >= 1, got {sample}")
    try:
        text = logs.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(Problem(str(logs), 0, f"cannot read the log file ({exc})")) from None
    report = ImportReport()
    parsed: list[Example] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        report.read += 1
        ex = _parse(logs, lineno, line, report, redacting)
        if ex is not None:
            parsed.append(ex)
    kept = _dedupe(parsed, report, threshold, ngram)
    if train_files:
        trains = [(str(f), load_dataset(f).examples) for f in train_files]
        hits = {m.eval_id for m in check_contamination(kept, trains, threshold=threshold, ngram=ngram).matches}
        report.dropped["overlaps training data"] += sum(1 for ex in kept if ex.id in hits)
        kept = [ex for ex in kept if ex.id not in hits]
    if sample is not None and sample < len(kept):
        report.dropped["not in the seeded sample"] += len(kept) - sample
        kept = list(Dataset("logs", str(logs), tuple(kept), fingerprint_examples(kept)).sample(sample, seed=seed).examples)
    if not kept:
        raise DatasetError(Problem(str(logs), 0, "no logged request survived import: " + "; ".join(report.lines()[1:])
                                   + "; nothing was written"))
    body = "".join(json.dumps(ex.to_row(), ensure_ascii=False, sort_keys=True) + "\n" for ex in kept)
    # Checked as a suite will read it before it takes `out`'s place: a bad file is never left behind.
    out.parent.mkdir(parents=True, exist_ok=True)
    trial = out.with_name(f".{out.name}.importing")
    atomic_write_text(trial, body)
    try:
        load_dataset(trial)
    except BaseException:
        trial.unlink(missing_ok=True)
        raise
    os.replace(trial, out)
    report.written = len(kept)
    return report


__all__ = ["ImportReport", "import_logs", "redact"]
