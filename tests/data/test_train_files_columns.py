"""Training files are read like the dataset: the suite's CSV column mapping, or their own (TrainFile)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import ftevals
from ftevals.data import load_dataset
from ftevals.errors import ConfigError, DatasetError
from ftevals.pipeline import RunConfig, prepare
from ftevals.specs import ModelSpec
from ftevals.suite import Suite, TrainFile

Write = Callable[[str, "str | bytes"], Path]

#: A real-world export: the label first, the text under a misspelt header, then empty spreadsheet columns.
EVAL = ("label,masseges,,,\n"
        "card_arrival,Where is my new card?,,,\n"
        "lost_card,I lost my card yesterday on the bus,,,\n"
        "top_up,How do I top up my account with a bank transfer,,,\n"
        "refund,I want my money back for this order,,,\n")
#: The fine-tuning export, same layout: one exact copy, one near copy, the rest unrelated.
TRAIN = ("label,masseges,,,\n"
         "card_arrival,where is my NEW card,,,\n"
         "top_up,How do I top up my account with a bank transfer today,,,\n"
         "lost_card,The app crashes when I open it,,,\n")
COLUMNS = {"prompt": "masseges", "reference": "label"}


@pytest.fixture(autouse=True)
def _own_memo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Preparation memoises loads and contamination checks; each test starts from an empty memo."""
    monkeypatch.setenv("FTEVALS_CACHE_DIR", str(tmp_path / "ftevals-cache"))


def contamination(tmp_path: Path, train_files: Any, **suite: Any) -> dict[str, Any]:
    s = Suite(name="tickets", task="classification", dataset="eval.csv", columns=COLUMNS, train_files=train_files,
              root=str(tmp_path), **suite)
    found = prepare([s], RunConfig(models={"base": ModelSpec("base")}, backend="replay")).suites[0].contamination
    assert found is not None
    return found


def matched_inputs(tmp_path: Path, found: dict[str, Any], system_prompt: str | None = None) -> dict[str, set[str]]:
    """Eval input (as written) -> the kinds of match it had (ids depend on the system prompt)."""
    raw = load_dataset(tmp_path / "eval.csv", columns=COLUMNS, system_prompt=system_prompt)
    text = {e.id: e.user_text for e in raw.examples}
    out: dict[str, set[str]] = {}
    for m in found["matches"]:
        out.setdefault(text[m["eval_id"]], set()).add(f"{m['kind']} {m['train_file']}")
    return out


def test_a_training_csv_of_the_datasets_layout_is_read_with_the_suites_columns(tmp_path: Path, write: Write) -> None:
    write("eval.csv", EVAL)
    write("train.csv", TRAIN)
    # The template and system prompt shape the eval prompts; training inputs are compared as written.
    system = "Answer with the intent label."
    found = contamination(tmp_path, ["train.csv"], prompt_template="Customer message: {masseges}\nIntent:",
                          system_prompt=system)
    assert matched_inputs(tmp_path, found, system) == {
        "Where is my new card?": {"exact train.csv"},
        "How do I top up my account with a bank transfer": {"near train.csv"},
    }
    assert (found["train_files"], found["n_eval"], found["exact"], found["near"]) == (["train.csv"], 4, 1, 1)


def test_files_of_other_layouts_take_their_own_mapping(tmp_path: Path, write: Write) -> None:
    write("eval.csv", EVAL)
    write("other.csv", "id,intent,text\nt1,refund,I want my money back for this order\n")
    write("default.csv", "prompt,reference\nI lost my card yesterday on the bus,lost_card\n")
    write("train.jsonl", json.dumps({"prompt": "Where is my new card?", "reference": "card_arrival"}) + "\n")
    files = [TrainFile("other.csv", columns={"prompt": "text", "reference": "intent"}),
             TrainFile("default.csv", columns={}),  # {}: the default prompt/reference columns
             "train.jsonl"]                         # JSONL rows name their fields: no mapping needed
    found = contamination(tmp_path, files)
    assert matched_inputs(tmp_path, found) == {
        "I want my money back for this order": {"exact other.csv"},
        "I lost my card yesterday on the bus": {"exact default.csv"},
        "Where is my new card?": {"exact train.jsonl"},
    }
    assert found["train_files"] == ["other.csv", "default.csv", "train.jsonl"]  # stored as the paths written


