"""Reading a weak judge's answers: exactly one verdict, or unparseable; never a guess."""

from __future__ import annotations

import pytest

from ftevals.judge.prompts import pairwise_messages, parse_preference, parse_score, pointwise_messages, retry_messages
from ftevals.packets.rubrics import default_rubric


@pytest.mark.parametrize(("text", "expected"), [
    ("4", 4), (" 4.\n", 4), ("**5**", 5), ("Score: 2", 2), ("rating=3", 3), ("4/5", 4), ("4 out of 5", 4),
    ("I would give it a 3 because it is fine.", 3),
])
def test_a_score_that_names_one_value_on_the_scale_is_read(text: str, expected: int) -> None:
    assert parse_score(text, 1, 5) == expected


@pytest.mark.parametrize("text", [
    "", "good", "3 or 4", "3.5", "between 3 and 4", "0", "6", "Score: 7", "1. The response 2. is good",
    "I'd say 4, maybe 2",
])
def test_an_answer_without_exactly_one_score_is_unparseable(text: str) -> None:
    assert parse_score(text, 1, 5) is None


@pytest.mark.parametrize(("text", "expected"), [
    ("A", "A"), ("b", "B"), ("(B)", "B"), ("[[A]]", "A"), ("Tie.", "tie"), ("Answer: B", "B"), ("Response A", "A"),
    ("Response B is better because it is shorter.", "B"), ("They are equally good: tie", "tie"),
])
def test_a_preference_that_names_one_verdict_is_read(text: str, expected: str) -> None:
    assert parse_preference(text) == expected


@pytest.mark.parametrize("text", [
    "", "A good answer is hard to find.", "Response A and Response B both help.", "Both have merits.", "A or B",
    "Response A, but it is a tie",
])
def test_a_preference_without_exactly_one_verdict_is_unparseable(text: str) -> None:
    assert parse_preference(text) is None


def test_a_tie_is_unparseable_when_the_rubric_forbids_ties() -> None:
    assert parse_preference("tie", allow_tie=False) is None
    assert parse_preference("A", allow_tie=False) == "A"


def test_prompts_show_the_rubric_and_the_blinded_responses_only() -> None:
    rubric = default_rubric("custom")
    crit = rubric.criteria[1]
    (system, user) = pointwise_messages(rubric, crit, "What is 2+2?", "4", "It is 4.")
    assert system.role == "system" and user.role == "user"
    assert crit.question in user.content and all(a in user.content for a in crit.anchors)
    assert "It is 4." in user.content and "one whole number from 1 to 5" in user.content
    (_, pair) = pairwise_messages(rubric, "What is 2+2?", "4", "first text", "second text")
    assert pair.content.index("Response A:") < pair.content.index("first text") < pair.content.index("Response B:")
    assert "base" not in pair.content.split("Response A:")[1]  # no model name reaches the judge
    again = retry_messages((system, user), "good", rubric, pairwise=False)
    assert [m.role for m in again] == ["system", "user", "assistant", "user"] and "could not be read" in again[-1].content
