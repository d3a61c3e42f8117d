"""A dataset with a 50 MB line (a broken export: a whole file on one line, a base64 blob) is refused
at once with the line number and the limit, through the plugin (exit 4, nothing written) and
`ftevals data validate` (exit 2).

Every other malformed dataset of the issue (empty file, bad JSON, wrong schema, wrong role order,
missing reference, non-UTF-8, duplicate ids, labels outside the label set, ...) is in the
20-case matrix of tests/data/test_bad_input_matrix.py, through the same two entry points.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from support.miniproject import MiniProject

from ftevals.cli import main

SIZE = 50_000_000


def write_with_huge_line(path: Path, first_rows: list[dict]) -> int:
    """The project's rows, then one 50 MB row on the line after them; returns that line's number."""
    huge = json.dumps({"id": "blob", "prompt": "x" * SIZE, "reference": "card_arrival"})
    with path.open("w", encoding="utf-8") as fh:
        for row in first_rows:
            fh.write(json.dumps(row) + "\n")
        fh.write(huge + "\n")
    return len(first_rows) + 1


def expected(path: Path, line: int) -> str:
    size = SIZE + len('{"id": "blob", "prompt": "", "reference": "card_arrival"}')
    return (f"{path}:{line}: row is {size:,} bytes, over the 1,000,000-byte limit; expected a smaller row "
            "(is it a broken export?)")


def test_plugin_refuses_a_50mb_line(pytester: pytest.Pytester) -> None:
    project = MiniProject.create(pytester)
    line = write_with_huge_line(project.path / "data.jsonl", project.rows)
    started = time.monotonic()
    result = project.run()
    assert time.monotonic() - started < 60
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: ftevals: test_suite.py: suite 'demo': {expected(project.path / 'data.jsonl', line)}"])
    assert project.written_files() == []


def test_cli_validate_refuses_a_50mb_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "data.jsonl"
    line = write_with_huge_line(path, [{"id": "ok", "prompt": "where is my card?", "reference": "card_arrival"}])
    assert main(["data", "validate", str(path)]) == 2
    assert capsys.readouterr().err == f"ftevals: error: {expected(path, line)}\n"
