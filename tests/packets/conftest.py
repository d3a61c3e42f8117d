"""Fixtures for the packet tests: a realistic synthetic results file and simulated raters.

The results dict follows docs/results-schema.md: a base model and two adapters, a summarisation
suite and a classification suite, ~40 examples each, with per-example scores, comparisons listing
fixes and regressions, fingerprints, adapter paths and usage, i.e. every kind of identifying string
the blinding test must not find in a rater's files.

Simulated raters know each model's true quality (they peek at the answer key, which real raters
never see) and answer with a personal bias and seeded noise, so tests can check that importing the
sheets recovers the truth.
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

BASE = "base"
SUM_ADAPTER = "dialogsum-lora"
TONE_ADAPTER = "tone-r8"
INTENT_ADAPTER = "banking77"

#: Latent quality on the 1..5 scale: the ordering the import must recover.
TRUE_QUALITY = {BASE: 2.3, SUM_ADAPTER: 3.9, TONE_ADAPTER: 3.2, INTENT_ADAPTER: 4.0}

_PEOPLE = ["Anna", "Ben", "Chloe", "Dev", "Emre", "Fay", "Gus", "Hana"]
_TOPICS = ["a delayed parcel", "a gym membership", "weekend plans", "a broken laptop", "a job interview",
           "a lost passport", "the rent increase", "a birthday dinner", "a train strike", "a new recipe"]
_INTENTS = ["card_arrival", "lost_or_stolen_card", "exchange_rate", "top_up_failed", "pin_blocked"]


def _fp(rng: random.Random) -> str:
    return "sha256:" + "".join(rng.choice("0123456789abcdef") for _ in range(64))


def _model_entry(name: str, adapter: str | None, rng: random.Random, base_fp: str) -> dict[str, Any]:
    return {
        "name": name, "base": "default", "adapter": adapter, "fewshot": 0,
        "base_fingerprint": base_fp, "adapter_fingerprint": _fp(rng) if adapter else None,
        "adapter_rank": 16 if adapter else None,
    }


def _summary_example(i: int, rng: random.Random, models: list[str]) -> dict[str, Any]:
    a, b = rng.sample(_PEOPLE, 2)
    topic = rng.choice(_TOPICS)
    dialogue = (f"#Person1#: Hi {b}, do you have a minute to talk about {topic}?\n"
                f"#Person2#: Sure {a}, what happened?\n"
                f"#Person1#: It has been a week and nothing has changed. I am getting worried.\n"
                f"#Person2#: Let us call them together tomorrow morning.")
    reference = f"{a} is worried about {topic}; {b} offers to call together tomorrow."
    outputs = {}
    for m in models:
        q = TRUE_QUALITY[m] + rng.gauss(0, 0.6)
        if q > 3.5:
            text = f"{a} tells {b} about {topic}, which has not moved for a week; they agree to call tomorrow."
        elif q > 2.5:
            text = f"{a} and {b} talk about {topic}."
        else:
            text = f"Summary: The people talk. {topic.capitalize()} is mentioned. The people talk again."
        if i == 3 and m == models[1]:
            text = "<script>alert('x')</script> & <b>bold</b> " + text  # untrusted output must be escaped
        rouge_l = max(0.0, min(1.0, 0.15 * q + rng.gauss(0, 0.05)))
        rouge_1 = max(0.0, min(1.0, 0.17 * q + rng.gauss(0, 0.08)))
        outputs[m] = {"text": text, "scores": {"rougeL": round(rouge_l, 4), "rouge1": round(rouge_1, 4)},
                      "tokens_in": 120 + i, "tokens_out": len(text.split()), "finish_reason": "stop"}
    messages = [{"role": "system", "content": "Summarise the dialogue in one sentence."},
                {"role": "user", "content": dialogue}]
    if i == 5:  # one multi-turn example: earlier turns are shown as context
        messages = [messages[0], {"role": "user", "content": "Please be brief."},
                    {"role": "assistant", "content": "Understood."}, messages[1]]
    return {"id": f"dialogsum-test-{i:05d}", "input": dialogue, "messages": messages, "reference": reference,
            "metadata": {"topic": topic}, "outputs": outputs}


def _intent_example(i: int, rng: random.Random, models: list[str]) -> dict[str, Any]:
    label = rng.choice(_INTENTS)
    text = {"card_arrival": "When will my new card get here?", "lost_or_stolen_card": "I think someone took my card.",
            "exchange_rate": "What rate do you use for euros?", "top_up_failed": "My top-up did not go through.",
            "pin_blocked": "My PIN is blocked after three tries."}[label]
    outputs = {}
    for m in models:
        right = rng.random() < (0.35 if m == BASE else 0.85)
        pred = label if right else rng.choice([x for x in _INTENTS if x != label])
        if m == BASE and rng.random() < 0.5:
            pred = f"The intent is probably {pred.replace('_', ' ')}."
        outputs[m] = {"text": pred, "scores": {"accuracy": 1.0 if pred == label else 0.0, "macro_f1": None},
                      "tokens_in": 64, "tokens_out": 3, "finish_reason": "stop"}
    return {"id": f"banking77-test-{i:05d}", "input": text,
            "messages": [{"role": "system", "content": "Answer with the intent label."}, {"role": "user", "content": text}],
            "reference": label, "metadata": {"label": label}, "outputs": outputs}


def _comparisons(examples: list[dict[str, Any]], reference: str, models: list[str], metrics: list[dict]) -> list[dict]:
    comps = []
    for m in models:
        if m == reference:
            continue
        for metric in metrics:
            name = metric["name"]
            pairs = [(e["id"], e["outputs"][m]["scores"].get(name), e["outputs"][reference]["scores"].get(name))
                     for e in examples]
            pairs = [(i, a, b) for i, a, b in pairs if a is not None and b is not None]
            model_value = sum(a for _, a, _ in pairs) / len(pairs) if pairs else None
            reference_value = sum(b for _, _, b in pairs) / len(pairs) if pairs else None
            delta = None if model_value is None else model_value - reference_value
            binary = metric["kind"] == "binary"
            # Every key a comparison has in a results file (the packets only read the example lists;
            # the statistics are plausible placeholders).
            comp = {"model": m, "reference": reference, "metric": name, "kind": metric["kind"],
                    "higher_is_better": True, "model_value": model_value, "reference_value": reference_value,
                    "delta": delta, "ci_low": None if delta is None else delta - 0.1,
                    "ci_high": None if delta is None else delta + 0.1, "n": len(pairs),
                    "test": "mcnemar-exact" if binary else "paired-bootstrap", "p_value": 0.01, "resamples": 2000,
                    "bootstrap_seed": 0, "alpha": 0.05, "verdict": "improved"}
            if binary:
                comp["fixes"] = [i for i, a, b in pairs if a > b]
                comp["regressions"] = [i for i, a, b in pairs if a < b]
            else:
                drops = sorted(((i, a - b) for i, a, b in pairs), key=lambda t: t[1])[:20]
                comp["largest_drops"] = [{"id": i, "delta": round(d, 4)} for i, d in drops]
            comps.append(comp)
    return comps


def make_results(n_examples: int = 40, seed: int = 7) -> dict[str, Any]:
    rng = random.Random(seed)
    base_fp = _fp(rng)
    models = {
        BASE: _model_entry(BASE, None, rng, base_fp),
        SUM_ADAPTER: _model_entry(SUM_ADAPTER, "adapters/dialogsum-lora", rng, base_fp),
        TONE_ADAPTER: _model_entry(TONE_ADAPTER, "/srv/adapters/tone-r8-v2", rng, base_fp),
        INTENT_ADAPTER: _model_entry(INTENT_ADAPTER, "adapters/banking77", rng, base_fp),
    }
    sum_models = [BASE, SUM_ADAPTER, TONE_ADAPTER]
    sum_metrics = [{"name": "rougeL", "higher_is_better": True, "kind": "continuous", "primary": True, "range": [0, 1]},
                   {"name": "rouge1", "higher_is_better": True, "kind": "continuous", "primary": False, "range": [0, 1]}]
    sum_examples = [_summary_example(i, rng, sum_models) for i in range(n_examples)]
    int_models = [BASE, INTENT_ADAPTER]
    int_metrics = [{"name": "accuracy", "higher_is_better": True, "kind": "binary", "primary": True, "range": [0, 1]},
                   {"name": "macro_f1", "higher_is_better": True, "kind": "continuous", "primary": False, "range": [0, 1]}]
    int_examples = [_intent_example(i, rng, int_models) for i in range(n_examples)]

    def suite(name: str, task: str, ms: list[str], metrics: list[dict], examples: list[dict], path: str) -> dict:
        return {
            "name": name, "task": task, "description": f"{name} evaluation",
            "dataset": {"name": "test", "path": path, "fingerprint": _fp(rng), "n_examples": len(examples),
                        "n_total": 500, "sample_seed": 0},
            "sampling": {"max_tokens": 64, "temperature": 0.0, "top_p": 1.0, "seed": 0, "stop": []},
            "reference": BASE, "models": ms, "metrics": metrics,
            "scores": {m: {x["name"]: {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6} for x in metrics} for m in ms},
            "details": {}, "comparisons": _comparisons(examples, BASE, ms, metrics), "prompting": None, "gates": [],
            "contamination": None, "baseline": None,
            "usage": {m: {"requests": len(examples), "cached": 0, "tokens_in": 9000, "tokens_out": 800, "wall_s": 3.0,
                          "tokens_per_s": 266.0, "latency_p50_s": None, "latency_p90_s": None, "latency_p99_s": None}
                      for m in ms},
            "rubric": None,
            "examples": sorted(examples, key=lambda e: e["id"]),
            "human": None,
        }

    return {
        "schema": "ftevals.results",
        "schema_version": 1,
        "run": {"id": "2026-11-21T10-02-03Z-1a2b3c", "started_at": "2026-11-21T10:02:03Z",
                "finished_at": "2026-11-21T10:09:40Z", "seed": 0, "ftevals_version": "0.1.0", "python": "3.11.7",
                "platform": "Linux-x86_64", "libraries": {"vllm": "0.32.0"}, "git": {"commit": "abc123", "dirty": False},
                "backend": {"name": "vllm", "settings": {"dtype": "float32"}}, "argv": ["pytest", "suites/"],
                "timings": {"total_s": 301.2}},
        "models": models,
        "suites": [
            suite("dialogsum", "generation", sum_models, sum_metrics, sum_examples, "data/dialogsum/test.jsonl"),
            suite("banking77", "classification", int_models, int_metrics, int_examples, "data/banking77/test.jsonl"),
        ],
    }


@pytest.fixture
def results() -> dict[str, Any]:
    return make_results()


# -- simulated raters ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SimRater:
    """A rater with a personal bias and noise; `random_answers` ignores the responses entirely."""

    name: str
    bias: float = 0.0
    noise: float = 0.5
    random_answers: bool = False


def _ranking(utilities: Mapping[str, float], tie_margin: float) -> str:
    order = sorted(utilities, key=lambda k: -utilities[k])
    text = order[0]
    for prev, cur in zip(order, order[1:]):
        text += ("=" if utilities[prev] - utilities[cur] < tie_margin else ">") + cur
    return text


def fill_answers(
    packet_dir: Path, raters: list[SimRater], seed: int = 0, quality: Mapping[str, float] | None = None
) -> dict[tuple[str, str], dict[str, Any]]:
    """Answers per (rater, item code): column -> value, as a diligent (or careless) rater would give.

    `quality` is each model's true mean score (default TRUE_QUALITY; unknown models get 3.0).
    """
    quality = TRUE_QUALITY if quality is None else quality
    key = json.loads((packet_dir / "key" / "answer_key.json").read_text())
    manifest = json.loads((packet_dir / "manifest.json").read_text())
    rng = random.Random(seed)
    # One latent quality per item and model, shared by raters: what makes agreement possible.
    latent: dict[tuple[str, str], float] = {}
    for code, item in sorted(key["items"].items()):
        for model in item["letters"].values():
            latent[(code, model)] = quality.get(model, 3.0) + rng.gauss(0, 0.5)
    answers = {}
    by_name = {r.name: r for r in raters}
    for entry in manifest["raters"]:
        sim = by_name[entry["rater"]]
        for part, codes in entry["items"].items():
            criteria = key["parts"][part]["rubric"]["criteria"]
            for code in codes:
                item = key["items"][code]
                row: dict[str, Any] = {}
                utilities = {}
                for letter, model in item["letters"].items():
                    base_q = latent[(code, model)]
                    utilities[letter] = base_q + rng.gauss(0, sim.noise) if not sim.random_answers else rng.random()
                    for c in criteria:
                        if sim.random_answers:
                            score = rng.randint(1, 5)
                        else:
                            score = round(base_q + sim.bias + rng.gauss(0, sim.noise))
                        row[f"{letter}_{c['id']}"] = max(1, min(5, score))
                row["preference"] = _ranking(utilities, 0.25)
                row["comment"] = "" if rng.random() < 0.8 else f"Note from {sim.name}: é, \"quotes\", commas"
                answers[(entry["rater"], code)] = row
    return answers


def write_filled_sheets(
    packet_dir: Path, answers: Mapping[tuple[str, str], Mapping[str, Any]], out: Path, *, jsonl_for: set[str] = frozenset(),
    edit: Callable[[str, str, dict[str, Any]], dict[str, Any] | None] | None = None,
) -> list[Path]:
    """Fill each rater's blank sheets (the files raters received) and write them under `out`.

    `edit(rater, part, row)` may change or drop (return None) rows to make broken sheets.
    """
    manifest = json.loads((packet_dir / "manifest.json").read_text())
    paths = []
    out.mkdir(parents=True, exist_ok=True)
    for entry in manifest["raters"]:
        rater = entry["rater"]
        for part in entry["items"]:
            use_jsonl = rater in jsonl_for
            src = packet_dir / "raters" / rater / f"{part}.{'jsonl' if use_jsonl else 'csv'}"
            dst = out / f"{rater}-{part}.{'jsonl' if use_jsonl else 'csv'}"
            if use_jsonl:
                rows = [json.loads(line) for line in src.read_text(encoding="utf-8").splitlines() if line.strip()]
                filled = []
                for row in rows:
                    row.update(answers[(rater, row["item"])])
                    row = edit(rater, part, row) if edit else row
                    if row is not None:
                        filled.append(json.dumps(row, ensure_ascii=False))
                dst.write_text("\n".join(filled) + "\n", encoding="utf-8")
            else:
                reader = csv.DictReader(io.StringIO(src.read_text(encoding="utf-8-sig")))
                buf = io.StringIO()
                writer = csv.DictWriter(buf, fieldnames=list(reader.fieldnames or []), lineterminator="\r\n")
                writer.writeheader()
                for row in reader:
                    row.update({k: str(v) for k, v in answers[(rater, row["item"])].items()})
                    row = edit(rater, part, row) if edit else row
                    if row is not None:
                        writer.writerow(row)
                dst.write_text(buf.getvalue(), encoding="utf-8")
            paths.append(dst)
    return paths


# -- blinding scan --------------------------------------------------------------------------------


def _rater_facing(root: Path) -> dict[str, str]:
    """Every file a rater may see: their folders and the (blinded) manifest. Not the key."""
    files = {p.relative_to(root).as_posix(): p.read_text(encoding="utf-8")
             for p in sorted((root / "raters").rglob("*")) if p.is_file()}
    files["manifest.json"] = (root / "manifest.json").read_text(encoding="utf-8")
    return files


def _identifying_strings(results: dict[str, Any]) -> set[str]:
    """Everything that could tell a rater which model wrote a response, or which example it is."""
    found: set[str] = {"results.json", "results"}
    for name, model in (results.get("models") or {}).items():
        found.add(name)
        for key in ("adapter", "base_fingerprint", "adapter_fingerprint"):
            value = (model or {}).get(key)
            if isinstance(value, str):
                found.add(value)
                if value.startswith("sha256:"):
                    found.add(value.split(":", 1)[1])
                    found.add(value.split(":", 1)[1][:12])  # a short form often shown in reports
                if "/" in value:
                    found.add(value.rstrip("/").rsplit("/", 1)[-1])
    for suite in results["suites"]:
        found.add(suite["name"])
        found.update(m for m in suite.get("models") or [] if isinstance(m, str))
        dataset = suite.get("dataset") or {}
        for value in (dataset.get("path"), dataset.get("fingerprint")):
            if isinstance(value, str):
                found.add(value)
                found.add(value.split(":", 1)[-1])
        for ex in suite.get("examples") or []:
            found.add(str(ex.get("id")))
    found.add(str((results.get("run") or {}).get("id")))
    # Values too generic to identify anything ("default" is the base-model alias).
    return {s for s in found if s and s not in {"default", "test", "None"}}


def _displayed_text(results: dict[str, Any]) -> str:
    """Text that raters legitimately see (inputs, references, outputs): a name that happens to be
    a word in it cannot be held against the packet."""
    parts = []
    for suite in results["suites"]:
        parts.append(json.dumps(suite.get("rubric"), ensure_ascii=False))
        for ex in suite.get("examples") or []:
            parts.append(str(ex.get("input")))
            parts.append(json.dumps(ex.get("reference"), ensure_ascii=False))
            parts.extend(str(m.get("content")) for m in ex.get("messages") or [])
            parts.extend(str(o.get("text")) for o in (ex.get("outputs") or {}).values())
    return "\n".join(parts)


def _word(needle: str) -> re.Pattern[str]:
    # Whole words only ("base" must not match "database"); '-' counts as part of a name.
    return re.compile(rf"(?<![\w-]){re.escape(needle)}(?![\w-])", re.I)


def needles_for(results: dict[str, Any]) -> list[str]:
    shown = _displayed_text(results)
    return sorted(s for s in _identifying_strings(results) if not _word(s).search(shown))


def scan_for_leaks(root: Path, results: dict[str, Any]) -> list[str]:
    """"file: string" for every identifying string found in a rater-facing file."""
    needles = needles_for(results)
    leaks = []
    for name, text in _rater_facing(root).items():
        for needle in needles:
            if _word(needle).search(text):
                leaks.append(f"{name}: {needle}")
    return leaks


@pytest.fixture(scope="session")
def leaks() -> Any:
    """The blinding scan: `leaks.scan(packet_dir, results)` lists "file: string" for every leak."""

    class Leaks:
        scan = staticmethod(scan_for_leaks)
        needles = staticmethod(needles_for)

    return Leaks


@pytest.fixture(scope="session")
def sim() -> Any:
    """The simulation helpers, as one object (test modules import nothing from conftest)."""

    class Sim:
        SimRater = SimRater
        fill_answers = staticmethod(fill_answers)
        write_filled_sheets = staticmethod(write_filled_sheets)
        make_results = staticmethod(make_results)
        TRUE_QUALITY = TRUE_QUALITY
        BASE = BASE
        SUM_ADAPTER = SUM_ADAPTER
        TONE_ADAPTER = TONE_ADAPTER
        INTENT_ADAPTER = INTENT_ADAPTER

    return Sim
