"""Seeded samples, deterministic splits and content fingerprints: what must stay put and what must move."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from datafiles import chat, jsonl

from ftevals.data import Dataset, load_dataset, split_dataset
from ftevals.errors import ConfigError

Write = Callable[[str, "str | bytes"], Path]


def rows(n: int, start: int = 0) -> list[dict]:
    return [chat(f"message number {i}", f"label_{i % 7}", id=f"ex-{i:04d}", label=f"label_{i % 7}")
            for i in range(start, start + n)]


def shuffled(items: list, seed: int) -> list:
    out = list(items)
    random.Random(seed).shuffle(out)
    return out


@pytest.fixture
def base_rows() -> list[dict]:
    return rows(1000)


def ids(ds: Dataset) -> set[str]:
    return {e.id for e in ds}


# ---------------------------------------------------------------------------------------------
# Dataset.sample


def test_sample_is_seeded_sized_and_independent_of_row_order(write: Write, base_rows: list[dict]) -> None:
    a = load_dataset(write("a.jsonl", jsonl(*base_rows)))
    b = load_dataset(write("b.jsonl", jsonl(*shuffled(base_rows, 1))))
    s_a, s_b = a.sample(100, seed=3), b.sample(100, seed=3)
    assert len(s_a) == 100
    assert ids(s_a) == ids(s_b)
    assert [e.id for e in s_a] == sorted(ids(s_a))  # returned in id order, not file order
    assert s_a.fingerprint == s_b.fingerprint
    assert ids(a.sample(100, seed=4)) != ids(s_a)
    assert a.sample(None) is a and a.sample(5000) is a


def test_appending_rows_never_brings_in_an_old_row_that_was_not_picked(write: Write, base_rows: list[dict]) -> None:
    before = load_dataset(write("a.jsonl", jsonl(*base_rows))).sample(100, seed=0)
    grown = load_dataset(write("b.jsonl", jsonl(*base_rows, *rows(200, start=1000)))).sample(100, seed=0)
    old = {r["id"] for r in base_rows}
    kept = ids(grown) & old
    assert kept <= ids(before)
    # About 1/6 of the picks go to the new rows (200 of 1200); the rest are the same as before.
    assert 60 <= len(kept) <= 98


def test_sample_picks_are_spread_over_the_file(write: Write, base_rows: list[dict]) -> None:
    picked = sorted(int(i.split("-")[1]) for i in ids(load_dataset(write("a.jsonl", jsonl(*base_rows))).sample(100)))
    # Not the head of the file: a hash order, so every decile is represented.
    assert {i // 100 for i in picked} == set(range(10))


# ---------------------------------------------------------------------------------------------
# split_dataset


def test_default_split_is_80_10_10_and_covers_every_row_once(write: Write, base_rows: list[dict]) -> None:
    ds = load_dataset(write("a.jsonl", jsonl(*base_rows)))
    parts = split_dataset(ds)
    assert list(parts) == ["train", "validation", "test"]
    sizes = {k: len(v) for k, v in parts.items()}
    assert 760 <= sizes["train"] <= 840 and 75 <= sizes["validation"] <= 125 and 75 <= sizes["test"] <= 125
    assert sum(sizes.values()) == 1000
    assert set().union(*(ids(p) for p in parts.values())) == ids(ds)
    assert parts["test"].name == "a-test" and parts["test"].fingerprint != ds.fingerprint


def test_split_is_stable_under_reordering_and_appending(write: Write, base_rows: list[dict]) -> None:
    a = split_dataset(load_dataset(write("a.jsonl", jsonl(*base_rows))), seed=5)
    b = split_dataset(load_dataset(write("b.jsonl", jsonl(*shuffled(base_rows, 2)))), seed=5)
    c = split_dataset(load_dataset(write("c.jsonl", jsonl(*shuffled(base_rows + rows(300, start=1000), 3)))), seed=5)
    for name in a:
        assert ids(a[name]) == ids(b[name])
        assert a[name].fingerprint == b[name].fingerprint
        assert ids(a[name]) <= ids(c[name])  # old rows stay where they were


def test_split_seed_and_ratios_matter(write: Write, base_rows: list[dict]) -> None:
    ds = load_dataset(write("a.jsonl", jsonl(*base_rows)))
    assert ids(split_dataset(ds, seed=0)["test"]) != ids(split_dataset(ds, seed=1)["test"])
    halves = split_dataset(ds, (0.5, 0.0, 0.5))
    assert len(halves["validation"]) == 0 and 430 <= len(halves["train"]) <= 570
    two = split_dataset(ds, (0.7, 0.3), names=("fit", "holdout"))
    assert list(two) == ["fit", "holdout"] and 640 <= len(two["fit"]) <= 760


def test_splitting_a_sample_still_fills_every_part(write: Write, base_rows: list[dict]) -> None:
    # A sample is the rows with the lowest sample ranks; the split hash must not be the same one,
    # or the whole sample would land in "train".
    sample = load_dataset(write("a.jsonl", jsonl(*base_rows))).sample(200, seed=0)
    parts = split_dataset(sample, seed=0)
    assert all(len(p) >= 5 for p in parts.values()), {k: len(v) for k, v in parts.items()}


@pytest.mark.parametrize("ratios", [(0.8, 0.1), (0.8, 0.1, 0.2), (1.1, -0.05, -0.05)])
def test_bad_ratios_are_refused(write: Write, ratios: tuple[float, ...]) -> None:
    ds = load_dataset(write("a.jsonl", jsonl(*rows(3))))
    with pytest.raises(ConfigError, match=r"split ratios must be 3 non-negative numbers summing to 1, got \["):
        split_dataset(ds, ratios)


# ---------------------------------------------------------------------------------------------
# fingerprints


def test_fingerprint_ignores_layout_but_not_content(write: Write) -> None:
    base = rows(20)
    fp = load_dataset(write("a.jsonl", jsonl(*base))).fingerprint
    assert fp.startswith("sha256:") and len(fp) == len("sha256:") + 64
    # Same content, other layout: reordered, blank lines, other key order, other file name.
    reordered = [json.dumps(dict(reversed(list(r.items())))) for r in shuffled(base, 9)]
    assert load_dataset(write("sub/b.jsonl", "\n\n".join(reordered) + "\n")).fingerprint == fp

    def changed(i: int, **edit: str) -> str:
        copy = json.loads(json.dumps(base))
        if "reference" in edit:
            copy[i]["messages"][-1]["content"] = edit["reference"]
        if "user" in edit:
            copy[i]["messages"][1]["content"] = edit["user"]
        if "system" in edit:
            copy[i]["messages"][0]["content"] = edit["system"]
        if "label" in edit:
            copy[i]["metadata"]["label"] = edit["label"]
        if "id" in edit:
            copy[i]["id"] = edit["id"]
        return load_dataset(write(f"c{len(edit)}{sorted(edit)}.jsonl", jsonl(*copy))).fingerprint

    edits = [{"reference": "label_9"}, {"user": "message number 3 "}, {"system": "Classify."},
             {"label": "other"}, {"id": "renamed"}]
    prints = {changed(3, **e) for e in edits}
    assert fp not in prints and len(prints) == len(edits)
    assert load_dataset(write("d.jsonl", jsonl(*base[:-1]))).fingerprint != fp


def test_csv_and_jsonl_with_the_same_content_share_a_fingerprint(write: Write) -> None:
    csv_ds = load_dataset(write("s.csv", "id,prompt,reference\n1,hi,x\n2,yo,y\n"))
    jsonl_ds = load_dataset(write("s.jsonl", jsonl({"id": "2", "prompt": "yo", "reference": "y"},
                                                   {"id": "1", "prompt": "hi", "reference": "x"})))
    assert csv_ds.fingerprint == jsonl_ds.fingerprint


# ---------------------------------------------------------------------------------------------
# `ftevals data split`: the files it writes load back as the same parts


def test_cli_split_writes_loadable_parts(write: Write, tmp_path: Path, base_rows: list[dict],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from ftevals.cli import main

    source = write("all.jsonl", jsonl(*base_rows[:200], {"prompt": "no id here", "reference": "label_1"}))
    assert main(["data", "split", str(source), "--out", str(tmp_path / "parts"), "--seed", "2"]) == 0
    expected = split_dataset(load_dataset(source), seed=2)
    printed = capsys.readouterr().out.splitlines()
    assert printed == [f"{tmp_path / 'parts' / name}.jsonl: {len(ds)} examples" for name, ds in expected.items()]
    for name, part in expected.items():
        loaded = load_dataset(tmp_path / "parts" / f"{name}.jsonl")
        assert loaded.fingerprint == part.fingerprint
        assert [e.to_dict() for e in loaded] == [e.to_dict() for e in part]
    assert main(["data", "split", str(source), "--out", str(tmp_path / "x"), "--ratios", "80/10"]) == 2
    assert capsys.readouterr().err == "ftevals: error: split ratios must be 3 non-negative numbers summing to 1, got [0.8, 0.1]\n"
