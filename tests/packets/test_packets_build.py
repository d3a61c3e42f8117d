"""Building packets: layout, determinism, blinding, rater assignment, rubrics and option checks."""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ftevals.errors import ConfigError, ResultsError
from ftevals.packets import build_packets, default_rubric, load_rubric, packaged_rubrics
from ftevals.results import from_data


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# -- layout and determinism -------------------------------------------------------------------


def test_layout(results: dict[str, Any], tmp_path: Path) -> None:
    m = build_packets(results, tmp_path / "p", n_per_suite=12, raters=3)
    files = set(_tree(tmp_path / "p"))
    expected = {"manifest.json", "key/answer_key.json"}
    for r in ("r1", "r2", "r3"):
        expected |= {f"raters/{r}/packet.html", *(f"raters/{r}/part-{i}.{ext}" for i in (1, 2) for ext in ("csv", "jsonl"))}
    assert files == expected
    assert m.raters == ("r1", "r2", "r3")
    assert [(p.part, p.suite, p.n_items) for p in m.parts] == [("part-1", "dialogsum", 12), ("part-2", "banking77", 12)]
    assert m.key_path == (tmp_path / "p" / "key" / "answer_key.json").resolve()
    assert "keep" in m.summary() and "dialogsum" in m.summary()
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    for rel, digest in manifest["files"].items():
        assert digest == "sha256:" + hashlib.sha256((tmp_path / "p" / rel).read_bytes()).hexdigest()


def test_same_seed_gives_identical_files(results: dict[str, Any], tmp_path: Path) -> None:
    a = build_packets(results, tmp_path / "a", n_per_suite=20, raters=4, seed=5)
    b = build_packets(json.loads(json.dumps(results)), tmp_path / "b", n_per_suite=20, raters=4, seed=5)
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    assert a.packet_id == b.packet_id
    # Rebuilding in place (overwrite) also reproduces the files byte for byte.
    build_packets(results, tmp_path / "a", n_per_suite=20, raters=4, seed=5, overwrite=True)
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")


def test_other_seed_gives_other_packet(results: dict[str, Any], tmp_path: Path) -> None:
    build_packets(results, tmp_path / "a", n_per_suite=20, seed=1)
    build_packets(results, tmp_path / "b", n_per_suite=20, seed=2)
    key_a = json.loads((tmp_path / "a/key/answer_key.json").read_text())
    key_b = json.loads((tmp_path / "b/key/answer_key.json").read_text())
    assert set(key_a["items"]) != set(key_b["items"])


def test_overwrite_rules(results: dict[str, Any], tmp_path: Path) -> None:
    build_packets(results, tmp_path / "p", n_per_suite=5)
    with pytest.raises(ConfigError, match="not empty"):
        build_packets(results, tmp_path / "p", n_per_suite=5)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="holds no ftevals packet"):
        build_packets(results, tmp_path / "other", n_per_suite=5, overwrite=True)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    # A smaller packet over a bigger one leaves no stale rater folder behind.
    build_packets(results, tmp_path / "big", n_per_suite=5, raters=5)
    build_packets(results, tmp_path / "big", n_per_suite=5, raters=3, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "big" / "raters").iterdir()) == ["r1", "r2", "r3"]


# -- blinding ------------------------------------------------------------------------------------


def test_no_identifying_string_in_rater_facing_files(results: dict[str, Any], tmp_path: Path, leaks: Any) -> None:
    build_packets(results, tmp_path / "p", n_per_suite=40, raters=3)
    needles = set(leaks.needles(results))
    # The check must really look for the things that matter (a sanity check of the scan itself).
    assert {"base", "dialogsum-lora", "tone-r8", "banking77", "dialogsum", "adapters/dialogsum-lora",
            "/srv/adapters/tone-r8-v2", "tone-r8-v2", "dialogsum-test-00003", "results.json"} <= needles
    assert any(len(n) == 64 for n in needles)  # fingerprints
    assert leaks.scan(tmp_path / "p", results) == []
    # ... and the key, which raters never get, does hold them: proof the scan would find a leak.
    key = (tmp_path / "p" / "key" / "answer_key.json").read_text()
    assert "dialogsum-lora" in key and "dialogsum-test-00003" in key


def test_scan_detects_a_planted_leak(results: dict[str, Any], tmp_path: Path, leaks: Any) -> None:
    build_packets(results, tmp_path / "p", n_per_suite=5)
    target = tmp_path / "p" / "raters" / "r2" / "packet.html"
    target.write_text(target.read_text() + "<!-- adapters/dialogsum-lora -->")
    assert leaks.scan(tmp_path / "p", results) == [
        "raters/r2/packet.html: adapters/dialogsum-lora", "raters/r2/packet.html: dialogsum-lora"]


