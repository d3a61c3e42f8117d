"""The results file's one description: records, the shipped JSON Schema, load/save, migration."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ftevals.errors import ResultsError
from ftevals.results import MIGRATIONS, SCHEMA_FILE, SCHEMA_VERSION, Results, dumps, from_data, load, save
from ftevals.results import io as results_io
from ftevals.results.schema import schema_text

FIXTURE = Path(__file__).parents[1] / "fixtures" / "real_results.json"


def _data() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


def test_the_shipped_schema_is_the_one_the_records_generate() -> None:
    # The file other tools read must not drift from the dataclasses ftevals reads with.
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), "run: python -m ftevals.results.schema"


def test_the_committed_fixture_validates_against_the_shipped_schema() -> None:
    import jsonschema

    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(_data())


def test_the_fixture_round_trips_byte_identically(tmp_path: Path) -> None:
    results = load(FIXTURE)
    assert isinstance(results, Results) and results.schema_version == SCHEMA_VERSION
    out = save(tmp_path / "again.json", results)
    assert out.read_text(encoding="utf-8") == FIXTURE.read_text(encoding="utf-8")


def test_records_are_typed_all_the_way_down() -> None:
    results = load(FIXTURE)
    suite = results.suites[0]
    comparison = suite.comparisons[0]
    assert suite.comparison(comparison.model, comparison.metric) is comparison
    assert isinstance(comparison.delta, float) and comparison.verdict in {"improved", "regressed", "no_significant_change"}
    example = suite.examples[0]
    assert {type(o).__name__ for o in example.outputs.values()} == {"Output"}
    with pytest.raises(AttributeError):
        comparison.delta = 0.0  # type: ignore[misc]  # frozen: consumers cannot edit the record


@pytest.mark.parametrize("version, hint", [(0, "has no migration from it"), (SCHEMA_VERSION + 98, "upgrade ftevals")])
def test_an_unknown_version_is_refused_naming_both_versions(version: int, hint: str) -> None:
    data = dict(_data(), schema_version=version)
    with pytest.raises(ResultsError) as err:
        from_data(data, "old.json")
    message = str(err.value)
    assert f"schema version {version}" in message and f"reads version {SCHEMA_VERSION}" in message
    assert hint in message and message.startswith("old.json:")


def test_an_older_version_loads_through_its_explicit_migration(monkeypatch: pytest.MonkeyPatch) -> None:
    # A made-up version 0 that called the suite list "results": the step renames it.
    def from_v0(data: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in data.items() if k != "results"}
        return dict(out, suites=data["results"], schema_version=1)

    monkeypatch.setattr(results_io, "SCHEMA_VERSION", 1)
    monkeypatch.setitem(MIGRATIONS, 0, from_v0)
    current = _data()
    old = {k: v for k, v in current.items() if k != "suites"}
    old.update(schema_version=0, results=current["suites"])
    assert dumps(from_data(old)) == dumps(from_data(current))


def test_a_bad_field_is_refused_with_its_place_in_the_file() -> None:
    data = _data()
    data["suites"][0]["comparisons"][0]["delta"] = "big"
    with pytest.raises(ResultsError, match=r"suites\[0\]\.comparisons\[0\]\.delta: 'big' is not of type"):
        from_data(data, "bad.json")


def test_save_refuses_an_invalid_dict_and_leaves_the_old_file(tmp_path: Path) -> None:
    target = save(tmp_path / "results.json", load(FIXTURE))
    before = target.read_bytes()
    data = _data()
    del data["run"]
    with pytest.raises(ResultsError, match="'run' is a required property"):
        save(target, data)
    assert target.read_bytes() == before
    # A record is valid by construction; a changed copy is written as is.
    changed = replace(load(FIXTURE), suites=())
    assert json.loads(save(target, changed).read_text())["suites"] == []
