"""Format adherence, slot extraction and GSM8K answer metrics, hand-checked and on the shipped data."""

from __future__ import annotations

import json
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ftevals.errors import ConfigError
from ftevals.metrics import get_metric
from ftevals.metrics.format import OTHER_FIELDS, extract_number, normalize_value, parse_json


@pytest.mark.parametrize(
    ("text", "strict", "lenient"),
    [
        ('{"a": 1}', True, True),
        ('  [1, 2]\n', True, True),
        ("null", True, True),
        ('```json\n{"a": 1}\n```', False, True),
        ('```\n{"a": 1}\n```\n', False, True),
        ("```true```", False, True),
        ('Sure! {"a": 1}', False, False),
        ('```json\n{"a": 1}\n``` Hope this helps', False, False),
        ('{"a": NaN}', False, False),
        ('{"a": 1,}', False, False),
        ("", False, False),
    ],
)
def test_parse_json_strict_and_lenient(text, strict, lenient):
    assert parse_json(text)[0] is strict
    assert parse_json(text, lenient=True)[0] is lenient


def test_json_valid_details_list_ids(make_examples):
    examples = make_examples(["x"] * 3)
    scored = get_metric("json_valid")(['{"a": 1}', "nope", '```json\n{}\n```'], examples)
    assert scored.per_example.tolist() == [1.0, 0.0, 0.0]
    assert scored.details == {"error_kinds": {"not_json": 2}, "examples": {"not_json": ["ex-1", "ex-2"]}}
    assert get_metric("json_valid")(['{"a": 1}', "nope", '```json\n{}\n```'], examples, lenient=True).value == pytest.approx(2 / 3)


SLOT_SCHEMA = {
    "type": "object",
    "properties": {"time": {"type": "string"}},
    "required": ["time"],
}


def test_schema_valid_error_kinds(make_examples):
    examples = make_examples(["x"] * 4)
    scored = get_metric("schema_valid")(['{"time": "13"}', "{}", '{"time": 13}', "time: 13"], examples, schema=SLOT_SCHEMA)
    assert scored.per_example.tolist() == [1.0, 0.0, 0.0, 0.0]
    assert scored.details["error_kinds"] == {"not_json": 1, "schema": 2}
    assert scored.details["examples"] == {"schema": ["ex-1", "ex-2"], "not_json": ["ex-3"]}
    assert scored.details["schema_errors"] == {"required": 1, "type": 1}


def test_schema_valid_default_and_bad_schemas(make_examples):
    examples = make_examples(["x"] * 2)
    assert get_metric("schema_valid")(["{}", "[1]"], examples).per_example.tolist() == [1.0, 0.0]
    with pytest.raises(ConfigError, match="not a valid JSON Schema"):
        get_metric("schema_valid")(["{}", "{}"], examples, schema={"type": 12})
    with pytest.raises(ConfigError, match="must be a JSON Schema object"):
        get_metric("schema_valid")(["{}", "{}"], examples, schema='{"type": "object"}')


def test_required_keys(make_examples):
    examples = make_examples(["x"] * 4)
    preds = ['{"time": "1", "people": "2", "extra": 0}', '{"time": "1"}', "[1]", "x"]
    scored = get_metric("required_keys")(preds, examples, keys=["time", "people"])
    assert scored.per_example.tolist() == [1.0, 0.0, 0.0, 0.0]
    assert scored.details["error_kinds"] == {"not_json": 1, "not_object": 1, "missing_keys": 1}
    assert scored.details["missing"] == {"time": 0, "people": 1}
    with pytest.raises(ConfigError, match="needs 'keys'"):
        get_metric("required_keys")(preds, examples)
    with pytest.raises(ConfigError, match="needs 'keys'"):
        get_metric("required_keys")(preds, examples, keys="time")


