"""Malformed datasets through the real entry points: the pytest plugin and `ftevals data validate`.

Each malformed input must stop the run before any model is asked anything: the pytest run ends with
a usage error (exit code 4) and the CLI with exit code 2, both printing the precise `file:line:`
message, and neither leaves a results file, a report or a cache entry behind. A well-formed control
run through the same harness shows that those files do appear when a run goes ahead.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest
from datafiles import chat, jsonl

# In-process pytester runs restore sys.modules afterwards: what the plugin imports lazily (numpy,
# scipy, jinja2 through these) must already be loaded here, or the next run imports numpy twice.
import ftevals.backends.replay
import ftevals.baseline
import ftevals.pipeline
import ftevals.report
import ftevals.summary  # noqa: F401
from ftevals.cli import main

LABELS = ["card_arrival", "card_linking", "exchange_rate"]


@dataclass(frozen=True)
class Case:
    name: str
    filename: str
    content: bytes
    #: (line, message); line None for file-level problems.
    problems: tuple[tuple[int | None, str], ...]
    labels: bool = False


def good(n: int = 3) -> list[dict]:
    return [chat(f"where is my card {i}", "card_arrival", id=f"ok-{i}", label="card_arrival") for i in range(n)]


def case(name: str, rows: list, line: int | None, message: str, *, filename: str = "data.jsonl", labels: bool = False) -> Case:
    content = jsonl(*rows).encode() if not isinstance(rows, bytes) else rows
    return Case(name, filename, content, ((line, message),), labels)


CASES = [
    case("bad-json", [*good(), '{"messages": [{"role": "user", "content": "hi"}'], 4,
         "bad JSON (Expecting ',' delimiter at column 48); expected one JSON object per line"),
    case("not-an-object", [*good(1), "42"], 2, "expected a JSON object, got int"),
    case("neither-layout", [*good(2), {"input": "hi", "output": "x"}], 3,
         'row has neither "messages" nor "prompt"/"reference"; expected one of those layouts'),
    case("missing-reference", [{"id": "p1", "prompt": "hi", "reference": "x"}, {"id": "p2", "prompt": "hi again"}], 2,
         '"reference" is missing or empty; expected a non-empty string'),
    case("empty-reference", [*good(), chat("where is it", "", id="x")], 4,
         "the final assistant turn (the reference) is empty; expected the reference answer"),
    case("empty-user-turn", [chat("  ", "card_arrival", id="x"), *good()], 1, "the user turn is empty; expected the input text"),
    case("no-assistant-turn", [*good(1), {"id": "x", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]}],
         2, "\"messages\" must end with an assistant turn (the reference), got role 'user'"),
    case("wrong-role-order", [*good(1), {"id": "x", "messages": [{"role": "assistant", "content": "a"},
                                                                 {"role": "user", "content": "u"},
                                                                 {"role": "assistant", "content": "b"}]}],
         2, "wrong role order: turn 0 is 'assistant' but 'user' was expected (optional system first, then user and "
            "assistant alternating, ending with assistant)"),
    case("unknown-role", [*good(2), {"id": "x", "messages": [{"role": "human", "content": "u"}, {"role": "assistant", "content": "a"}]}],
         3, "\"messages\"[0] has unknown role 'human'; expected one of system, user, assistant"),
    case("metadata-not-object", [*good(1), {"id": "x", "prompt": "p", "reference": "r", "metadata": "card"}], 2,
         '"metadata" must be a JSON object, got a string'),
    case("non-utf8", jsonl(*good(4)).encode() + b'{"id": "x", "prompt": "\xff", "reference": "r"}\n', 5,
         "not valid UTF-8 (byte 0xff); re-save the file as UTF-8"),
    case("row-over-1mb", [*good(1), {"id": "big", "prompt": "a" * 1_000_000, "reference": "r"}], 2,
         "row is 1,000,045 bytes, over the 1,000,000-byte limit; expected a smaller row (is it a broken export?)"),
    case("empty-file", b"", None, "file is empty; expected at least one example"),
    case("duplicate-id", [*good(2), chat("another question", "card_linking", id="ok-0", label="card_linking")], 3,
         "duplicate id 'ok-0' (first seen on line 1); ids must be unique"),
    case("conflicting-labels", [*good(2), chat("Where is my card 1?", "exchange_rate", id="x", label="exchange_rate")], 3,
         "conflicting labels for the same input: 'exchange_rate' here, 'card_arrival' on line 2; expected one label "
         "per input (fix or drop one of the rows)"),
    case("label-not-in-set", [*good(2), chat("how do I link it", "card_linkin", id="x", label="card_linkin")], 3,
         "label 'card_linkin' is not in the declared label set (3 labels); did you mean 'card_linking'?", labels=True),
    case("csv-missing-column", b"text,category\nwhere is my card,card_arrival\n", 1,
         "CSV header ['text', 'category'] lacks the mapped column(s) prompt -> 'prompt', reference -> 'reference'; "
         "expected those columns, or a mapping such as columns={'prompt': 'text', 'reference': 'category'}",
         filename="data.csv"),
    case("csv-empty-cell", b"prompt,reference\nwhere is my card,card_arrival\nand now?,\n", 3,
         "column 'reference' (reference) is empty; expected a value", filename="data.csv"),
    case("csv-ragged-row", b"prompt,reference\nwhere is my card,card_arrival\nhi, there,card_linking\n", 3,
         "row has 3 fields but the header has 2; expected one value per column (quote values that contain commas)",
         filename="data.csv"),
]
CASES.append(Case(
    "several-problems",
    "data.jsonl",
    jsonl(*good(2), "{bad", {"id": "ok-1", "prompt": "p", "reference": "r"}).encode(),
    ((3, "bad JSON (Expecting property name enclosed in double quotes at column 2); expected one JSON object per line"),
     (4, "duplicate id 'ok-1' (first seen on line 2); ids must be unique")),
))


def test_the_matrix_has_at_least_twelve_distinct_inputs() -> None:
    assert len({c.name for c in CASES}) == len(CASES) >= 12
    assert len({c.content for c in CASES}) == len(CASES)


def expected_message(path: Path, problems: tuple[tuple[int | None, str], ...]) -> list[str]:
    lines = [f"{path}:{line}: {msg}" if line is not None else f"{path}: {msg}" for line, msg in problems]
    if len(lines) == 1:
        return lines
    return [f"dataset is invalid: {len(lines)} problems", *(f"  {line}" for line in lines)]


SUITE = """
from ftevals import Suite

