"""Prompt formats: a suite's prompt template, and the raw prompt of a model without a chat template.

Two pieces of pure text handling (no tokenizer, no model), shared by dataset loading (data.py),
`ftevals data validate` and the backends' rendering (backends/templates.py):

`PromptTemplate` is a suite's `prompt_template`: a `str.format`-style template over a row's fields
that produces the user turn, e.g. ``"Classify this message.\\nMessage: {text}\\nIntent:"``. Fields
are named plainly (``{text}``); positional fields, attribute or index access, conversions and
format specs are refused when the template is read, so rendering can only substitute strings.

`completion_text` is what a model reads in completion mode (a base model, no chat template): the
messages laid out as plain text, with no special tokens. The rule, documented in docs/suites.md:

    SYSTEM PROMPT                 (if any)
    <blank line>
    SHOT 1 USER TEXT              (each few-shot shot, or earlier turn, if any)
    SHOT 1 ANSWER
    <blank line>
    ...
    FINAL USER TEXT
    <the model's answer starts here, on its own line>

so the model's answer goes exactly where each shot's answer went.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from .data import Example, Message

#: What a suite may ask for: "auto" is chat when the model's tokenizer has a chat template, else
#: completion.
PromptFormatChoice = Literal["auto", "chat", "completion"]
#: What a model was actually prompted with (results' `prompt_formats`).
PromptFormat = Literal["chat", "completion"]
PROMPT_FORMATS: tuple[str, ...] = ("auto", "chat", "completion")

#: Fields a template may not name: they hold the reference answer, which the model must not see.
ANSWER_FIELDS = ("reference", "label")

#: The template field that lists a classification suite's labels.
LABELS_FIELD = "labels"


@dataclass(frozen=True)
class PromptTemplate:
    """A parsed `prompt_template`: literal text and the fields between it, in order."""

    text: str
    #: (literal text before the field, field name or None at the end), as string.Formatter parses it.
    parts: tuple[tuple[str, str | None], ...]
    #: The suite's labels joined by ", ", the value of `{labels}`; None: the suite has no labels.
    labels: str | None = None

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(name for _, name in self.parts if name is not None))

    @classmethod
    def parse(cls, text: str, *, owner: str, labels: Sequence[str] | None = None) -> PromptTemplate:
        """Read a template; ConfigError naming `owner` (e.g. "suite 'tickets'") when it is malformed."""
        fix = "write fields by name, e.g. 'Message: {text}', and double literal braces ('{{', '}}')"
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"{owner}: prompt_template must be a non-empty string, got {text!r}")
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:  # unbalanced braces
            raise ConfigError(f"{owner}: prompt_template {text!r} is malformed ({exc}); {fix}") from None
        parts: list[tuple[str, str | None]] = []
        for literal, name, spec, conversion in parsed:
            if name is None:
                parts.append((literal, None))
                continue
            shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            if name == "" or name.isdigit():
                problem = f"has a positional field {shown}; fields are taken from the row by name"
            elif "." in name or "[" in name:
                # `{metadata[x]}` or `{prompt.upper}`: attribute and index access are not substitution.
                # Other names are fine, spaces and dashes included: CSV headers are what they are.
                problem = f"field {shown} uses attribute or index access ('.', '[')"
            elif conversion or spec:
                problem = f"field {shown} has a conversion or format spec; values are inserted as they are"
            else:
                parts.append((literal, name))
                continue
            raise ConfigError(f"{owner}: prompt_template {text!r} {problem}; {fix}")
        template = cls(text, tuple(parts), ", ".join(labels) if labels is not None else None)
        if not template.fields:
            raise ConfigError(
                f"{owner}: prompt_template {text!r} names no field, so every example would get the same prompt; "
                f"{fix}"
            )
        leaked = [f for f in template.fields if f in ANSWER_FIELDS]
        if leaked:
            raise ConfigError(
                f"{owner}: prompt_template names {{{leaked[0]}}}, the reference answer: the model would be shown "
                "what it is scored against; name the input fields only"
            )
        return template

    def check_answer_columns(self, answer_columns: Sequence[str], where: str) -> None:
        """Refuse a template naming the CSV columns the reference (or label) comes from."""
        leaked = [f for f in self.fields if f in answer_columns]
        if leaked:
            raise ConfigError(
                f"{where}: the prompt template names {{{leaked[0]}}}, the column the reference answer comes from: "
                "the model would be shown what it is scored against; name the input columns only"
            )

    def render(self, values: Mapping[str, str]) -> str | list[str]:
        """The user text for one row, or the names of the fields the row lacks (in template order)."""
        if self.labels is not None:
            values = {**values, LABELS_FIELD: self.labels}
        missing = [f for f in self.fields if f not in values]
        if missing:
            return missing
        return "".join(literal + (values[name] if name is not None else "") for literal, name in self.parts)

    def missing_message(self, missing: Sequence[str], values: Mapping[str, str]) -> str:
        """The problem text for a row that lacks fields the template names: the field and the choice."""
        available = sorted((set(values) | ({LABELS_FIELD} if self.labels is not None else set())) - set(ANSWER_FIELDS))
        names = ", ".join("{" + m + "}" for m in missing)
        fix = ("{labels} is the suite's label list: declare labels (labels=, --labels)"
               if LABELS_FIELD in missing and self.labels is None else "fix the template or add the field to every row")
        return (f"the prompt template names {names}, which this row does not have; available fields: "
                f"{', '.join(available) or 'none'} ({fix})")


def jsonl_fields(row: Mapping[str, Any], user_text: str) -> dict[str, str]:
    """A JSONL row's template fields: its metadata fields, then its own top-level fields (which win
    on a clash), then `prompt` and `input` as the row's user text when the row has no such field.

    Strings are used as they are; numbers, booleans, lists and objects as JSON (`true`, `[1, 2]`).
    `messages` and `metadata` themselves are not fields.
    """
    fields: dict[str, str] = {}
    metadata = row.get("metadata")
    if isinstance(metadata, Mapping):
        fields.update({str(k): _text(v) for k, v in metadata.items()})
    fields.update({str(k): _text(v) for k, v in row.items() if k not in ("messages", "metadata")})
    fields.setdefault("prompt", user_text)
    fields.setdefault("input", user_text)
    return fields


def csv_fields(header: Sequence[str], values: Sequence[str], prompt: str) -> dict[str, str]:
    """A CSV row's template fields: every named column by its header, plus `prompt`/`input` (the
    mapped prompt column) when no column is called that."""
    fields = {name: value for name, value in zip(header, values) if name}
    fields.setdefault("prompt", prompt)
    fields.setdefault("input", prompt)
    return fields


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def completion_text(messages: Sequence[Message]) -> str:
    """The raw prompt of completion mode (see the module docstring): blocks separated by a blank line.

    A system prompt is its own block; each user turn is its text and a newline, followed in the same
    block by the assistant's answer when there is one. The final user turn therefore ends with a
    newline: the model answers on the next line, as every shot did.
    """
    blocks: list[str] = []
    for m in messages:
        if m.role == "assistant" and blocks:
            blocks[-1] += m.content
        elif m.role == "user":
            blocks.append(m.content + "\n")
        else:  # system (or an assistant turn with nothing before it): a block of its own
            blocks.append(m.content)
    return "\n\n".join(blocks)


def apply_template(example: Example, template: PromptTemplate, fields: Mapping[str, str]) -> Example | list[str]:
    """The example with its final user turn replaced by the rendered template, or the missing fields.

    Only the final user turn is the row's question; a chat row's earlier turns stay as written. The
    id stays the one computed from the row as written, so changing a template changes no sample.
    """
    from dataclasses import replace

    from .data import Message

    text = template.render(fields)
    if isinstance(text, list):
        return text
    last = max((i for i, m in enumerate(example.messages) if m.role == "user"), default=len(example.messages))
    messages = example.messages[:last] + (Message("user", text),) + example.messages[last + 1:]
    return replace(example, messages=messages)


def check_prompt_format(value: str, owner: str) -> None:
    if value not in PROMPT_FORMATS:
        raise ConfigError(f"{owner}: prompt_format must be one of {', '.join(map(repr, PROMPT_FORMATS))}, got {value!r}")


__all__ = [
    "ANSWER_FIELDS",
    "PROMPT_FORMATS",
    "PromptFormat",
    "PromptFormatChoice",
    "PromptTemplate",
    "apply_template",
    "check_prompt_format",
    "completion_text",
    "csv_fields",
    "jsonl_fields",
]
