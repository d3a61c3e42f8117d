"""A suite's CSV column mapping and system prompt, and the same mapping in `ftevals data validate`."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftevals.cli import main
from ftevals.pipeline import RunConfig, prepare
from ftevals.specs import ModelSpec
from ftevals.suite import Suite

#: A real-world export: the label first, then the text, then empty columns from a spreadsheet.
CSV = "label,text,,,\ncard_arrival,Where is my card?,,,\nlost_card,I lost my card,,,\ncard_arrival,Has my card been sent?,,,\n"


def write(tmp_path: Path) -> Path:
    path = tmp_path / "tickets.csv"
    path.write_text(CSV, encoding="utf-8")
    (tmp_path / "labels.json").write_text('["card_arrival", "lost_card"]', encoding="utf-8")
    return path


def test_a_suite_reads_a_csv_through_its_column_mapping(tmp_path: Path) -> None:
    write(tmp_path)
    suite = Suite(name="tickets", task="classification", dataset="tickets.csv", labels="labels.json",
                  columns={"prompt": "text", "reference": "label"}, system_prompt="Answer with the intent label.",
                  root=str(tmp_path))
    ps = prepare([suite], RunConfig(models={"base": ModelSpec("base")}, backend="replay")).suites[0]
    first = ps.dataset.examples[0]
    assert [m.role for m in first.messages] == ["system", "user"]
    assert first.messages[0].content == "Answer with the intent label."
    assert {(e.user_text, e.reference) for e in ps.dataset.examples} == {
        ("Where is my card?", "card_arrival"), ("I lost my card", "lost_card"), ("Has my card been sent?", "card_arrival")}


def test_without_the_mapping_the_file_is_refused_naming_the_columns(tmp_path: Path) -> None:
    from ftevals.errors import DatasetError

    write(tmp_path)
    suite = Suite(name="tickets", task="classification", dataset="tickets.csv", root=str(tmp_path))
    with pytest.raises(DatasetError, match="lacks the mapped column"):
        prepare([suite], RunConfig(models={"base": ModelSpec("base")}, backend="replay"))


def test_data_validate_takes_the_same_mapping(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path)
    assert main(["data", "validate", str(path), "--column", "prompt=text", "--column", "reference=label",
                 "--labels", str(tmp_path / "labels.json")]) == 0
    assert "3 examples" in capsys.readouterr().out
    assert main(["data", "validate", str(path), "--column", "prompt"]) != 0
    assert "--column 'prompt' is not FIELD=COLUMN" in capsys.readouterr().err
