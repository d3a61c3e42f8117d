"""The committed data/ files: they validate, have the documented row counts, and BANKING77's test
split overlaps its training split the way the public dataset is known to."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ftevals.contamination import check_contamination
from ftevals.data import Dataset, find_duplicates, load_dataset, normalize_text

DATA = Path(__file__).resolve().parents[2] / "data"

#: Row counts documented in data/README.md and the project README (after the import resolved one
#: conflicting BANKING77 label pair in each split).
COUNTS = {
    "banking77/train.jsonl": 10002,
    "banking77/test.jsonl": 3079,
    "restaurant8k/train.jsonl": 2049,
    "restaurant8k/test.jsonl": 3731,
    "dialogsum/dev.jsonl": 500,
    "dialogsum/test.jsonl": 500,
    "gsm8k/test.jsonl": 1319,
}


@pytest.fixture(scope="module")
def banking77() -> dict[str, Dataset]:
    labels = json.loads((DATA / "banking77" / "labels.json").read_text(encoding="utf-8"))
    return {split: load_dataset(DATA / "banking77" / f"{split}.jsonl", labels=labels) for split in ("train", "test")}


@pytest.mark.parametrize("rel", sorted(COUNTS))
def test_committed_file_validates_with_documented_row_count(rel: str) -> None:
    ds = load_dataset(DATA / rel)
    assert len(ds) == COUNTS[rel]
    assert len({e.id for e in ds}) == len(ds)
    assert all(e.messages[0].role == "system" and e.messages[-1].role == "user" for e in ds)


#: Committed JSONL files that are not eval sets: inputs of `ftevals data import-logs` and `ftevals ab`,
#: tested in tests/data/test_import_logs.py and tests/test_abtest.py (the log has planted bad lines).
NOT_EVAL_SETS = {"production-logs/support.jsonl", "production-logs/ab.jsonl"}


def test_every_committed_jsonl_file_is_covered() -> None:
    assert sorted(p.relative_to(DATA).as_posix() for p in DATA.glob("*/*.jsonl")) == sorted({*COUNTS, *NOT_EVAL_SETS})


def test_readme_states_the_banking77_counts() -> None:
    text = " ".join((DATA / "README.md").read_text(encoding="utf-8").split())
    assert re.search(r"train has 10,002 rows and test 3,079", text)


def test_banking77_labels_are_the_77_declared_intents(banking77: dict[str, Dataset]) -> None:
    labels = json.loads((DATA / "banking77" / "labels.json").read_text(encoding="utf-8"))
    assert len(labels) == 77
    assert {e.label for e in banking77["test"]} == set(labels)
    assert all(e.reference == e.label for e in banking77["train"])


def test_restaurant8k_references_are_json_objects_of_known_slots() -> None:
    ds = load_dataset(DATA / "restaurant8k" / "test.jsonl")
    slots = {"people", "date", "time", "first_name", "last_name"}
    for ex in ds:
        target = json.loads(ex.reference)
        assert set(target) <= slots
        assert all(v and v in ex.user_text for v in target.values()), ex.id  # verbatim spans of the guest's text
    assert sum(1 for ex in ds if ex.reference == "{}") > 0


def test_dialogsum_test_has_three_references() -> None:
    ds = load_dataset(DATA / "dialogsum" / "test.jsonl")
    assert all(len(e.metadata["references"]) == 3 and e.metadata["references"][0] == e.reference for e in ds)


def test_banking77_test_set_overlaps_train_as_known(banking77: dict[str, Dataset]) -> None:
    report = check_contamination(banking77["test"].examples, [("data/banking77/train.jsonl", banking77["train"].examples)])
    assert report.n_eval == 3079
    assert report.exact >= 20  # the public dataset repeats some utterances across its splits
    assert 20 <= report.near <= 200
    assert 0.01 < report.rate < 0.05
    exact = next(m for m in report.matches if m.kind == "exact")
    test_ex = next(e for e in banking77["test"] if e.id == exact.eval_id)
    train_ex = next(e for e in banking77["train"] if e.id == exact.train_id)
    assert normalize_text(test_ex.user_text) == normalize_text(train_ex.user_text)
    assert all(m.overlap >= 0.8 for m in report.matches)


def test_duplicate_inputs_within_banking77_train_are_listed(banking77: dict[str, Dataset]) -> None:
    dupes = find_duplicates(banking77["train"])
    by_id = {e.id: e for e in banking77["train"]}
    assert dupes, "BANKING77 train repeats some utterances"
    assert all(by_id[a].label == by_id[b].label for a, b in dupes)  # conflicts were resolved at import
