"""Converters from the public datasets' raw layouts, on small synthetic inputs in those layouts,
and scripts/import_datasets.py end to end on a synthetic source folder (never ../shared)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.scripts import load_script

from ftevals.data import load_dataset

ROOT = Path(__file__).resolve().parents[2]
converters = load_script("converters")


def test_banking77_rows_from_text_category_csv() -> None:
    text = 'text,category\nI am still waiting on my card?,card_arrival\n" Has my top-up, gone through? ",pending_top_up\n'
    rows = list(converters.banking77_rows(text, "test"))
    assert [r["id"] for r in rows] == ["banking77-test-00000", "banking77-test-00001"]
    assert rows[1]["messages"] == [
        {"role": "system", "content": converters.BANKING77_SYSTEM},
        {"role": "user", "content": "Has my top-up, gone through?"},
        {"role": "assistant", "content": "pending_top_up"},
    ]
    assert rows[1]["metadata"] == {"label": "pending_top_up"}


RESTAURANT_RAW = [
    {"userInput": {"text": "There will be 5 adults and 1 child."},
     "context": {"requestedSlots": ["people"]},
     "labels": [{"slot": "people", "valueSpan": {"startIndex": 14, "endIndex": 34}}]},
    # No startIndex: the span starts at 0 (the dataset's README). Keys come out in a fixed order.
    {"userInput": {"text": "7pm on friday for Smith"},
     "labels": [{"slot": "last_name", "valueSpan": {"startIndex": 18, "endIndex": 23}},
                {"slot": "time", "valueSpan": {"endIndex": 3}},
                {"slot": "date", "valueSpan": {"startIndex": 7, "endIndex": 13}}]},
    {"userInput": {"text": "no thanks"}},
]


def test_restaurant8k_spans_become_a_json_target_in_fixed_key_order() -> None:
    rows = list(converters.restaurant8k_rows(json.dumps(RESTAURANT_RAW), "train"))
    refs = [r["messages"][-1]["content"] for r in rows]
    assert refs == ['{"people": "5 adults and 1 child"}', '{"date": "friday", "time": "7pm", "last_name": "Smith"}', "{}"]
    assert rows[0]["messages"][1]["content"] == "The host asked for: people.\nGuest: There will be 5 adults and 1 child."
    assert rows[1]["messages"][1]["content"] == "The host asked for: nothing in particular.\nGuest: 7pm on friday for Smith"
    assert rows[1]["metadata"] == {"slots": {"date": "friday", "time": "7pm", "last_name": "Smith"}, "requested": []}
    assert [r["id"] for r in rows] == ["restaurant8k-train-00000", "restaurant8k-train-00001", "restaurant8k-train-00002"]


@pytest.mark.parametrize("span", [{"startIndex": 5, "endIndex": 99}, {"startIndex": 4, "endIndex": 4}, {"startIndex": -1, "endIndex": 2}])
def test_restaurant8k_span_outside_the_text_is_refused(span: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=r"Restaurant-8k span .* of slot 'time' does not fit the 9-character text 'at 7 pm!!'"):
        converters.restaurant8k_target("at 7 pm!!", [{"slot": "time", "valueSpan": span}])


def test_dialogsum_dev_has_one_reference_test_has_three() -> None:
    dev = {"fname": "dev_0", "dialogue": "#Person1#: Hi.\n#Person2#: Hello.", "summary": "They greet.", "topic": "greeting"}
    test = {"fname": "test_0", "dialogue": "#Person1#: Bye.", "summary1": "A", "summary2": "B", "summary3": "C",
            "topic1": "farewell", "topic2": "x", "topic3": "y"}
    (d,) = converters.dialogsum_rows(json.dumps(dev) + "\n\n", "dev")
    (t,) = converters.dialogsum_rows(json.dumps(test), "test")
    assert d["id"] == "dialogsum-dev_0" and d["messages"][-1]["content"] == "They greet."
    assert d["metadata"] == {"references": ["They greet."], "topic": "greeting"}
    assert t["messages"][1]["content"] == "#Person1#: Bye."
    assert t["messages"][-1]["content"] == "A" and t["metadata"] == {"references": ["A", "B", "C"], "topic": "farewell"}


def test_gsm8k_keeps_the_worked_answer_and_extracts_the_number() -> None:
    raw = {"question": "Janet has 1,000 eggs and eats 3. How many are left?",
           "answer": "She has 1000 - 3 = <<1000-3=997>>997 left.\n#### 997"}
    (row,) = converters.gsm8k_rows(json.dumps(raw) + "\n", "test")
    assert row["id"] == "gsm8k-test-0000"
    assert row["messages"][-1]["content"] == raw["answer"]
    assert row["metadata"] == {"answer": "997"}
    assert converters.gsm8k_final_answer("so\n#### 1,234 ") == "1234"
    with pytest.raises(ValueError, match="no '#### <number>' line"):
        converters.gsm8k_final_answer("The answer is 5.")


def _synthetic_source(root: Path) -> Path:
    """The layout of ../shared/datasets, with a handful of made-up rows per file."""
    src = root / "datasets"
    for name in ("banking77", "restaurant8k", "dialogsum", "gsm8k"):
        (src / name).mkdir(parents=True)
    for name in ("banking77", "restaurant8k", "gsm8k"):
        (src / name / "LICENSE").write_text(f"{name} licence\n")
    (src / "banking77" / "categories.json").write_text(json.dumps(["card_arrival", "pending_top_up", "top_up_reverted"]))
    (src / "banking77" / "train.csv").write_text(
        "text,category\nWhere is my card?,card_arrival\nHas my top up gone through?,pending_top_up\n"
        "Has my top-up gone through?,top_up_reverted\n"
    )
    (src / "banking77" / "test.csv").write_text("text,category\nMy card has not come yet,card_arrival\n")
    (src / "restaurant8k" / "train.json").write_text(json.dumps(RESTAURANT_RAW[:2]))
    (src / "restaurant8k" / "test.json").write_text(json.dumps(RESTAURANT_RAW[2:]))
    dialog = {"fname": "dev_0", "dialogue": "#Person1#: Hi.", "summary": "A greeting.", "topic": "hi"}
    (src / "dialogsum" / "dev.jsonl").write_text(json.dumps(dialog) + "\n")
    (src / "dialogsum" / "test.jsonl").write_text(json.dumps(
        {"fname": "test_0", "dialogue": "#Person1#: Bye.", "summary1": "A", "summary2": "B", "summary3": "C", "topic1": "bye"}
    ) + "\n")
    (src / "dialogsum" / "bart_large_test_predictions.txt").write_text("A farewell.\n")
    (src / "gsm8k" / "test.jsonl").write_text(json.dumps({"question": "1+1?", "answer": "1+1=2\n#### 2"}) + "\n")
    return src


def test_import_script_converts_validates_and_resolves_label_conflicts(tmp_path: Path) -> None:
    src, dest = _synthetic_source(tmp_path), tmp_path / "data"
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "import_datasets.py"), "--source", str(src), "--dest", str(dest)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert f"{dest}/banking77/train.jsonl: dropped banking77-train-00002 ('top_up_reverted'): same input already " \
           "labelled 'pending_top_up'" in run.stdout
    counts = {p.relative_to(dest).as_posix(): len(load_dataset(p)) for p in sorted(dest.glob("*/*.jsonl"))}
    assert counts == {"banking77/test.jsonl": 1, "banking77/train.jsonl": 2, "dialogsum/dev.jsonl": 1,
                      "dialogsum/test.jsonl": 1, "gsm8k/test.jsonl": 1, "restaurant8k/test.jsonl": 1,
                      "restaurant8k/train.jsonl": 2}
    for extra in ("README.md", "banking77/LICENSE", "banking77/labels.json", "dialogsum/LICENSE",
                  "dialogsum/bart_large_test_predictions.txt", "gsm8k/LICENSE", "restaurant8k/LICENSE"):
        assert (dest / extra).is_file(), extra
    assert "CC BY-NC-SA 4.0" in (dest / "dialogsum" / "LICENSE").read_text()
    # Re-running reproduces the output byte for byte (the data/ folder is generated, never edited).
    before = {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    subprocess.run([sys.executable, str(ROOT / "scripts" / "import_datasets.py"), "--source", str(src), "--dest", str(dest)],
                   capture_output=True, check=True, timeout=120)
    assert {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()} == before


def test_import_script_names_a_missing_source(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "import_datasets.py"), "--source", str(tmp_path / "none"),
                          "--dest", str(tmp_path / "d")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert run.stderr.strip() == f"error: {tmp_path / 'none'} not found; pass --source pointing at the shared datasets folder"
