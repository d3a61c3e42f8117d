"""Datasets: load, validate, sample and fingerprint evaluation examples.

An `Example` is a prompt (chat messages, without the answer), the reference answer, and free-form
metadata (label, extra references, ...). Files are validated as a whole before anything runs: every
bad row is reported as `file:line: what is wrong, what was expected`, and loading refuses the file
instead of silently dropping rows.

Supported formats (chosen by `format=` or the file suffix):
- chat JSONL: `{"id"?, "messages": [...], "metadata"?}`; the final assistant turn is the reference.
- prompt JSONL: `{"id"?, "prompt": "...", "reference": "...", "metadata"?}`.
- CSV: with a column mapping {field: column} for prompt and reference, optionally id and label
  (`metadata.label`), e.g. `columns={"prompt": "text", "reference": "category"}`.

A row without an id gets one derived from its content (`content_id`), so that samples, splits and
fingerprints do not change when rows are reordered or inserted.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, DatasetError, Problem
from .prompts import PromptTemplate, apply_template, jsonl_fields

#: Rows larger than this are refused: almost always a broken export, and they blow up prompts.
MAX_ROW_BYTES = 1_000_000

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Message:
    role: str
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class Example:
    """One evaluation item: the prompt messages (ending with a user turn) and the reference answer."""

    id: str
    messages: tuple[Message, ...]
    reference: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    #: Where the row came from (`file:line`), for error messages and the report.
    source: str = ""

    @property
    def user_text(self) -> str:
        """The last user turn: what a human reads as "the input"."""
        return next((m.content for m in reversed(self.messages) if m.role == "user"), "")

    @property
    def label(self) -> str:
        """The class label for classification tasks (metadata `label`, else the reference)."""
        return str(self.metadata.get("label", self.reference))

    def to_dict(self) -> dict[str, Any]:
        """The record form (prompt and reference apart): what fingerprints hash and results show."""
        return {
            "id": self.id,
            "messages": [m.to_dict() for m in self.messages],
            "reference": self.reference,
            "metadata": dict(self.metadata),
        }

    def to_row(self) -> dict[str, Any]:
        """A chat JSONL row that `load_dataset` reads back as this very example (same id, same fingerprint)."""
        turns = [m.to_dict() for m in self.messages] + [{"role": "assistant", "content": self.reference}]
        row: dict[str, Any] = {"id": self.id, "messages": turns}
        if self.metadata:
            row["metadata"] = dict(self.metadata)
        return row


@dataclass(frozen=True)
class Dataset:
    """A validated, immutable list of examples with a content fingerprint."""

    name: str
    path: str
    examples: tuple[Example, ...]
    fingerprint: str

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self) -> Iterator[Example]:
        return iter(self.examples)

    def sample(self, n: int | None, seed: int = 0) -> Dataset:
        """A seeded sample of `n` examples that does not depend on the file's row order.

        Examples are ordered by a hash of (seed, id) and the first n taken. Shuffling the file
        gives the same sample; appending rows can only swap some picks for new rows, never bring in
        an old row that was not picked before.
        """
        if n is None or n >= len(self.examples):
            return self
        ranked = sorted(self.examples, key=lambda e: _stable_rank(seed, e.id))[:n]
        ranked.sort(key=lambda e: e.id)
        return Dataset(self.name, self.path, tuple(ranked), fingerprint_examples(ranked))

    def to_records(self) -> list[dict[str, Any]]:
        """Chat JSONL rows (see `Example.to_row`): written out, they load back as this dataset."""
        return [e.to_row() for e in self.examples]


def _stable_rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}\x00{key}".encode()).hexdigest()


def fingerprint_examples(examples: Iterable[Example]) -> str:
    """A content hash of the examples (ids, prompts, references, metadata), independent of file layout."""
    h = hashlib.sha256()
    for ex in sorted(examples, key=lambda e: e.id):
        h.update(json.dumps(ex.to_dict(), sort_keys=True, ensure_ascii=False).encode())
        h.update(b"\n")
    return "sha256:" + h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Loading


def load_dataset(
    path: str | Path,
    *,
    format: str | None = None,
    name: str | None = None,
    columns: Mapping[str, str] | None = None,
    system_prompt: str | None = None,
    labels: Sequence[str] | None = None,
    prompt_template: str | PromptTemplate | None = None,
) -> Dataset:
    """Load and validate a dataset file; raise `DatasetError` listing every bad row.

    `labels`, when given, is the declared label set: a row whose label is outside it is an error.
    `prompt_template` (prompts.py) writes each row's user turn from its fields; ids are computed
    from the row as written, so a changed template changes the prompts but not the sample.

    A file loaded before with the same bytes, arguments and loader code is read from the memo
    (memo.py): validating tens of thousands of training rows is most of a warm re-run otherwise.
    """
    if isinstance(prompt_template, str):
        prompt_template = PromptTemplate.parse(prompt_template, owner="prompt_template", labels=labels)
    p = Path(path)
    if not p.is_file():
        raise DatasetError(
            Problem(str(p), None, "file not found; expected a .jsonl or .csv dataset (check the path in the suite)")
        )
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise DatasetError(Problem(str(p), None, f"cannot read the file ({exc.strerror or exc})")) from None
    from . import data_csv, memo, prompts

    key = memo.memo_key(raw, str(path), format, name, dict(columns or {}), system_prompt,
                        list(labels) if labels is not None else None,
                        [prompt_template.text, prompt_template.labels] if prompt_template is not None else None,
                        memo.code_key(__file__, data_csv.__file__, prompts.__file__))
    return memo.memoised("datasets", key, lambda: _parse_dataset(p, raw, format, name, columns, system_prompt, labels,
                                                                 prompt_template))


def _parse_dataset(
    p: Path,
    raw: bytes,
    format: str | None,
    name: str | None,
    columns: Mapping[str, str] | None,
    system_prompt: str | None,
    labels: Sequence[str] | None,
    prompt_template: PromptTemplate | None,
) -> Dataset:
    fmt = format or _guess_format(p)
    problems: list[Problem] = []
    # A byte-order mark (Excel and Notepad write one) is not part of the first row.
    raw = raw.removeprefix(b"\xef\xbb\xbf")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DatasetError(
            Problem(str(p), line, f"not valid UTF-8 (byte {raw[exc.start]:#04x}); re-save the file as UTF-8")
        ) from None
    if not text.strip():
        raise DatasetError(Problem(str(p), None, "file is empty; expected at least one example"))

    #: Lines whose row had no id of its own (theirs is a content id, see `content_id`).
    auto_lines: set[int] = set()
    if fmt in ("chat", "prompt", "jsonl"):
        examples = _load_jsonl(p, text, problems, system_prompt, auto_lines, prompt_template)
    elif fmt == "csv":
        from .data_csv import _load_csv  # here: the CSV reader imports this module's records

        examples = _load_csv(p, text, problems, columns, system_prompt, auto_lines, prompt_template)
    else:
        raise DatasetError(
            Problem(str(p), None, f"unknown dataset format {fmt!r}; expected 'chat', 'prompt', 'jsonl' or 'csv'")
        )
    examples = _number_repeats(examples, auto_lines)
    if not examples and not problems:
        raise DatasetError(Problem(str(p), None, "file has no rows; expected at least one example"))
    _check_ids_and_conflicts(p, examples, problems)
    if labels is not None:
        _check_label_set(p, examples, labels, problems)
    if problems:
        # Sorted by line (stable: several problems on one line keep their order), so the list reads
        # like the file; file-level problems (line None) come first.
        problems.sort(key=lambda pr: pr.line or 0)
        raise DatasetError(problems, path=p)
    exs = tuple(ex for _, ex in examples)
    return Dataset(name or p.stem, str(p), exs, fingerprint_examples(exs))


def _check_label_set(p: Path, rows: list[tuple[int, Example]], labels: Sequence[str], problems: list[Problem]) -> None:
    import difflib

    allowed = set(labels)
    for line, ex in rows:
        if ex.label in allowed:
            continue
        close = difflib.get_close_matches(ex.label, sorted(allowed), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        problems.append(
            Problem(str(p), line, f"label {ex.label!r} is not in the declared label set ({len(allowed)} labels){hint}")
        )


def _guess_format(p: Path) -> str:
    return "csv" if p.suffix.lower() == ".csv" else "jsonl"


def _too_big(size: int) -> str:
    return f"row is {size:,} bytes, over the {MAX_ROW_BYTES:,}-byte limit; expected a smaller row (is it a broken export?)"


def _jsonl_lines(text: str) -> Iterable[tuple[int, str]]:
    """(line number, line) on "\n" only: `str.splitlines` also splits on U+2028 and friends, which
    JSON allows raw inside strings (and `json.dumps(ensure_ascii=False)` writes), and would then
    tear such a row in two and shift every later line number."""
    for lineno, line in enumerate(text.split("\n"), start=1):
        yield lineno, line.removesuffix("\r")


def _number_repeats(rows: list[tuple[int, Example]], auto_lines: set[int]) -> list[tuple[int, Example]]:
    """Give the 2nd, 3rd... identical id-less row the suffix -2, -3 (listed as duplicates, not errors)."""
    from dataclasses import replace

    seen: dict[str, int] = {}
    out = []
    for line, ex in rows:
        if line in auto_lines:
            seen[ex.id] = seen.get(ex.id, 0) + 1
            if seen[ex.id] > 1:
                ex = replace(ex, id=f"{ex.id}-{seen[ex.id]}")
        out.append((line, ex))
    return out


def _load_jsonl(
    p: Path, text: str, problems: list[Problem], system_prompt: str | None, auto_lines: set[int],
    template: PromptTemplate | None = None,
) -> list[tuple[int, Example]]:
    out: list[tuple[int, Example]] = []
    for lineno, line in _jsonl_lines(text):
        if not line.strip():
            continue
        size = len(line.encode("utf-8"))
        if size > MAX_ROW_BYTES:
            problems.append(Problem(str(p), lineno, _too_big(size)))
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(Problem(str(p), lineno, f"bad JSON ({exc.msg} at column {exc.colno}); expected one JSON object per line"))
            continue
        if not isinstance(row, dict):
            problems.append(Problem(str(p), lineno, f"expected a JSON object, got {type(row).__name__}"))
            continue
        ex = _row_to_example(p, lineno, row, problems, system_prompt)
        if ex is not None and template is not None:
            ex = _templated(ex, template, jsonl_fields(row, ex.user_text), p, lineno, problems)
        if ex is not None:
            out.append((lineno, ex))
            if row.get("id") is None:
                auto_lines.add(lineno)
    return out


def _row_to_example(
    p: Path, lineno: int, row: dict[str, Any], problems: list[Problem], system_prompt: str | None
) -> Example | None:
    where = f"{p}:{lineno}"
    metadata = row.get("metadata", {})
    if not isinstance(metadata, dict):
        problems.append(Problem(str(p), lineno, f'"metadata" must be a JSON object, got {_json_type(metadata)}'))
        return None
    ex_id = row.get("id")
    if ex_id is not None and (not isinstance(ex_id, (str, int)) or isinstance(ex_id, bool) or str(ex_id).strip() == ""):
        problems.append(Problem(str(p), lineno, f'"id" must be a non-empty string or a whole number, got {ex_id!r}'))
        return None
    if "messages" in row:
        msgs = row["messages"]
        if not isinstance(msgs, list) or not msgs:
            problems.append(Problem(str(p), lineno, '"messages" must be a non-empty list of {"role", "content"} objects'))
            return None
        parsed: list[Message] = []
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
                problems.append(
                    Problem(str(p), lineno, f'"messages"[{i}] must be an object with string "role" and "content"')
                )
                return None
            if m["role"] not in ROLES:
                problems.append(
                    Problem(str(p), lineno, f'"messages"[{i}] has unknown role {m["role"]!r}; expected one of {", ".join(ROLES)}')
                )
                return None
            parsed.append(Message(m["role"], m["content"]))
        if parsed[-1].role != "assistant":
            problems.append(
                Problem(str(p), lineno, f'"messages" must end with an assistant turn (the reference), got role {parsed[-1].role!r}')
            )
            return None
        order_error = _check_role_order(parsed)
        if order_error:
            problems.append(Problem(str(p), lineno, order_error))
            return None
        reference = parsed[-1].content
        prompt = tuple(parsed[:-1])
        if not reference.strip():
            problems.append(Problem(str(p), lineno, "the final assistant turn (the reference) is empty; expected the reference answer"))
            return None
        if not any(m.content.strip() for m in prompt if m.role == "user"):
            problems.append(Problem(str(p), lineno, "the user turn is empty; expected the input text"))
            return None
    elif "prompt" in row or "reference" in row:
        prompt_text, reference = row.get("prompt"), row.get("reference")
        for key, value in (("prompt", prompt_text), ("reference", reference)):
            if not isinstance(value, str) or not value.strip():
                problems.append(Problem(str(p), lineno, f'"{key}" is missing or empty; expected a non-empty string'))
                return None
        prompt = ((Message("system", system_prompt),) if system_prompt else ()) + (Message("user", prompt_text),)  # type: ignore[arg-type]
    else:
        problems.append(
            Problem(str(p), lineno, 'row has neither "messages" nor "prompt"/"reference"; expected one of those layouts')
        )
        return None
    ex_id = str(ex_id) if ex_id is not None else content_id(p.stem, prompt, str(reference), metadata)
    return Example(ex_id, prompt, str(reference), metadata, where)


def content_id(stem: str, prompt: Sequence[Message], reference: str, metadata: Mapping[str, Any]) -> str:
    """The id of a row that has none: a hash of its content, not its line number.

    A line-number id would change when rows are reordered or inserted, and with it every seeded
    sample, split and fingerprint; a content id keeps them stable. Identical rows share a hash and
    are told apart by `_number_repeats` ("-2", "-3", ... in file order; being identical, their order
    does not matter).
    """
    blob = json.dumps(
        [[m.to_dict() for m in prompt], reference, dict(metadata)], sort_keys=True, ensure_ascii=False
    )
    return f"{stem}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _check_role_order(msgs: Sequence[Message]) -> str | None:
    """System (optional, first only), then strictly alternating user/assistant, starting with user."""
    rest = list(msgs)
    if rest and rest[0].role == "system":
        rest = rest[1:]
    for i, m in enumerate(rest):
        expected = "user" if i % 2 == 0 else "assistant"
        if m.role != expected:
            return (
                f"wrong role order: turn {i + (len(msgs) - len(rest))} is {m.role!r} but {expected!r} was expected "
                "(optional system first, then user and assistant alternating, ending with assistant)"
            )
    return None


def _templated(ex: Example, template: PromptTemplate, fields: Mapping[str, str], p: Path, lineno: int,
               problems: list[Problem]) -> Example | None:
    done = apply_template(ex, template, fields)
    if isinstance(done, list):
        problems.append(Problem(str(p), lineno, template.missing_message(done, fields)))
        return None
    return done


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


_NOT_ALNUM = re.compile(r"[\W_]+")


def normalize_text(text: str) -> str:
    """Case-fold, collapse whitespace and drop punctuation: the form used for duplicate detection.

    NFKC first, so that full-width letters, ligatures and non-breaking spaces compare equal to
    their plain forms (copy-pasted training data is full of them).
    """
    return " ".join(_NOT_ALNUM.sub(" ", unicodedata.normalize("NFKC", text).casefold()).split())


def _check_ids_and_conflicts(p: Path, rows: list[tuple[int, Example]], problems: list[Problem]) -> None:
    first_line_of_id: dict[str, int] = {}
    by_input: dict[str, tuple[int, Example]] = {}
    for line, ex in rows:
        if ex.id in first_line_of_id:
            problems.append(
                Problem(str(p), line, f"duplicate id {ex.id!r} (first seen on line {first_line_of_id[ex.id]}); ids must be unique")
            )
        else:
            first_line_of_id[ex.id] = line
        if "label" not in ex.metadata:
            # Only classification rows have one right answer; generation rows may legitimately
            # repeat an input with different references.
            continue
        key = normalize_text(" ".join(m.content for m in ex.messages))
        if key in by_input:
            first_line, first = by_input[key]
            if first.label != ex.label:
                problems.append(
                    Problem(
                        str(p),
                        line,
                        f"conflicting labels for the same input: {ex.label!r} here, {first.label!r} on line "
                        f"{first_line}; expected one label per input (fix or drop one of the rows)",
                    )
                )
        else:
            by_input[key] = (line, ex)


def find_duplicates(dataset: Dataset) -> list[tuple[str, str]]:
    """Pairs of example ids whose normalised inputs are identical (not errors, but worth listing)."""
    seen: dict[str, str] = {}
    pairs: list[tuple[str, str]] = []
    for ex in dataset.examples:
        key = normalize_text(" ".join(m.content for m in ex.messages))
        if key in seen:
            pairs.append((seen[key], ex.id))
        else:
            seen[key] = ex.id
    return pairs


def write_jsonl(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """Write rows as UTF-8 JSONL atomically (temp file + rename)."""
    from .fsutil import atomic_write_text

    buf = io.StringIO()
    for row in rows:
        buf.write(json.dumps(row, ensure_ascii=False, sort_keys=False))
        buf.write("\n")
    atomic_write_text(Path(path), buf.getvalue())


def split_dataset(dataset: Dataset, ratios: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0,
                  names: Sequence[str] = ("train", "validation", "test")) -> dict[str, Dataset]:
    """Deterministic split by a seeded hash of each example's id.

    An example's split depends only on (seed, id), never on row order or on the other rows: shuffling
    the file or appending rows leaves every existing example where it was. The hash is salted apart
    from `Dataset.sample`'s: with a shared hash, splitting a sample would put it all in one part
    (a sample is exactly the examples with the lowest ranks).
    """
    if len(ratios) != len(names) or any(r < 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-6:
        raise ConfigError(f"split ratios must be {len(names)} non-negative numbers summing to 1, got {list(ratios)}")
    bounds = []
    acc = 0.0
    for r in ratios:
        acc += r
        bounds.append(acc)
    buckets: dict[str, list[Example]] = {n: [] for n in names}
    for ex in dataset.examples:
        u = int(_stable_rank(seed, f"split\x00{ex.id}")[:15], 16) / float(16**15)
        for name, bound in zip(names, bounds):
            if u < bound or name == names[-1]:
                buckets[name].append(ex)
                break
    return {n: Dataset(f"{dataset.name}-{n}", dataset.path, tuple(exs), fingerprint_examples(exs)) for n, exs in buckets.items()}


__all__ = [
    "Dataset",
    "Example",
    "MAX_ROW_BYTES",
    "Message",
    "content_id",
    "find_duplicates",
    "fingerprint_examples",
    "load_dataset",
    "normalize_text",
    "split_dataset",
    "write_jsonl",
]
