"""Production logs -> an eval set: the committed example log, every drop counted by reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftevals.cli import main
from ftevals.data import load_dataset
from ftevals.errors import DatasetError
from ftevals.logs_import import import_logs, redact

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / "data" / "production-logs" / "support.jsonl"
TRAIN = ROOT / "data" / "banking77" / "train.jsonl"


def test_the_example_log_becomes_a_valid_eval_set_with_every_drop_counted(tmp_path):
    out = tmp_path / "prod.jsonl"
    report = import_logs(LOGS, out, redacting=True, train_files=[TRAIN])
    assert report.read == 36 and report.written == 27
    assert dict(report.dropped) == {"exact duplicate": 3, "near duplicate": 2, "empty response": 1, "no messages": 1,
                                    "overlaps training data": 1, "unreadable JSON": 1}
    assert report.read == report.written + sum(report.dropped.values())
    assert [(p.line, p.message.split(" (")[0]) for p in report.problems] == [
        (33, "not JSON"), (34, "no response text"), (35, "no request messages")]
    data = load_dataset(out)
    assert len(data) == 27
    text = out.read_text(encoding="utf-8")
    assert "jane.doe@example.com" not in text and "7946 0958" not in text and "555-013-4477" not in text
    assert "[EMAIL]" in text and text.count("[PHONE]") == 2
    first = data.examples[0]
    # The logged response is the reference; outcome fields and the log line travel as metadata.
    assert first.reference == json.loads(LOGS.read_text().splitlines()[0])["response"]["choices"][0]["message"]["content"]
    assert {"resolved", "rating", "ts", "log_line"} <= set(first.metadata)
    assert data.examples[-1].metadata["rating"] == 3  # the transcript form is read too


def test_sampling_is_seeded_and_counted(tmp_path):
    a = import_logs(LOGS, tmp_path / "a.jsonl", sample=10, seed=3)
    b = import_logs(LOGS, tmp_path / "b.jsonl", sample=10, seed=3)
    # 36 read, 3 unusable, 3 exact and 2 near duplicates: 28 left, 10 kept.
    assert a.written == 10 and a.dropped["not in the seeded sample"] == 18
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


def test_redaction_keeps_dates_amounts_and_short_numbers():
    text, n = redact("Paid 25.50 on 2026-11-02, order 4411; call 020 7946 0958 or mail a.b@c.io")
    assert text == "Paid 25.50 on 2026-11-02, order 4411; call [PHONE] or mail [EMAIL]" and n == 2


def test_a_log_with_nothing_usable_writes_nothing_and_says_why(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": []}\nnot json\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    with pytest.raises(DatasetError, match="no logged request survived import.*nothing was written"):
        import_logs(bad, out)
    assert not out.exists() and list(tmp_path.iterdir()) == [bad]


def test_cli(tmp_path, capsys):
    assert main(["data", "import-logs", str(LOGS), "--out", str(tmp_path / "p.jsonl"), "--redact",
                 "--train", str(TRAIN)]) == 0
    out = capsys.readouterr().out
    assert "read 36 logged requests, wrote 27 examples" in out and "dropped 1: overlaps training data" in out
    assert "support.jsonl:33: not JSON" in out