def test_regex_match(make_examples):
    examples = make_examples(["x"] * 3)
    preds = ["2024-01-31\n", "Date: 2024-01-31", "2024-1-31"]
    pattern = r"\d{4}-\d{2}-\d{2}"
    assert get_metric("regex_match")(preds, examples, pattern=pattern).per_example.tolist() == [1.0, 0.0, 0.0]
    assert get_metric("regex_match")(preds, examples, pattern=pattern, strip=False).value == 0.0
    assert get_metric("regex_match")(["YES", "no", "Yes."], examples, pattern="yes", ignore_case=True).value == pytest.approx(1 / 3)
    with pytest.raises(ConfigError, match="bad pattern"):
        get_metric("regex_match")(preds, examples, pattern="(")
    with pytest.raises(ConfigError, match="needs 'pattern'"):
        get_metric("regex_match")(preds, examples)


def test_length_ok(make_examples):
    examples = make_examples(["x"] * 4)
    scored = get_metric("length_ok")(["ab", "abc", "  abc  \n", "abcdefghijk"], examples, min_chars=3, max_chars=10)
    assert scored.per_example.tolist() == [0.0, 1.0, 1.0, 0.0]
    assert scored.details["error_kinds"] == {"too_short": 1, "too_long": 1, "too_few_words": 0, "too_many_words": 0}
    words = get_metric("length_ok")(["one two", "one two three", "", "x"], examples, min_words=1, max_words=2)
    assert words.per_example.tolist() == [1.0, 0.0, 0.0, 1.0]
    with pytest.raises(ConfigError, match="needs at least one of"):
        get_metric("length_ok")(["a"] * 4, examples)
    with pytest.raises(ConfigError, match="max_words must be a non-negative integer"):
        get_metric("length_ok")(["a"] * 4, examples, max_words=-1)


@pytest.fixture
def slots(make_examples):
    golds = [
        {"time": "13"},
        {"people": "2", "date": "Friday"},
        {},
        {},
        {"first_name": "Ann"},
        {"time": "7pm"},
    ]
    preds = [
        '{"time": " 13 "}',
        '{"people": "2", "date": "saturday"}',
        "{}",
        "not json",
        '{"first_name": "ANN", "last_name": "Lee", "foo": "bar"}',
        '["7pm"]',
    ]
    return preds, make_examples([json.dumps(g) for g in golds], [{"slots": g} for g in golds])


def test_field_f1_hand_checked(slots):
    preds, examples = slots
    scored = get_metric("field_f1")(preds, examples)
    # tp 3 (time, people, first_name); fp 3 (date, last_name, foo); fn 2 (date, 7pm).
    assert scored.value == pytest.approx(6 / 11)
    np.testing.assert_allclose(scored.per_example, [1.0, 0.5, 1.0, 0.0, 0.5, 0.0])
    details = scored.details
    assert details["counts"] == {"tp": 3, "fp": 3, "fn": 2}
    assert details["error_kinds"] == {"not_json": 1, "not_object": 1}
    assert details["examples"] == {"not_json": ["ex-3"], "not_object": ["ex-5"]}
    assert details["per_field"]["time"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert details["per_field"]["date"]["f1"] == 0.0
    # Keys that no gold object has are pooled.
    assert details["per_field"][OTHER_FIELDS] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert "last_name" not in details["per_field"]


def test_field_exact(slots):
    preds, examples = slots
    scored = get_metric("field_exact")(preds, examples)
    assert scored.per_example.tolist() == [1.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    assert scored.details["error_kinds"] == {"not_object": 2, "mismatch": 2}


def test_null_and_empty_values_are_absent(make_examples):
    examples = make_examples(['{"time": "13"}'])  # no metadata: the reference is the gold object
    pred = ['{"time": "13", "date": null, "people": "  "}']
    assert get_metric("field_exact")(pred, examples).value == 1.0
    assert get_metric("field_f1")(pred, examples).value == 1.0
    assert normalize_value("  Friday   the 13th ") == "friday the 13th"
    assert normalize_value(4) == "4"


def test_field_f1_without_any_pairs_is_the_share_of_valid_empty_answers(make_examples):
    examples = make_examples(["{}"] * 3)
    assert get_metric("field_f1")(["{}", "{}", "{}"], examples).value == 1.0
    scored = get_metric("field_f1")(["{}", "oops", "[]"], examples)
    assert scored.value == pytest.approx(1 / 3)
    assert scored.on(np.array([1, 2, 2])) == 0.0


def test_extraction_needs_a_gold_object(make_examples):
    with pytest.raises(ConfigError, match="'ex-0' has no metadata 'slots'"):
        get_metric("field_f1")(["{}"], make_examples(["not an object"]))


GOLD_OBJECTS = st.dictionaries(st.sampled_from(["time", "date", "people"]), st.sampled_from(["1", "2"]), max_size=3)
PREDICTIONS = st.one_of(GOLD_OBJECTS.map(json.dumps), st.sampled_from(["oops", "[]", '{"name": "x"}']))


@settings(max_examples=80, deadline=None)
@given(data=st.data(), n=st.integers(1, 12))
def test_field_f1_aggregate_equals_rescoring_the_subset(make_examples, data, n):
    golds = data.draw(st.lists(GOLD_OBJECTS, min_size=n, max_size=n))
    preds = data.draw(st.lists(PREDICTIONS, min_size=n, max_size=n))
    idx = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=2 * n))
    examples = make_examples(["{}"] * n, [{"slots": g} for g in golds])
    scored = get_metric("field_f1")(preds, examples)
    subset = get_metric("field_f1")([preds[i] for i in idx], [examples[i] for i in idx])
    assert scored.on(np.array(idx)) == pytest.approx(subset.value, abs=1e-12)