def test_a_changed_mapping_recomputes_the_memoised_check(tmp_path: Path, write: Write) -> None:
    write("eval.csv", EVAL)
    write("notes.csv", "text,note,reference\nWhere is my new card?,customer seemed upset,x\n")
    by_text = contamination(tmp_path, [TrainFile("notes.csv", columns={"prompt": "text"})])
    by_note = contamination(tmp_path, [TrainFile("notes.csv", columns={"prompt": "note"})])
    assert (by_text["exact"], by_note["exact"]) == (1, 0)


def test_a_training_file_that_does_not_fit_its_mapping_names_the_file_and_line(tmp_path: Path, write: Write) -> None:
    write("eval.csv", EVAL)
    train = write("other.csv", "id,intent,text\nt1,refund,I want my money back\n")
    with pytest.raises(DatasetError) as err:
        contamination(tmp_path, [TrainFile("other.csv", columns={"prompt": "txt", "reference": "intent"})])
    assert str(err.value) == (
        f"{train}:1: CSV header ['id', 'intent', 'text'] lacks the mapped column(s) prompt -> 'txt'; expected those "
        "columns, or a mapping such as columns={'prompt': 'text', 'reference': 'category'}; other.csv is a training "
        "file of suite 'tickets' (train_files), read with its own column mapping {'prompt': 'txt', 'reference': "
        "'intent'}")
    # Given as a plain path, it is read with the suite's columns, and the message says how to differ.
    with pytest.raises(DatasetError, match=r"^" + str(train).replace(".", r"\.") + r":1: CSV header .* lacks the "
                       r"mapped column\(s\) prompt -> 'masseges', reference -> 'label'; .*; other\.csv is a training "
                       r"file of suite 'tickets' \(train_files\), read like the dataset with the suite's column "
                       r"mapping \{'prompt': 'masseges', 'reference': 'label'\}; a training file of another layout "
                       r"takes its own: TrainFile\('other\.csv', columns=\{\.\.\.\}\)$"):
        contamination(tmp_path, ["other.csv"])


def test_a_bad_row_of_a_training_file_is_named_by_line(tmp_path: Path, write: Write) -> None:
    write("eval.csv", EVAL)
    train = write("train.csv", TRAIN + "refund,,,,\n")
    with pytest.raises(DatasetError, match=rf"^{str(train).replace('.', '[.]')}:5: column 'masseges' \(prompt\) is "
                                           r"empty; expected a value; train\.csv is a training file of suite"):
        contamination(tmp_path, ["train.csv"])


def test_a_trainfile_mapping_is_checked_where_it_is_written() -> None:
    with pytest.raises(ConfigError, match=r"^TrainFile\('t\.csv'\): unknown column mapping key\(s\) 'promt'; "
                                          r"expected some of prompt, reference, id, label"):
        TrainFile("t.csv", columns={"promt": "text"})
    with pytest.raises(ConfigError, match=r"^TrainFile\('t\.jsonl'\): columns map a CSV header, but t\.jsonl is "
                                          r"read as JSONL .*; drop columns, or give a \.csv file$"):
        TrainFile("t.jsonl", columns={"prompt": "text"})
    with pytest.raises(ConfigError, match=r"^TrainFile\('t\.csv'\): columns must map field names to CSV column"):
        TrainFile("t.csv", columns={"prompt": 3})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match=r"^TrainFile path must be a file path, got ''$"):
        TrainFile("")


def test_train_files_entries_are_paths_or_trainfiles(tmp_path: Path) -> None:
    assert ftevals.TrainFile is TrainFile and "TrainFile" in ftevals.__all__
    one = TrainFile("b.csv", columns={"prompt": "text"})
    assert Suite(name="s", dataset="d.csv", train_files="a.csv").train_files == ("a.csv",)
    assert Suite(name="s", dataset="d.csv", train_files=one).train_files == (one,)
    suite = Suite(name="s", dataset="d.csv", columns=COLUMNS, train_files=[tmp_path / "a.csv", one])
    assert suite.train_files == (str(tmp_path / "a.csv"), one)
    assert [suite.train_columns(f) for f in suite.training_files()] == [COLUMNS, {"prompt": "text"}]
    with pytest.raises(ConfigError, match=r"^suite 's': train_files entry 3 is neither a file path nor a TrainFile"):
        Suite(name="s", dataset="d.csv", train_files=["a.csv", 3])  # type: ignore[list-item]