checked = Suite(
    name="checked",
    task="classification",
    dataset={dataset!r},
    models=("base", "tuned"),
    labels={labels!r},
    gates=("accuracy >= 0.0",),
)
"""


def run_suite(pytester: pytest.Pytester, filename: str, labels: list[str] | None) -> pytest.RunResult:
    pytester.makepyfile(test_checked=SUITE.format(dataset=filename, labels=labels))
    preds = pytester.path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"model": m, "id": f"ok-{i}", "text": "card_arrival"}) + "\n"
                             for m in ("base", "tuned") for i in range(3)))
    return pytester.runpytest(
        # hypothesis's plugin imports hypothesis at session end, afresh in every in-process run (2 s).
        "-p", "no:cacheprovider", "-p", "no:hypothesispytest",
        "--ftevals-backend", "replay", "--ftevals-backend-option", f"path={preds}",
        "--ftevals-model", "tuned=base+adapters/tuned",
        "--ftevals-results", "out/results.json", "--ftevals-report", "out/report.html",
        "--ftevals-cache-dir", "cache",
    )


def cache_rows(folder: Path) -> int:
    db = folder / "generations.sqlite"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0])


def test_control_a_good_dataset_runs_and_leaves_results_and_cache(pytester: pytest.Pytester) -> None:
    (pytester.path / "data.jsonl").write_text(jsonl(*good()))
    result = run_suite(pytester, "data.jsonl", LABELS)
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    result.assert_outcomes(passed=2)  # the gate and the (new) baseline
    assert (pytester.path / "out" / "results.json").is_file()
    assert cache_rows(pytester.path / "cache") == 6


@pytest.mark.parametrize("bad", CASES, ids=[c.name for c in CASES])
def test_plugin_refuses_to_start_with_the_precise_message(pytester: pytest.Pytester, bad: Case) -> None:
    path = pytester.path / bad.filename
    path.write_bytes(bad.content)
    result = run_suite(pytester, bad.filename, LABELS if bad.labels else None)
    assert result.ret == pytest.ExitCode.USAGE_ERROR == 4
    message = expected_message(path, bad.problems)
    err = result.stderr.lines
    # The plugin may say which suite file and suite it was preparing; the dataset message follows.
    starts = [i for i, line in enumerate(err) if line.startswith("ERROR: ftevals: ") and line.endswith(message[0])]
    assert len(starts) == 1, result.stderr.str()
    assert err[starts[0] + 1 : starts[0] + len(message)] == message[1:]
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert not (pytester.path / "out").exists()  # no results file, no report
    assert not (pytester.path / "cache").exists()  # no cache, so no cache entries
    assert not (pytester.path / "baselines").exists()


@pytest.mark.parametrize("bad", CASES, ids=[c.name for c in CASES])
def test_cli_validate_exits_2_with_the_precise_message(tmp_path: Path, bad: Case, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / bad.filename
    path.write_bytes(bad.content)
    args = ["data", "validate", str(path)]
    if bad.labels:
        (tmp_path / "labels.json").write_text(json.dumps(LABELS))
        args += ["--labels", str(tmp_path / "labels.json")]
    assert main(args) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == "ftevals: error: " + "\n".join(expected_message(path, bad.problems)) + "\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({bad.filename} | ({"labels.json"} if bad.labels else set()))


def test_cli_validate_accepts_the_good_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text(jsonl(*good(), chat("where is my card 0", "card_arrival", id="again", label="card_arrival")))
    assert main(["data", "validate", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{path}: 4 examples, fingerprint sha256:") and out[0].endswith(", 1 duplicate inputs")
    assert out[1:] == ["  duplicate input: ok-0 == again"]
