"""Word-level diff between the reference model's output and another model's output.

The report shows each non-reference output once, as a diff against the reference output: words only
the model wrote are insertions, words only the reference wrote are deletions. Dropping the deletions
gives back the model's output exactly (spacing included), so one rendering serves both as "the output"
and as "what changed", which keeps big reports small.
"""

from __future__ import annotations

import difflib
import re
from typing import Literal

Op = Literal["=", "+", "-"]
Segment = tuple[Op, str]

# A word plus the whitespace that follows it: the whitespace is kept for display, not compared.
_TOKEN = re.compile(r"\S+\s*")
_LEADING_SPACE = re.compile(r"\s*")

#: Beyond this many words on both sides the diff is not worth its cost (SequenceMatcher is quadratic in
#: the worst case); the output is then shown as one replacement.
MAX_WORDS = 4000


def _tokens(text: str) -> tuple[str, list[str]]:
    lead = _LEADING_SPACE.match(text)
    prefix = lead.group(0) if lead else ""
    return prefix, _TOKEN.findall(text, len(prefix))


def word_diff(reference: str, output: str) -> list[Segment]:
    """Segments ("=" same, "+" only in `output`, "-" only in `reference`), adjacent ones merged."""
    ref_prefix, ref_tokens = _tokens(reference)
    out_prefix, out_tokens = _tokens(output)
    segments: list[Segment] = []
    if out_prefix:
        segments.append(("=", out_prefix))
    if len(ref_tokens) > MAX_WORDS and len(out_tokens) > MAX_WORDS:
        _push(segments, "-", _spaced(segments, "".join(ref_tokens)))
        _push(segments, "+", "".join(out_tokens))
        return segments
    ref_words = [t.rstrip() for t in ref_tokens]
    out_words = [t.rstrip() for t in out_tokens]
    matcher = difflib.SequenceMatcher(None, ref_words, out_words, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            _push(segments, "=", "".join(out_tokens[j1:j2]))
            continue
        if tag in ("delete", "replace"):
            _push(segments, "-", _spaced(segments, "".join(ref_tokens[i1:i2])))
        if tag in ("insert", "replace"):
            _push(segments, "+", "".join(out_tokens[j1:j2]))
    return segments


def _spaced(segments: list[Segment], deleted: str) -> str:
    # Deleted words are only ever seen in the diff view; pad them so they do not glue onto neighbours.
    # The padding lives inside the deletion, so the output text itself stays exact.
    if segments and not segments[-1][1][-1:].isspace():
        deleted = " " + deleted
    return deleted if deleted[-1:].isspace() else deleted + " "


def _push(segments: list[Segment], op: Op, text: str) -> None:
    if not text:
        return
    if segments and segments[-1][0] == op:
        segments[-1] = (op, segments[-1][1] + text)
    else:
        segments.append((op, text))


def changed_words(segments: list[Segment]) -> int:
    """How many words were inserted or deleted: 0 means the outputs agree word for word."""
    return sum(len(text.split()) for op, text in segments if op != "=")


__all__ = ["MAX_WORDS", "Segment", "changed_words", "word_diff"]
