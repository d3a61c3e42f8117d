"""A server backend that misbehaves, through a whole run: retries are bounded, errors say what failed
and what is kept, and every answer that did arrive is in the cache, so a re-run asks only for the rest.

The transport itself (connection refused, timeouts, 429 with Retry-After, 5xx, malformed JSON, a
400 that is not retried, fail-over between URLs) is tested request by request in
tests/backends/test_openai_backend.py; this file runs `pipeline.execute` against a local server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.fakeopenai import FakeOpenAI, Reply, closed_url, label_answer
from support.miniproject import banking77_rows

from ftevals.errors import BackendError
from ftevals.pipeline import RunConfig, execute, prepare
from ftevals.results import canonical
from ftevals.specs import ModelSpec
from ftevals.suite import Suite

N, CHUNK = 20, 8
TOTAL = 2 * N
MODELS = {"base": ModelSpec("base"), "tuned": ModelSpec("tuned", adapter="adapters/tuned")}


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    import json

    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in banking77_rows(N)), encoding="utf-8")
    return path


def run(dataset: Path, url: str, cache_dir: Path, cache_mode: str = "use", **options: Any) -> dict[str, Any]:
    suite = Suite(name="demo", task="classification", dataset=str(dataset), models=tuple(MODELS),
                  gates=("accuracy >= base - 0.05",))
    backend_options = {"base_urls": [url], "concurrency": 1, "backoff_s": 0.001, "max_retries": 2,
                       "timeout_s": 5.0, "api_key_env": None, **options}
    config = RunConfig(models=MODELS, backend="openai", backend_options=backend_options, cache_dir=cache_dir,
                       cache_mode=cache_mode, chunk_size=CHUNK, resamples=100)  # type: ignore[arg-type]
    return execute(prepare([suite], config)).to_dict()


def failure_of(results: dict) -> str:
    """The one model's failure: the run goes on and records it (its gate tests fail with it)."""
    (suite,) = results["suites"]
    assert suite["models"] == []  # the failed model is the suite's reference: nothing could be scored
    return str(suite["failures"]["base"])


def test_a_failure_part_way_keeps_every_answer_that_arrived(server: FakeOpenAI, dataset: Path,
                                                            tmp_path: Path) -> None:
    # The 11th request is refused for good (HTTP 400, not retried): the first chunk of 8 is done and
    # two requests of the second chunk had answers.
    server.respond = lambda body, n: Reply(400, {"error": {"message": "prompt too long"}}) if n == 11 else Reply()
    cache_dir = tmp_path / "cache"
    message = failure_of(run(dataset, server.url, cache_dir))
    assert "HTTP 400" in message and "prompt too long" in message
    assert message.endswith(f"; the 10 generations finished before the failure are kept in the cache "
                            f"{cache_dir / 'generations.sqlite'}; a re-run generates only the rest"), message
    # Nothing queued behind the failure was sent for the failed model; the other model went on.
    assert len([p for p in server.posts if p["model"] != "tuned"]) == 11

    # The server is fine again: the re-run asks for the 10 missing answers of the failed model only
    # (the other model's 20 answers were generated and kept while it failed).
    server.respond = lambda body, n: Reply()
    asked_before = len(server.posts)
    resumed = run(dataset, server.url, cache_dir)
    timings = resumed["run"]["timings"]
    assert (timings["cached"], timings["generated"]) == (TOTAL - 10, 10)
    assert len(server.posts) - asked_before == 10

    fresh = run(dataset, server.url, tmp_path / "fresh-cache")
    assert canonical(resumed) == canonical(fresh)


def test_without_a_cache_the_error_says_the_answers_are_lost(server: FakeOpenAI, dataset: Path,
                                                              tmp_path: Path) -> None:
    server.respond = lambda body, n: Reply(400, {"error": {"message": "prompt too long"}}) if n == 11 else Reply()
    message = failure_of(run(dataset, server.url, tmp_path / "cache", cache_mode="off"))
    assert message.endswith("; the cache is off (--ftevals-cache off), so the 10 generations finished "
                            "before the failure are lost"), message
    assert not (tmp_path / "cache").exists()


def test_transient_faults_are_retried_a_bounded_number_of_times(server: FakeOpenAI, dataset: Path,
                                                                tmp_path: Path) -> None:
    # Every request: first a 429 (Retry-After 0), then a 200 whose body is not JSON, then the answer.
    def flaky(body: dict[str, Any], n: int) -> Reply:
        attempt = server.attempt(body)
        if attempt == 1:
            return Reply(429, {"error": {"message": "slow down"}}, {"Retry-After": "0"})
        if attempt == 2:
            return Reply(200, b"<html>502 Bad Gateway</html>")
        return Reply()

    server.respond = flaky
    results = run(dataset, server.url, tmp_path / "cache", max_retries=2)
    assert len(server.posts) == 3 * TOTAL
    outputs = [ex["outputs"]["base"]["text"] for ex in results["suites"][0]["examples"]]
    assert outputs == [label_answer({"messages": ex["messages"]}) for ex in results["suites"][0]["examples"]]

    # One retry fewer and the malformed body is the last word: a clear error, nothing retried for ever.
    server.reset()
    message = failure_of(run(dataset, server.url, tmp_path / "cache2", max_retries=1))
    assert "failed after 2 attempts; last error: malformed response" in message and "502 Bad Gateway" in message
    # One request, two attempts, then the model stops; the other model fails alike on its own.
    assert [p["model"] for p in server.posts].count("tuned") == 2 and len(server.posts) == 4


def test_connection_refused_names_the_server_and_keeps_nothing_half_written(dataset: Path, tmp_path: Path) -> None:
    url = closed_url()  # nothing listens there
    cache_dir = tmp_path / "cache"
    with pytest.raises(BackendError) as info:
        run(dataset, url, cache_dir, max_retries=1)
    message = str(info.value)
    assert f"GET {url}/models" in message or url in message
    assert "failed after 2 attempts; last error: connection failed (ConnectionRefusedError" in message, message
    assert "Is the server up and healthy?" in message
