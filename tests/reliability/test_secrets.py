"""An API key never reaches a file or a log: not the results, the report, the cache, the baseline,
the JUnit XML, rater packets, nor anything printed, with DEBUG logging on, including when the server
echoes the key back in its errors (some do).

A pytest run of the plugin with the openai backend against a local server, with `OPENAI_API_KEY`
set: first a server that echoes the key in a 500 before answering (the run passes after retries),
then one that rejects it with a 401 quoting it (the run fails and prints the error).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.fakeopenai import FakeOpenAI, Reply
from support.miniproject import MiniProject

from ftevals.packets import build_packets
from ftevals.results import read_results

SECRET = "sk-test-SECRET-5f0c2a9e7d1b4c3a"


def every_file(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def files_with(root: Path, needle: str) -> list[str]:
    """Files under root that hold the needle, as text or as bytes (the SQLite cache is binary)."""
    raw = needle.encode()
    return sorted(str(p.relative_to(root)) for p in every_file(root) if raw in p.read_bytes())


def run_openai(project: MiniProject, url: str, *extra: str) -> pytest.RunResult:
    return project.run(
        "-o", "ftevals_backend=openai", "-o", "ftevals_backend_options=",
        "--ftevals-backend-option", f"base_urls=[\"{url}\"]",
        "--ftevals-backend-option", "backoff_s=0.001", "--ftevals-backend-option", "max_retries=2",
        "--junitxml=out/junit.xml", "-o", "log_cli=true", "--log-cli-level=DEBUG", "-rA", *extra,
    )


def test_the_api_key_is_sent_but_never_written_or_printed(pytester: pytest.Pytester, server: FakeOpenAI,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    project = MiniProject.create(pytester)
    (project.path / "preds.jsonl").unlink()  # no replay here

    # 1. The server echoes the key in a 500 on every first attempt, then answers: the run passes.
    server.respond = lambda body, n: (
        Reply(500, {"error": {"message": f"upstream rejected key {SECRET}"}}) if server.attempt(body) == 1 else Reply())
    passed = run_openai(project, server.url)
    assert passed.ret == 0, passed.stdout.str() + passed.stderr.str()
    assert len(server.answered) == 40 and set(server.auth) == {f"Bearer {SECRET}"}  # the key was used

    results = read_results(project.path / "out" / "results.json")
    build_packets(results, project.path / "out" / "packets", raters=2)

    # 2. The server rejects the key and quotes it: the run fails and prints the server's message.
    server.reset()
    server.respond = lambda body, n: Reply(401, {"error": {"message": f"Incorrect API key provided: {SECRET}"}})
    failed = run_openai(project, server.url, "--ftevals-cache", "refresh", "--ftevals-results", "out/failed.json")
    assert failed.ret == pytest.ExitCode.TESTS_FAILED
    printed = failed.stdout.str() + failed.stderr.str()
    assert "HTTP 401" in printed and "Incorrect API key provided: ***" in printed and "set $OPENAI_API_KEY" in printed

    written = every_file(project.path / "out") + every_file(project.path / "cache") + every_file(project.path / "baselines")
    assert {p.name for p in written} >= {"results.json", "report.html", "junit.xml", "generations.sqlite",
                                         "demo.json", "answer_key.json", "packet.html"}
    for root in ("out", "cache", "baselines"):
        assert files_with(project.path / root, SECRET) == []
        assert files_with(project.path / root, SECRET[8:]) == []  # not even a part of it
    for output in (passed, failed):
        text = output.stdout.str() + output.stderr.str()
        assert SECRET not in text and SECRET[8:] not in text
    assert "OPENAI_API_KEY" not in json.dumps(results)  # not even the name in provenance