def test_restaurant8k_references_score_perfectly_and_perturbations_do_not(restaurant8k_test):
    examples = restaurant8k_test[:400]
    refs = [ex.reference for ex in examples]
    for name in ("field_f1", "field_exact", "json_valid", "schema_valid"):
        assert get_metric(name)(refs, examples).value == 1.0
    shouted = [r.upper() for r in refs]  # keys and values are compared case-insensitively
    assert get_metric("field_f1")(shouted, examples).value == 1.0
    fenced = [f"```json\n{r}\n```" for r in refs]
    assert get_metric("field_f1")(fenced, examples).value == 0.0
    assert get_metric("field_f1")(fenced, examples, lenient=True).value == 1.0
    empty = ["{}"] * len(examples)
    scored = get_metric("field_f1")(empty, examples)
    assert scored.value == 0.0
    n_empty_gold = sum(1 for ex in examples if not ex.metadata["slots"])
    assert 0 < n_empty_gold < len(examples)
    assert scored.per_example.sum() == n_empty_gold
    assert set(scored.details["per_field"]) == {"date", "first_name", "last_name", "people", "time"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("She makes 9 * 2 = $18 every day.\n#### 18", Decimal(18)),
        ("The answer is $1,250.50.", Decimal("1250.50")),
        ("#### 18.00", Decimal(18)),
        ("I think 17, no, 18", Decimal(18)),
        ("#### 17\nActually 18", Decimal(17)),
        ("It drops to -3 degrees", Decimal(-3)),
        ("####", None),
        ("no idea", None),
    ],
)
def test_extract_number(text, expected):
    assert extract_number(text) == expected


def test_gsm8k_answer(make_examples, gsm8k_test):
    examples = make_examples(["x"] * 4, [{"answer": "18"}, {"answer": "1,250.5"}, {"answer": "-3"}, {"answer": "7"}])
    scored = get_metric("gsm8k_answer")(["#### 18.0", "$1,250.50", "so -3", "unsure"], examples)
    assert scored.per_example.tolist() == [1.0, 1.0, 1.0, 0.0]
    assert scored.details["error_kinds"] == {"no_number": 1, "wrong": 0}
    refs = [ex.reference for ex in gsm8k_test]
    assert get_metric("gsm8k_answer")(refs, gsm8k_test).value == 1.0
    assert get_metric("gsm8k_answer")(refs[1:] + refs[:1], gsm8k_test).value < 0.05
    with pytest.raises(ConfigError, match="numeric metadata 'answer'"):
        get_metric("gsm8k_answer")(["1"], make_examples(["1"]))
