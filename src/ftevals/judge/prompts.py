"""What the judge is asked, and how its answers are read.

The judge sees what a human rater sees in a packet (the rubric's instructions, the request, the
expected answer when the rubric shows it, the response) and answers one question at a time: one
criterion of one response (pointwise), or which of two blinded responses is better (pairwise). One
question per request keeps a weak judge's answer short enough to read.

Reading is strict on purpose: an answer that does not name exactly one verdict is unparseable and
recorded as such; it is never rounded, defaulted or guessed. `retry_messages` asks once more with
a stricter reminder; the retry is a new, deterministic request (same judge, greedy, its own cache key).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Literal

from ..data import Message
from ..packets.rubrics import Criterion, Rubric

#: Part of the judge's identity: changing any wording below changes every verdict's meaning, so a
#: calibration measured with another version is stale. Bump it with every change of wording.
PROMPT_VERSION = "ftevals-judge/1"

#: Longest text (characters) of a request, expected answer or response put into a judge prompt.
#: Longer texts are cut with a marker: a judge's context is finite, and outputs are untrusted.
MAX_TEXT_CHARS = 4000

PairChoice = Literal["A", "B", "tie"]

_SYSTEM = ("You are a careful, impartial evaluator. You follow the rating instructions exactly and "
           "answer in the format asked for, with nothing else.")


def rubric_hash(rubric: Rubric) -> str:
    """A content hash of the rubric as raters and the judge see it (its canonical JSON form)."""
    text = json.dumps(rubric.to_dict(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT_CHARS else text[:MAX_TEXT_CHARS] + " [...cut]"


def _context(rubric: Rubric, request: str, reference: str | None) -> str:
    parts = [rubric.instructions, "", "Request:", "<<<", _cut(request), ">>>"]
    if rubric.show_reference and reference:
        parts += ["", "An example of a good answer (from the data set):", "<<<", _cut(reference), ">>>"]
    return "\n".join(parts)


def _scale_text(rubric: Rubric, criterion: Criterion) -> str:
    return "\n".join(f"{level}: {anchor}" for level, anchor in zip(rubric.levels, criterion.anchors))


def pointwise_messages(rubric: Rubric, criterion: Criterion, request: str, reference: str | None,
                       response: str) -> tuple[Message, ...]:
    """One criterion of one response, answered with one whole number on the rubric's scale."""
    lo, hi = rubric.scale_min, rubric.scale_max
    user = "\n".join([
        _context(rubric, request, reference), "", "Response:", "<<<", _cut(response), ">>>", "",
        f"Criterion: {criterion.label}. {criterion.question}",
        f"Scale from {lo} to {hi}:", _scale_text(rubric, criterion), "",
        f"Answer with one whole number from {lo} to {hi} and nothing else.",
    ])
    return (Message("system", _SYSTEM), Message("user", user))


def pairwise_messages(rubric: Rubric, request: str, reference: str | None, response_a: str,
                      response_b: str) -> tuple[Message, ...]:
    """Two blinded responses (A, B), answered with A, B or (when the rubric allows it) tie."""
    answers = "A, B or tie" if rubric.allow_tie else "A or B"
    user = "\n".join([
        _context(rubric, request, reference), "",
        "Response A:", "<<<", _cut(response_a), ">>>", "",
        "Response B:", "<<<", _cut(response_b), ">>>", "",
        "Criteria: " + "; ".join(f"{c.label}: {c.question}" for c in rubric.criteria), "",
        f"Overall, which response is better? Answer with exactly one of {answers} and nothing else.",
    ])
    return (Message("system", _SYSTEM), Message("user", user))


def retry_messages(first: tuple[Message, ...], answer: str, rubric: Rubric, *, pairwise: bool) -> tuple[Message, ...]:
    """The same question once more, after the unreadable answer, with a stricter reminder."""
    if pairwise:
        allowed = "A, B or tie" if rubric.allow_tie else "A or B"
        reminder = f"Your answer could not be read. Reply with only one of {allowed}: a single word, nothing else."
    else:
        reminder = (f"Your answer could not be read. Reply with only one whole number from {rubric.scale_min} "
                    f"to {rubric.scale_max}, for example {rubric.scale_min + (rubric.scale_max - rubric.scale_min) // 2}, "
                    "and nothing else.")
    return (*first, Message("assistant", answer), Message("user", reminder))


# ---------------------------------------------------------------------------------------------
# reading answers

_WHOLE_NUMBER = re.compile(r"(?<!\d)\d+(?!\d)")
_LABEL = r"(?:score|rating|answer|verdict|grade)"


def parse_score(text: str, lo: int, hi: int) -> int | None:
    """The score in a pointwise answer, or None when it does not name exactly one.

    Accepted: a bare number (`4`, `4.`, `**4**`, `Score: 4`), `4/5` or `4 out of 5` (the scale's
    maximum after the slash), or a sentence holding exactly one whole number on the scale. Two
    different numbers on the scale, a fraction (`3.5`) or nothing on the scale: None.
    """
    t = text.strip()
    t = re.sub(rf"(\d+)\s*(?:/|out of)\s*{hi}(?!\d)", r"\1", t, flags=re.IGNORECASE)
    if re.search(r"\d\.\d", t):
        return None  # a fraction is not on an integer scale, and rounding it would be a guess
    bare = re.fullmatch(rf"[\W_]*(?:{_LABEL}\s*[:=]?\s*)?[\W_]*(\d+)[\W_]*", t, flags=re.IGNORECASE)
    if bare:
        value = int(bare.group(1))
        return value if lo <= value <= hi else None
    on_scale = {int(n) for n in _WHOLE_NUMBER.findall(t) if lo <= int(n) <= hi}
    return on_scale.pop() if len(on_scale) == 1 else None


def parse_preference(text: str, *, allow_tie: bool = True) -> PairChoice | None:
    """The verdict in a pairwise answer: "A", "B", "tie", or None when it names not exactly one.

    Accepted: the bare verdict (`A`, `(B)`, `Tie.`, `[[A]]`, `Answer: B`), or a sentence naming
    exactly one of `Response A`, `Response B` (or `A`/`B` in brackets) and `tie`. A capital A alone
    inside a sentence is not read as a verdict (it is the article far more often than not).
    """
    t = text.strip()
    bare = re.fullmatch(rf"[\W_]*(?:{_LABEL}\s*[:=]?\s*)?(?:response\s+)?[\W_]*(A|B|tie)[\W_]*", t, flags=re.IGNORECASE)
    found: set[str] = set()
    if bare:
        found.add(bare.group(1).upper() if bare.group(1).lower() != "tie" else "tie")
    else:
        found |= {m.upper() for m in re.findall(r"\bresponse\s+([AB])\b", t, flags=re.IGNORECASE)}
        found |= {m for m in re.findall(r"[\[(]\s*([AB])\s*[\])]", t)}
        if re.search(r"\b(?:tie|equally good|both equally)\b", t, flags=re.IGNORECASE):
            found.add("tie")
    if len(found) != 1:
        return None
    choice = found.pop()
    if choice == "tie" and not allow_tie:
        return None
    return choice  # type: ignore[return-value]


__all__ = ["MAX_TEXT_CHARS", "PROMPT_VERSION", "PairChoice", "pairwise_messages", "parse_preference", "parse_score",
           "pointwise_messages", "retry_messages", "rubric_hash"]
