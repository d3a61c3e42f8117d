"""The replay backend: saved predictions in, generations out, no model."""

from __future__ import annotations

import json

import pytest

from ftevals.backends import make_backend
from ftevals.backends.base import Backend, GenerationRequest
from ftevals.backends.replay import ReplayBackend, ReplaySettings, export_predictions, load_predictions
from ftevals.cache import cache_key
from ftevals.data import Message
from ftevals.errors import BackendError, DatasetError, ResultsError
from ftevals.specs import ModelSpec, SamplingSpec

MSGS = (Message("user", "Where is my card?"),)


def results_record() -> dict:
    """A minimal valid results file (docs/results-schema.md): two suites sharing an example."""

    def example(ex_id: str, base: str, tuned: str) -> dict:
        return {
            "id": ex_id,
            "input": "q",
            "messages": [m.to_dict() for m in MSGS],
            "reference": "card_arrival",
            "outputs": {
                "base": {"text": base, "scores": {}, "tokens_in": 12, "tokens_out": 3, "finish_reason": "stop"},
                "tuned": {"text": tuned, "scores": {}, "tokens_in": 12, "tokens_out": 2, "finish_reason": "length"},
            },
        }

    def suite(name: str, examples: list[dict]) -> dict:
        return {"name": name, "models": ["base", "tuned"], "metrics": [], "scores": {}, "examples": examples}

    return {
        "schema": "ftevals.results",
        "schema_version": 1,
        "run": {"id": "r1"},
        "models": {},
        "suites": [
            suite("s1", [example("ex-1", "Card location", "card_arrival"), example("ex-2", "", "lost_card")]),
            suite("s2", [example("ex-2", "", "lost_card")]),
        ],
    }


def request(backend: Backend, model: str, ex_id: str) -> GenerationRequest:
    spec = ModelSpec(model)
    return GenerationRequest(f"{model}/{ex_id}", spec, MSGS, backend.render(spec, MSGS), SamplingSpec(), ex_id)


def test_round_trip_from_a_results_record(tmp_path):
    preds = tmp_path / "preds.jsonl"
    assert export_predictions(results_record(), preds) == 4  # ex-2 is shared by both suites: once
    (tmp_path / "results.json").write_text(json.dumps(results_record()))
    assert export_predictions(tmp_path / "results.json", tmp_path / "again.jsonl") == 4
    assert (tmp_path / "again.jsonl").read_bytes() == preds.read_bytes()

    backend = make_backend("replay", {}, {"path": str(preds)})
    assert isinstance(backend, ReplayBackend) and isinstance(backend, Backend)
    gens = backend.generate([request(backend, "tuned", "ex-1"), request(backend, "base", "ex-1"), request(backend, "base", "ex-2")])
    assert [g.text for g in gens] == ["card_arrival", "Card location", ""]
    assert (gens[0].tokens_in, gens[0].tokens_out, gens[0].finish_reason) == (12, 2, "length")
    assert backend.render(ModelSpec("base"), MSGS) == backend.render(ModelSpec("base"), MSGS)


def test_export_only_some_models_and_refuse_conflicts(tmp_path):
    export_predictions(results_record(), tmp_path / "p.jsonl", models=["tuned"])
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert {r["model"] for r in rows} == {"tuned"} and len(rows) == 2

    record = results_record()
    record["suites"][1]["examples"][0]["outputs"]["tuned"]["text"] = "something else"
    with pytest.raises(ResultsError, match="suites 's1' and 's2' hold different outputs of model 'tuned'"):
        export_predictions(record, tmp_path / "q.jsonl")
    with pytest.raises(ResultsError, match="no such results file"):
        export_predictions(tmp_path / "nope.json", tmp_path / "q.jsonl")


def test_missing_predictions_are_listed_with_a_count(tmp_path):
    preds = tmp_path / "preds.jsonl"
    preds.write_text(json.dumps({"model": "base", "id": "ex-0", "text": "x"}) + "\n")
    backend = ReplayBackend({}, ReplaySettings(str(preds)))
    reqs = [request(backend, "base", f"ex-{i}") for i in range(13)] + [request(backend, "tuned", "ex-0")]
    with pytest.raises(BackendError) as info:
        backend.generate(reqs)
    msg = str(info.value)
    assert "no prediction for 13 of 14 requests" in msg
    assert "(base, ex-1)" in msg and "(base, ex-10)" in msg and "(base, ex-11)" not in msg
    assert "and 3 more" in msg and "for the models base" in msg


def test_bad_rows_are_all_reported_as_file_line(tmp_path):
    preds = tmp_path / "preds.jsonl"
    preds.write_text(
        "\n".join(
            [
                json.dumps({"model": "base", "id": "a", "text": "ok"}),
                "{not json",
                json.dumps({"model": "base", "id": "b"}),
                "",
                json.dumps({"model": "", "id": "c", "text": "t"}),
                json.dumps({"model": "base", "id": "a", "text": "again"}),
                json.dumps({"model": "base", "id": "d", "text": "t", "tokens_out": -1}),
                json.dumps(["a", "list"]),
            ]
        )
        + "\n"
    )
    with pytest.raises(DatasetError) as info:
        ReplayBackend({}, ReplaySettings(str(preds)))
    lines = [str(p) for p in info.value.problems]
    assert [p.line for p in info.value.problems] == [2, 3, 5, 6, 7, 8]
    assert lines[0].startswith(f"{preds}:2: not valid JSON")
    assert '"text" must be a string' in lines[1] and "got missing" in lines[1]
    assert '"model" must be a non-empty string' in lines[2]
    assert "duplicate prediction for model 'base', id 'a' (first at line 1)" in lines[3]
    assert '"tokens_out" must be a whole number' in lines[4]
    assert "expected a JSON object" in lines[5]

    with pytest.raises(DatasetError, match="cannot read the predictions file"):
        load_predictions(tmp_path / "absent.jsonl")


def test_identity_follows_file_content_not_path(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text(json.dumps({"model": "base", "id": 1, "text": "x"}) + "\n")
    b.write_bytes(a.read_bytes())
    first = ReplayBackend({}, ReplaySettings(str(a)))
    assert first.generate([request(first, "base", "1")])[0].text == "x"  # integer ids are read as strings
    assert ReplayBackend({}, ReplaySettings(str(b))).identity() == first.identity()

    a.write_text(json.dumps({"model": "base", "id": 1, "text": "y"}) + "\n")
    changed = ReplayBackend({}, ReplaySettings(str(a)))
    assert changed.identity() != first.identity()
    key = lambda backend: cache_key(  # noqa: E731 - what generate.py computes
        backend=backend.identity(), base_fingerprint="f", adapter_fingerprint=None,
        prompt=backend.render(ModelSpec("base"), MSGS), sampling=SamplingSpec().to_dict(),
    )
    assert key(changed) != key(first)