def test_letters_vary_and_are_balanced(results: dict[str, Any], tmp_path: Path) -> None:
    build_packets(results, tmp_path / "p", n_per_suite=40)
    key = json.loads((tmp_path / "p" / "key" / "answer_key.json").read_text())
    for part in ("part-1", "part-2"):
        items = [it for it in key["items"].values() if it["part"] == part]
        k = len(items[0]["letters"])
        position = Counter(next(L for L, m in it["letters"].items() if m == "base") for it in items)
        assert len(position) == k, "the reference must appear in every position"
        # Whole blocks of all k! orders are dealt out, so positions are balanced to within a block.
        assert max(position.values()) - min(position.values()) <= 2
        # The letters are not tied to the selection stratum either (regressions are not "always A").
        by_stratum = {s: Counter(next(L for L, m in it["letters"].items() if m == "base") for it in items
                                 if it["stratum"] == s) for s in ("regression", "fix")}
        assert all(len(c) >= 2 for c in by_stratum.values() if sum(c.values()) >= 4)


def test_item_codes_are_opaque_and_order_is_random(results: dict[str, Any], tmp_path: Path) -> None:
    build_packets(results, tmp_path / "p", n_per_suite=30)
    key = json.loads((tmp_path / "p" / "key" / "answer_key.json").read_text())
    codes = list(key["items"])
    assert len(set(codes)) == len(codes)
    assert all(re.fullmatch(r"[A-Z][A-Z0-9]{5}", c) for c in codes)
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    for entry in manifest["raters"]:
        for part, order in entry["items"].items():
            examples = [key["items"][c]["example"] for c in order]
            assert order != sorted(order), "items must not be sorted by code"
            assert examples != sorted(examples), "items must not be in example-id order"
            csv_codes = [row["item"] for row in csv.DictReader(io.StringIO(
                (tmp_path / "p" / "raters" / entry["rater"] / f"{part}.csv").read_text(encoding="utf-8-sig")))]
            assert csv_codes == order
    # Different raters of the same part see the items in different orders.
    orders = [tuple(c for c in e["items"]["part-1"]) for e in manifest["raters"]]
    shared = set(orders[0]) & set(orders[1])
    assert [c for c in orders[0] if c in shared] != [c for c in orders[1] if c in shared]


def test_untrusted_text_is_escaped(results: dict[str, Any], tmp_path: Path) -> None:
    build_packets(results, tmp_path / "p", n_per_suite=40, raters=2)
    html = (tmp_path / "p" / "raters" / "r1" / "packet.html").read_text()
    assert "<script" not in html and "<b>bold</b>" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in html
    assert "@media print" in html and "Rubric" in html
    assert "Earlier in the conversation" in html and "Please be brief." in html  # the multi-turn example
    assert "Summarise the dialogue" not in html  # the system prompt is not shown


# -- raters ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raters", "per_item"), [(3, 2), (5, 2), (4, 3), (3, 3), (6, 2)])
def test_assignment_is_balanced_and_covers_pairs(results: dict[str, Any], tmp_path: Path, raters: int, per_item: int) -> None:
    m = build_packets(results, tmp_path / "p", n_per_suite=30, raters=raters, raters_per_item=per_item)
    key = json.loads((tmp_path / "p" / "key" / "answer_key.json").read_text())
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert all(len(it["raters"]) == per_item == len(set(it["raters"])) for it in key["items"].values())
    loads = [e["n_items"] for e in manifest["raters"]]
    assert max(loads) - min(loads) <= 1
    assert sum(loads) == 60 * per_item
    for part in ("part-1", "part-2"):
        together = Counter(pair for it in key["items"].values() if it["part"] == part
                           for pair in itertools.combinations(it["raters"], 2))
        assert set(together) == set(itertools.combinations(m.raters, 2)), "every pair must share items (kappa)"
    for entry in manifest["raters"]:
        for part, codes in entry["items"].items():
            assert all(entry["rater"] in key["items"][c]["raters"] and key["items"][c]["part"] == part for c in codes)


def test_named_raters(results: dict[str, Any], tmp_path: Path) -> None:
    m = build_packets(results, tmp_path / "p", n_per_suite=4, raters=["alice", "bo.b", "carol_2"])
    assert m.raters == ("alice", "bo.b", "carol_2")
    assert (tmp_path / "p" / "raters" / "bo.b" / "packet.html").is_file()


