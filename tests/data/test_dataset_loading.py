"""Loading every supported layout, and every validation message exactly as a user reads it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from datafiles import chat, jsonl

from ftevals.data import MAX_ROW_BYTES, Message, find_duplicates, load_dataset
from ftevals.errors import ConfigError, DatasetError

Write = Callable[[str, "str | bytes"], Path]


def problems_of(path: Path, **kwargs: Any) -> list[str]:
    with pytest.raises(DatasetError) as info:
        load_dataset(path, **kwargs)
    assert info.value.path == str(path)
    return [str(p) for p in info.value.problems]


# ---------------------------------------------------------------------------------------------
# formats


def test_chat_jsonl_final_assistant_turn_is_the_reference(write: Write) -> None:
    row = {
        "id": "t1",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Where is my card?"},
            {"role": "assistant", "content": "card_arrival"},
        ],
        "metadata": {"label": "card_arrival", "source": "app"},
    }
    path = write("chat.jsonl", jsonl(row))
    ds = load_dataset(path)
    (ex,) = ds.examples
    assert ex.id == "t1"
    assert ex.messages == (
        Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello!"),
        Message("user", "Where is my card?"),
    )
    assert ex.reference == "card_arrival"
    assert ex.user_text == "Where is my card?"
    assert ex.label == "card_arrival"
    assert dict(ex.metadata) == {"label": "card_arrival", "source": "app"}
    assert ex.source == f"{path}:1"
    assert ds.name == "chat" and ds.path == str(path)


def test_prompt_jsonl_with_system_prompt_and_metadata(write: Write) -> None:
    path = write("p.jsonl", jsonl({"id": 7, "prompt": "2+2?", "reference": "4", "metadata": {"answer": "4"}}))
    (ex,) = load_dataset(path, system_prompt="Answer with a number.").examples
    assert ex.id == "7"  # whole-number ids are accepted and read as text
    assert ex.messages == (Message("system", "Answer with a number."), Message("user", "2+2?"))
    assert ex.reference == "4" and ex.label == "4" and ex.metadata == {"answer": "4"}


def test_csv_with_column_mapping_id_and_label(write: Write) -> None:
    text = (
        "ref,utterance,intent,note\r\n"
        'a-1,"Hello, where is my card?",card_arrival,x\r\n'
        'a-2,"Two\nlines",lost_or_stolen_card,y\r\n'
    )
    path = write("b.csv", text)
    ds = load_dataset(path, columns={"prompt": "utterance", "reference": "intent", "id": "ref", "label": "intent"})
    assert [e.id for e in ds] == ["a-1", "a-2"]
    assert [e.user_text for e in ds] == ["Hello, where is my card?", "Two\nlines"]
    assert [e.label for e in ds] == ["card_arrival", "lost_or_stolen_card"]
    assert ds.examples[1].metadata == {"label": "lost_or_stolen_card"}
    assert [e.source for e in ds] == [f"{path}:2", f"{path}:3"]


def test_csv_default_columns_use_an_id_column_when_present(write: Write) -> None:
    path = write("d.csv", "\ufeffid,prompt,reference\nx9,hi,greeting\n")  # with a byte-order mark
    (ex,) = load_dataset(path).examples
    assert (ex.id, ex.user_text, ex.reference) == ("x9", "hi", "greeting")


def test_rows_without_ids_get_content_ids_that_survive_reordering(write: Write) -> None:
    rows = [{"prompt": f"question {i}", "reference": str(i)} for i in range(5)]
    a = load_dataset(write("q.jsonl", jsonl(*rows)))
    b = load_dataset(write("other/q.jsonl", jsonl(*reversed(rows))))
    assert {e.id: e.reference for e in a} == {e.id: e.reference for e in b}
    assert all(e.id.startswith("q-") for e in a)
    assert a.fingerprint == b.fingerprint


def test_identical_rows_without_ids_are_numbered_and_listed_as_duplicates(write: Write) -> None:
    row = {"prompt": "same", "reference": "x"}
    ds = load_dataset(write("dup.jsonl", jsonl(row, {"prompt": "other", "reference": "y"}, row)))
    ids = [e.id for e in ds]
    assert ids[2] == ids[0] + "-2"
    assert find_duplicates(ds) == [(ids[0], ids[2])]


def test_a_json_line_separator_inside_a_string_does_not_split_the_row(write: Write) -> None:
    # json.dumps(ensure_ascii=False) writes U+2028 raw; str.splitlines() would cut the row there.
    text = jsonl({"id": "a", "prompt": "one\u2028two", "reference": "x"}, '{"id": "b", "prompt": ""}')
    assert problems_of(write("ls.jsonl", text)) == [
        f"{write('ls.jsonl', text)}:2: \"prompt\" is missing or empty; expected a non-empty string"
    ]
    ok = load_dataset(write("ok.jsonl", jsonl({"id": "a", "prompt": "one\u2028two", "reference": "x"})))
    assert ok.examples[0].user_text == "one\u2028two"


def test_crlf_jsonl_and_blank_lines_keep_line_numbers(write: Write) -> None:
    text = jsonl(chat("a", "x", id="1")).replace("\n", "\r\n") + "\r\n\r\n" + '{"id": "3"}\r\n'
    path = write("crlf.jsonl", text)
    assert problems_of(path) == [
        f'{path}:4: row has neither "messages" nor "prompt"/"reference"; expected one of those layouts'
    ]


# ---------------------------------------------------------------------------------------------
# every row-level message, exactly

ROW_CASES: list[tuple[str, Any, str]] = [
    ("bad-json", '{"prompt": "hi", "reference": ', "bad JSON (Expecting value at column 31); expected one JSON object per line"),
    ("not-an-object", '["hi", "x"]', "expected a JSON object, got list"),
    ("no-layout", {"text": "hi", "label": "x"}, 'row has neither "messages" nor "prompt"/"reference"; expected one of those layouts'),
    ("missing-reference", {"prompt": "hi"}, '"reference" is missing or empty; expected a non-empty string'),
    ("blank-prompt", {"prompt": "  ", "reference": "x"}, '"prompt" is missing or empty; expected a non-empty string'),
    ("metadata-not-object", {"prompt": "hi", "reference": "x", "metadata": ["x"]}, '"metadata" must be a JSON object, got an array'),
    ("bad-id", {"id": "", "prompt": "hi", "reference": "x"}, "\"id\" must be a non-empty string or a whole number, got ''"),
    ("messages-not-list", {"messages": "hi"}, '"messages" must be a non-empty list of {"role", "content"} objects'),
    ("message-not-object", {"messages": [{"role": "user", "content": "hi"}, "x"]},
     '"messages"[1] must be an object with string "role" and "content"'),
    ("unknown-role", {"messages": [{"role": "bot", "content": "hi"}, {"role": "assistant", "content": "x"}]},
     "\"messages\"[0] has unknown role 'bot'; expected one of system, user, assistant"),
    ("no-final-assistant", {"messages": [{"role": "user", "content": "hi"}]},
     "\"messages\" must end with an assistant turn (the reference), got role 'user'"),
    ("wrong-role-order", {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                                       {"role": "assistant", "content": "x"}]},
     "wrong role order: turn 1 is 'user' but 'assistant' was expected (optional system first, then user and "
     "assistant alternating, ending with assistant)"),
    ("late-system", {"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"},
                                  {"role": "assistant", "content": "x"}]},
     "wrong role order: turn 1 is 'system' but 'assistant' was expected (optional system first, then user and "
     "assistant alternating, ending with assistant)"),
    ("empty-reference", chat("hi", " "), "the final assistant turn (the reference) is empty; expected the reference answer"),
    ("empty-user", chat("", "x"), "the user turn is empty; expected the input text"),
]


@pytest.mark.parametrize(("case", "row", "message"), ROW_CASES, ids=[c[0] for c in ROW_CASES])
def test_each_bad_row_is_reported_with_file_line_and_expectation(write: Write, case: str, row: Any, message: str) -> None:
    # The bad row sits on line 3, after a good row and a blank line: the number must still be right.
    path = write(f"{case}.jsonl", jsonl(chat("fine", "x", id="ok"), "", row))
    assert problems_of(path) == [f"{path}:3: {message}"]


def test_every_bad_row_is_listed_in_line_order_not_just_the_first(write: Write) -> None:
    path = write("many.jsonl", jsonl(chat("a", "x", id="1", label="x"), "{oops", chat("a", "y", id="1", label="y"), "[]"))
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    assert str(info.value) == "\n".join([
        "dataset is invalid: 4 problems",
        f"  {path}:2: bad JSON (Expecting property name enclosed in double quotes at column 2); expected one JSON object per line",
        f"  {path}:3: duplicate id '1' (first seen on line 1); ids must be unique",
        f"  {path}:3: conflicting labels for the same input: 'y' here, 'x' on line 1; expected one label per input "
        "(fix or drop one of the rows)",
        f"  {path}:4: expected a JSON object, got list",
    ])


def test_a_long_problem_list_is_cut_after_fifty_lines(write: Write) -> None:
    path = write("bad.jsonl", "[]\n" * 60)
    text = str(pytest.raises(DatasetError, load_dataset, path).value)
    assert text.startswith("dataset is invalid: 60 problems\n")
    assert text.endswith("... and 10 more problems")
    assert len(text.splitlines()) == 1 + 50 + 1


# ---------------------------------------------------------------------------------------------
# file-level problems


def test_empty_and_whitespace_only_files(write: Write) -> None:
    for name, content in (("e.jsonl", ""), ("w.jsonl", " \n\n\t\n"), ("e.csv", "")):
        path = write(name, content)
        assert problems_of(path) == [f"{path}: file is empty; expected at least one example"]


def test_csv_with_only_a_header_has_no_rows(write: Write) -> None:
    path = write("h.csv", "prompt,reference\n")
    assert problems_of(path) == [f"{path}: file has no rows; expected at least one example"]


def test_non_utf8_names_the_line_and_the_byte(write: Write) -> None:
    good = jsonl(chat("a", "x", id="1"), chat("b", "y", id="2")).encode()
    path = write("latin1.jsonl", good + '{"prompt": "caf'.encode() + b"\xe9" + b'", "reference": "x"}\n')
    assert problems_of(path) == [f"{path}:3: not valid UTF-8 (byte 0xe9); re-save the file as UTF-8"]
    csv_path = write("latin1.csv", b"prompt,reference\nok,x\n\nna\xefve,y\n")
    assert problems_of(csv_path) == [f"{csv_path}:4: not valid UTF-8 (byte 0xef); re-save the file as UTF-8"]


def test_missing_file_and_unknown_format(write: Write, tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    assert problems_of(missing) == [
        f"{missing}: file not found; expected a .jsonl or .csv dataset (check the path in the suite)"
    ]
    path = write("x.jsonl", jsonl(chat("a", "x")))
    assert problems_of(path, format="parquet") == [
        f"{path}: unknown dataset format 'parquet'; expected 'chat', 'prompt', 'jsonl' or 'csv'"
    ]


# ---------------------------------------------------------------------------------------------
# the 1 MB row limit


def _row_of_size(size: int) -> str:
    """A valid prompt row of exactly `size` bytes (UTF-8)."""
    bare = json.dumps({"prompt": "", "reference": "x"})
    return json.dumps({"prompt": "p" * (size - len(bare)), "reference": "x"})


def test_row_size_limit_is_one_megabyte_inclusive(write: Write) -> None:
    at_limit = _row_of_size(MAX_ROW_BYTES)
    over = _row_of_size(MAX_ROW_BYTES + 1)
    assert len(at_limit.encode()) == MAX_ROW_BYTES == 1_000_000
    assert len(load_dataset(write("ok.jsonl", at_limit + "\n"))) == 1
    path = write("big.jsonl", jsonl(chat("a", "x", id="1"), over))
    assert problems_of(path) == [
        f"{path}:2: row is 1,000,001 bytes, over the 1,000,000-byte limit; expected a smaller row (is it a broken export?)"
    ]


def test_row_size_limit_applies_to_csv(write: Write) -> None:
    big = write("big.csv", "prompt,reference\nok,x\n" + "a," + "é" * 600_000 + "\n")
    assert problems_of(big) == [
        f"{big}:3: row is 1,200,001 bytes, over the 1,000,000-byte limit; expected a smaller row (is it a broken export?)"
    ]
    # A value larger than the csv module's own 128 KiB default is fine when under our limit.
    assert len(load_dataset(write("wide.csv", "prompt,reference\n" + "a" * 300_000 + ",x\n"))) == 1


# ---------------------------------------------------------------------------------------------
# CSV-specific problems


def test_csv_missing_mapped_column(write: Write) -> None:
    path = write("m.csv", "text,category\nhi,greeting\n")
    assert problems_of(path) == [
        f"{path}:1: CSV header ['text', 'category'] lacks the mapped column(s) prompt -> 'prompt', reference -> "
        "'reference'; expected those columns, or a mapping such as columns={'prompt': 'text', 'reference': 'category'}"
    ]
    assert problems_of(path, columns={"prompt": "text", "reference": "category", "id": "uid"}) == [
        f"{path}:1: CSV header ['text', 'category'] lacks the mapped column(s) id -> 'uid'; expected those columns, "
        "or a mapping such as columns={'prompt': 'text', 'reference': 'category'}"
    ]


def test_csv_row_problems(write: Write) -> None:
    path = write("r.csv", 'id,prompt,reference\n1,hi,x\n2,"a, b",\n3,unquoted, comma,y\n,no id,z\n')
    assert problems_of(path) == [
        f"{path}:3: column 'reference' (reference) is empty; expected a value",
        f"{path}:4: row has 4 fields but the header has 3; expected one value per column (quote values that contain commas)",
        f"{path}:5: column 'id' (id) is empty; expected a value",
    ]


def test_csv_broken_quoting_is_reported_not_swallowed(write: Write) -> None:
    path = write("q.csv", 'prompt,reference\nok,x\n"never closed,y\nmore,z\n')
    assert problems_of(path) == [
        f"{path}:3: unreadable CSV (unexpected end of data); expected RFC 4180 CSV; the rest of the file was not read"
    ]


def test_csv_unknown_mapping_key_is_a_config_error(write: Write) -> None:
    path = write("k.csv", "text,category\nhi,x\n")
    with pytest.raises(ConfigError, match=r"unknown CSV column mapping key\(s\) 'answer'; expected some of prompt, reference, id, label"):
        load_dataset(path, columns={"prompt": "text", "answer": "category"})


# ---------------------------------------------------------------------------------------------
# duplicates, conflicts and label sets


def test_duplicate_ids_are_errors(write: Write) -> None:
    path = write("ids.jsonl", jsonl(chat("a", "x", id="same"), chat("b", "y", id="other"), chat("c", "z", id="same")))
    assert problems_of(path) == [f"{path}:3: duplicate id 'same' (first seen on line 1); ids must be unique"]


def test_conflicting_labels_compare_normalised_inputs(write: Write) -> None:
    path = write("c.jsonl", jsonl(
        chat("Has my top up gone through?", "pending_top_up", id="1", label="pending_top_up"),
        chat("has my TOP-UP gone through", "top_up_reverted", id="2", label="top_up_reverted"),
        chat("HAS MY TOP UP GONE THROUGH!!", "pending_top_up", id="3", label="pending_top_up"),  # agrees: fine
    ))
    assert problems_of(path) == [
        f"{path}:2: conflicting labels for the same input: 'top_up_reverted' here, 'pending_top_up' on line 1; "
        "expected one label per input (fix or drop one of the rows)"
    ]


def test_same_input_with_different_references_is_fine_without_labels(write: Write) -> None:
    # Generation data: one dialogue, two acceptable summaries. Listed as duplicates, never refused.
    path = write("g.jsonl", jsonl(chat("dialogue", "summary one", id="1", system=None),
                                  chat("dialogue", "summary two", id="2", system=None)))
    ds = load_dataset(path)
    assert len(ds) == 2
    assert find_duplicates(ds) == [("1", "2")]


def test_full_width_and_punctuation_variants_are_the_same_input(write: Write) -> None:
    path = write("u.jsonl", jsonl(chat("ＣＡＲＤ arrived?", "a", id="1", label="a"), chat("card  arrived", "b", id="2", label="b")))
    assert [p.split(": ", 1)[1][:31] for p in problems_of(path)] == ["conflicting labels for the same"]


def test_labels_outside_the_declared_set(write: Write) -> None:
    labels = ["card_arrival", "card_linking", "exchange_rate"]
    path = write("l.jsonl", jsonl(chat("a", "card_arival", id="1"), chat("b", "card_linking", id="2"),
                                  chat("c", "x", id="3", label="refund")))
    assert problems_of(path, labels=labels) == [
        f"{path}:1: label 'card_arival' is not in the declared label set (3 labels); did you mean 'card_arrival'?",
        f"{path}:3: label 'refund' is not in the declared label set (3 labels)",
    ]
    csv_path = write("l.csv", "text,intent\nhello,greet\n")
    assert problems_of(csv_path, labels=labels, columns={"prompt": "text", "reference": "intent", "label": "intent"}) == [
        f"{csv_path}:2: label 'greet' is not in the declared label set (3 labels)"
    ]


def test_problems_are_datasets_errors_that_are_also_value_errors(write: Write) -> None:
    path = write("v.jsonl", "[]\n")
    with pytest.raises(ValueError):
        load_dataset(path)
    err = pytest.raises(DatasetError, load_dataset, path).value
    assert (err.problems[0].path, err.problems[0].line) == (str(path), 1)