@pytest.mark.parametrize("bad", [["../evil", "b"], ["a/b", "c"], ["..", "x"], ["a", "a"], ["solo"], 1, "ab"])
def test_bad_rater_names_are_refused(results: dict[str, Any], tmp_path: Path, bad: Any) -> None:
    with pytest.raises(ConfigError):
        build_packets(results, tmp_path / "p", raters=bad)
    assert not (tmp_path / "evil").exists() and not (tmp_path / "p").exists()


def test_suite_names_cannot_escape(results: dict[str, Any], tmp_path: Path) -> None:
    results["suites"][0]["name"] = "../../escape"
    with pytest.raises(ConfigError, match="not allowed"):
        build_packets(results, tmp_path / "p")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"raters_per_item": 1}, "raters_per_item"),
        ({"raters": 3, "raters_per_item": 4}, "raters_per_item"),
        ({"n_per_suite": 0}, "n_per_suite"),
        ({"suites": ["nope"]}, "unknown suite"),
        ({"models": ["gpt-x"]}, "unknown model"),
        ({"rubrics": {"nope": "default"}}, "unknown suite"),
        ({"rubrics": {"dialogsum": "no-such-rubric"}}, "unknown rubric"),
    ],
)
def test_bad_options(results: dict[str, Any], tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_packets(results, tmp_path / "p", **kwargs)


def test_bad_results(results: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="schema version 9"):
        build_packets({"schema": "ftevals.results", "schema_version": 9, "suites": []}, tmp_path / "p")
    with pytest.raises(ResultsError, match="not an ftevals results file"):
        build_packets({"suites": []}, tmp_path / "p")
    with pytest.raises(ResultsError, match=r"suites\[0\]\.examples\[0\]\.outputs\.base"):
        broken = json.loads(json.dumps(results))
        broken["suites"][0]["examples"][0]["outputs"]["base"]["text"] = 3
        build_packets(broken, tmp_path / "p")
    with pytest.raises(ResultsError, match="results must be"):
        build_packets([results], tmp_path / "p")  # type: ignore[arg-type]
    for suite in results["suites"]:
        suite["models"] = ["base"]
    with pytest.raises(ConfigError, match="no suite can be rated"):
        build_packets(results, tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_records_and_dicts_give_the_same_packet(results: dict[str, Any], tmp_path: Path) -> None:
    build_packets(results, tmp_path / "a", n_per_suite=8, seed=4)
    build_packets(from_data(results), tmp_path / "b", n_per_suite=8, seed=4)
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")


# -- selection ---------------------------------------------------------------------------------


def test_selection_is_stratified(results: dict[str, Any], tmp_path: Path) -> None:
    m = build_packets(results, tmp_path / "p", n_per_suite=20)
    summary = {p.suite: p for p in m.parts}
    dialog = summary["dialogsum"]
    assert dialog.n_items == 20 and dialog.n_candidates == 40
    assert dialog.strata["regression"] == 5 and dialog.strata["fix"] == 5
    assert sum(dialog.strata.values()) == 20
    key = json.loads((tmp_path / "p" / "key" / "answer_key.json").read_text())
    # Every example listed as a regression of the intent adapter is a candidate for that stratum.
    comp = next(c for c in results["suites"][1]["comparisons"] if c["metric"] == "accuracy")
    chosen = {it["example"]: it["stratum"] for it in key["items"].values() if it["suite"] == "banking77"}
    assert all(s == "regression" for e, s in chosen.items() if e in comp["regressions"])


def test_disagreement_stratum(results: dict[str, Any], tmp_path: Path) -> None:
    """Metrics that disagree on an example (one says better, another worse) with no primary change."""
    suite = results["suites"][0]
    suite["metrics"].append({"name": "bleu", "higher_is_better": True, "kind": "continuous", "primary": False})
    for comp in suite["comparisons"]:
        comp["largest_drops"] = []
    for ex in suite["examples"]:
        for out in ex["outputs"].values():
            out["scores"]["bleu"] = 0.2
    for ex in suite["examples"][:6]:
        base = ex["outputs"]["base"]["scores"]
        ex["outputs"]["tone-r8"]["scores"] = dict(base)  # no change at all
        ex["outputs"]["dialogsum-lora"]["scores"] = {"rougeL": base["rougeL"], "rouge1": base["rouge1"] - 0.01,
                                                     "bleu": 0.3}
    m = build_packets(results, tmp_path / "p", n_per_suite=40, suites=["dialogsum"])
    assert m.parts[0].strata["disagreement"] == 6
    key = json.loads((tmp_path / "p/key/answer_key.json").read_text())
    assert {it["example"] for it in key["items"].values() if it["stratum"] == "disagreement"} == {
        ex["id"] for ex in suite["examples"][:6]}
    # A change of the primary metric takes priority: the same examples become fixes.
    for ex in suite["examples"][:6]:
        ex["outputs"]["dialogsum-lora"]["scores"]["rougeL"] += 0.01
    m = build_packets(results, tmp_path / "q", n_per_suite=40, suites=["dialogsum"])
    assert m.parts[0].strata["disagreement"] == 0


def test_models_option_and_missing_outputs(results: dict[str, Any], tmp_path: Path) -> None:
    del results["suites"][0]["examples"][0]["outputs"]["tone-r8"]  # no output to compare
    m = build_packets(results, tmp_path / "p", n_per_suite=50, models=["tone-r8"], suites=["dialogsum"])
    assert m.parts[0].models == ("base", "tone-r8")  # the reference is always shown
    assert m.parts[0].n_candidates == 39 and m.parts[0].n_items == 39
    m = build_packets(results, tmp_path / "q", n_per_suite=50, models=["dialogsum-lora"])
    assert [p.suite for p in m.parts] == ["dialogsum"]  # banking77 has nothing left to compare


# -- rubrics ------------------------------------------------------------------------------------


def test_packaged_rubrics_load_for_every_task() -> None:
    assert set(packaged_rubrics()) == {"classification", "generation", "extraction", "default"}
    for task, name in [("classification", "classification"), ("generation", "generation"),
                       ("extraction", "extraction"), ("forgetting", "default"), ("custom", "default")]:
        rubric = default_rubric(task)
        assert rubric.name == name
        assert rubric.levels == (1, 2, 3, 4, 5)
        assert rubric.allow_tie
        assert all(len(c.anchors) == 5 and all(c.anchors) for c in rubric.criteria)
        assert load_rubric(rubric.to_dict()) == rubric


def test_suite_rubric_is_used(results: dict[str, Any], tmp_path: Path) -> None:
    results["suites"][0]["rubric"] = {
        "title": "Tone check",
        "criteria": [{"id": "tone", "label": "Tone", "question": "Is the tone friendly?",
                      "anchors": {str(i): f"level {i} tone" for i in range(1, 6)}}],
    }
    build_packets(results, tmp_path / "p", n_per_suite=5)
    header = (tmp_path / "p/raters/r1/part-1.csv").read_text(encoding="utf-8-sig").splitlines()[0]
    assert header == "rater,part,item,A_tone,B_tone,C_tone,preference,comment"
    html = (tmp_path / "p/raters/r1/packet.html").read_text()
    assert "Tone check" in html and "level 4 tone" in html
    key = json.loads((tmp_path / "p/key/answer_key.json").read_text())
    assert key["parts"]["part-1"]["rubric"]["name"] == "generation+custom"
    # The caller's `rubrics=` wins over the suite's own.
    build_packets(results, tmp_path / "q", n_per_suite=5, rubrics={"dialogsum": "default"})
    header = (tmp_path / "q/raters/r1/part-1.csv").read_text(encoding="utf-8-sig").splitlines()[0]
    assert "A_helpfulness" in header


@pytest.mark.parametrize(
    ("rubric", "message"),
    [
        ({"criteria": []}, "criteria must be a non-empty list"),
        ({"criteria": [{"id": "Bad Id", "question": "q", "anchors": {str(i): "x" for i in range(1, 6)}}]}, "criteria\\[0\\].id"),
        ({"criteria": [{"id": "a", "question": "q", "anchors": {"1": "x", "5": "y"}}]}, "anchors must describe every level"),
        ({"scale": {"min": 5, "max": 1}}, "scale must be"),
        ({"preference": {"question": "q", "allow_tie": "yes"}}, "allow_tie must be true or false"),
        ({"criteria": [{"id": "a", "question": "q", "anchors": {str(i): "x" for i in range(1, 6)}},
                       {"id": "a", "question": "q", "anchors": {str(i): "x" for i in range(1, 6)}}]}, "used twice"),
    ],
)
def test_bad_rubric(rubric: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_rubric(rubric, task="generation")


def test_strings_where_lists_are_expected(results: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"models must be a list of names, got the string 'base'; write \['base'\]"):
        build_packets(results, tmp_path / "p", models="base")  # type: ignore[arg-type]


def test_duplicate_suite_names_are_refused(results: dict[str, Any], tmp_path: Path) -> None:
    results["suites"][1]["name"] = results["suites"][0]["name"]
    with pytest.raises(ResultsError, match="repeated: dialogsum"):
        build_packets(results, tmp_path / "p")
