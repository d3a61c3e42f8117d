"""Synthetic, schema-exact results files for the report tests (docs/results-schema.md, version 1).

`make_results()` builds a realistic run: a base model, a LoRA adapter and a few-shot contender over
four suites (BANKING77-style classification with 24 labels, Restaurant-8k-style JSON extraction,
DialogSum-style summarisation, a GSM8K-style forgetting probe). Outputs are generated with a seeded
RNG and every derived number (scores, CIs, comparisons, flips, confusion matrices, error kinds) is
computed from the per-example outputs, so the file is internally consistent the way a real one is.
Exposed to tests as fixtures, because test modules cannot import a conftest.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ftevals.report.browser import INSTALL_COMMAND, BrowserNotFoundError, chromium_path

LABELS = [
    "card_arrival", "card_linking", "exchange_rate", "card_payment_wrong_exchange_rate",
    "extra_charge_on_statement", "pending_cash_withdrawal", "fiat_currency_support",
    "card_delivery_estimate", "automatic_top_up", "card_not_working", "exchange_via_app",
    "lost_or_stolen_card", "age_limit", "pin_blocked", "contactless_not_working",
    "top_up_by_bank_transfer_charge", "pending_top_up", "cancel_transfer", "top_up_limits",
    "wrong_amount_of_cash_received", "card_payment_fee_charged", "transfer_not_received_by_recipient",
    "supported_cards_and_currencies", "getting_virtual_card",
]
NAMES = ["Smith", "Garcia", "Okafor", "Nguyen", "Kowalski", "Haddad", "Larsen", "Moreau"]
WORDS = (
    "meeting report client budget weekend flight hotel doctor appointment project deadline "
    "manager interview apartment rent dinner party birthday present train ticket museum "
    "library exam holiday plan car repair insurance order delivery refund package"
).split()

MODELS = {
    "base": {"name": "base", "base": "default", "adapter": None, "fewshot": 0,
             "base_fingerprint": "sha256:" + "1" * 64, "adapter_fingerprint": None, "adapter_rank": None},
    "banking77": {"name": "banking77", "base": "default", "adapter": "adapters/banking77", "fewshot": 0,
                  "base_fingerprint": "sha256:" + "1" * 64, "adapter_fingerprint": "sha256:" + "2" * 64,
                  "adapter_rank": 16},
    "base-fewshot": {"name": "base-fewshot", "base": "default", "adapter": None, "fewshot": 8,
                     "base_fingerprint": "sha256:" + "1" * 64, "adapter_fingerprint": None, "adapter_rank": None},
    "banking77-r32": {"name": "banking77-r32", "base": "default", "adapter": "adapters/banking77-r32",
                      "fewshot": 0, "base_fingerprint": "sha256:" + "1" * 64,
                      "adapter_fingerprint": "sha256:" + "3" * 64, "adapter_rank": 32},
}
# How good each model is, per suite: P(correct) or closeness to the reference.
SKILL = {
    "classification": {"base": 0.15, "banking77": 0.82, "base-fewshot": 0.4, "banking77-r32": 0.86},
    "extraction": {"base": 0.35, "banking77": 0.75, "base-fewshot": 0.6, "banking77-r32": 0.78},
    "generation": {"base": 0.35, "banking77": 0.7, "base-fewshot": 0.69, "banking77-r32": 0.72},
    "forgetting": {"base": 0.55, "banking77": 0.42, "base-fewshot": 0.58, "banking77-r32": 0.4},
}
RESAMPLES = 300


# ---------------------------------------------------------------------------------------------------
# Statistics, computed the way the compare stage does (paired bootstrap, exact McNemar)


def _bootstrap(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(RESAMPLES, n))


def _score(values: np.ndarray, idx: np.ndarray, agg: Callable[[np.ndarray], float]) -> dict[str, float]:
    stats = np.array([agg(row) for row in idx])
    return {"value": round(agg(np.arange(len(values))), 6),
            "ci_low": round(float(np.percentile(stats, 2.5)), 6), "ci_high": round(float(np.percentile(stats, 97.5)), 6)}


def _mcnemar(b: int, c: int) -> float:
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def _compare(model: str, metric: dict[str, Any], ids: list[str], ref_vals: np.ndarray, vals: np.ndarray,
             agg_ref: Callable[[np.ndarray], float], agg: Callable[[np.ndarray], float], idx: np.ndarray) -> dict[str, Any]:
    deltas = np.array([agg(r) - agg_ref(r) for r in idx])
    full = np.arange(len(ids))
    delta = agg(full) - agg_ref(full)
    lo, hi = float(np.percentile(deltas, 2.5)), float(np.percentile(deltas, 97.5))
    good = 1 if metric["higher_is_better"] else -1
    verdict = "improved" if good * lo > 0 and good * hi > 0 and good * delta > 0 else (
        "regressed" if good * lo < 0 and good * hi < 0 and good * delta < 0 else "no_significant_change")
    comp: dict[str, Any] = {
        "model": model, "reference": "base", "metric": metric["name"], "kind": metric["kind"],
        "higher_is_better": metric["higher_is_better"], "model_value": round(agg(full), 6),
        "reference_value": round(agg_ref(full), 6), "delta": round(delta, 6), "ci_low": round(min(lo, hi), 6),
        "ci_high": round(max(lo, hi), 6), "n": len(ids), "resamples": RESAMPLES, "bootstrap_seed": 0, "alpha": 0.05,
        "verdict": verdict, "fixes": [], "regressions": [], "largest_drops": [],
    }
    if metric["kind"] == "binary" and not np.isnan(vals).any():
        comp["fixes"] = [i for i, a, b in zip(ids, ref_vals, vals) if a == 0 and b == 1]
        comp["regressions"] = [i for i, a, b in zip(ids, ref_vals, vals) if a == 1 and b == 0]
        comp["test"] = "mcnemar-exact"
        comp["p_value"] = _mcnemar(len(comp["fixes"]), len(comp["regressions"]))
    else:
        comp["test"] = "paired-bootstrap"
        comp["p_value"] = round(float(min(1.0, 2 * min((deltas <= 0).mean(), (deltas >= 0).mean()))), 6)
        if not np.isnan(vals).any():
            d = (vals - ref_vals) * good
            worst = [int(k) for k in np.argsort(d, kind="stable")[:20] if d[k] < 0]
            comp["largest_drops"] = [{"id": ids[k], "delta": round(float(vals[k] - ref_vals[k]), 6)} for k in worst]
    return comp


def _assemble(name: str, task: str, description: str, dataset: dict[str, Any], metrics: list[dict[str, Any]],
              models: Sequence[str], examples: list[dict[str, Any]],
              corpus: dict[str, Callable[[str, np.ndarray], float]] | None = None) -> dict[str, Any]:
    """Scores, CIs and comparisons from per-example scores; `corpus` overrides mean-of-examples metrics."""
    ids = [e["id"] for e in examples]
    idx = _bootstrap(len(ids), seed=len(ids))
    scores: dict[str, Any] = {m: {} for m in models}
    comparisons = []
    per = {(m, x["name"]): np.array([np.nan if (v := e["outputs"][m]["scores"][x["name"]]) is None else v for e in examples], dtype=float)
           for m in models for x in metrics}

    def agg_for(m: str, metric: str) -> Callable[[np.ndarray], float]:
        if corpus and metric in corpus:
            return lambda rows: corpus[metric](m, rows)
        vals = per[(m, metric)]
        return lambda rows: float(np.nanmean(vals[rows]))

    for x in metrics:
        for m in models:
            scores[m][x["name"]] = _score(per[(m, x["name"])], idx, agg_for(m, x["name"]))
        for m in models[1:]:
            comparisons.append(_compare(m, x, ids, per[(models[0], x["name"])], per[(m, x["name"])],
                                        agg_for(models[0], x["name"]), agg_for(m, x["name"]), idx))
    return {
        "name": name, "task": task, "description": description, "dataset": dataset,
        "sampling": {"max_tokens": 64, "temperature": 0.0, "top_p": 1.0, "seed": 0, "stop": []},
        "reference": models[0], "models": list(models), "metrics": metrics, "scores": scores, "details": {},
        "comparisons": comparisons, "prompting": None, "gates": [], "contamination": None,
        "baseline": {"path": f"suites/baselines/{name}.json", "status": "matched", "changes": []},
        "usage": {}, "examples": examples, "human": None,
    }


def _usage(models: Sequence[str], examples: list[dict[str, Any]], rng: random.Random) -> dict[str, Any]:
    out = {}
    for m in models:
        tin = sum(e["outputs"][m]["tokens_in"] for e in examples)
        tout = sum(e["outputs"][m]["tokens_out"] for e in examples)
        wall = round(tout / rng.uniform(20, 60) + len(examples) * 0.01, 3)
        out[m] = {"requests": len(examples), "cached": 0, "tokens_in": tin, "tokens_out": tout, "wall_s": wall,
                  "tokens_per_s": round(tout / wall, 2), "latency_p50_s": round(rng.uniform(0.2, 0.5), 3),
                  "latency_p90_s": round(rng.uniform(0.6, 0.9), 3), "latency_p99_s": round(rng.uniform(1.0, 2.0), 3)}
    return out


def _output(text: str, scores: dict[str, float | None], tokens_in: int, finish: str = "stop") -> dict[str, Any]:
    return {"text": text, "scores": scores, "tokens_in": tokens_in,
            "tokens_out": max(1, len(text.split()) * 4 // 3), "finish_reason": finish}


def _dataset(name: str, path: str, n: int, total: int) -> dict[str, Any]:
    return {"name": "test", "path": path, "fingerprint": "sha256:" + hashlib.sha256(name.encode()).hexdigest(),
            "n_examples": n, "n_total": total, "sample_seed": 0}


# ---------------------------------------------------------------------------------------------------
# The four suites


def classification_suite(n: int, models: Sequence[str], seed: int = 0, n_labels: int = len(LABELS)) -> dict[str, Any]:
    rng = random.Random(seed)
    labels = LABELS[:n_labels] + [f"intent_{k:02d}" for k in range(len(LABELS), n_labels)]
    phrasing = ["How do I sort out {}?", "I have a problem: {}.", "Can you help with {} please", "{} - what now?",
                "Why is there an issue with {} on my account?"]
    examples = []
    for k in range(n):
        gold = labels[rng.randrange(len(labels))]
        text = rng.choice(phrasing).format(gold.replace("_", " "))
        outputs = {}
        for m in models:
            roll = rng.random()
            if roll < SKILL["classification"][m]:
                pred = gold
            elif m == "base" and roll < 0.6:
                pred = rng.choice(["I'm sorry, I can't help with that.", "Card issue", "Please contact support."])
            else:  # confusion mostly with a neighbouring intent, as real models do
                pred = labels[(labels.index(gold) + rng.choice([1, 1, 1, 2, -1])) % len(labels)]
            outputs[m] = _output(pred, {"accuracy": float(pred == gold), "macro_f1": None}, 90 + len(text) // 4)
        examples.append({"id": f"banking77-test-{k:05d}", "input": text,
                         "messages": [{"role": "system", "content": "Classify the intent."}, {"role": "user", "content": text}],
                         "reference": gold, "metadata": {"label": gold}, "outputs": outputs})
    metrics = [{"name": "accuracy", "higher_is_better": True, "kind": "binary", "primary": True, "range": [0, 1]},
               {"name": "macro_f1", "higher_is_better": True, "kind": "continuous", "primary": False, "range": [0, 1]}]
    golds = [e["reference"] for e in examples]
    preds = {m: [e["outputs"][m]["text"] for e in examples] for m in models}

    def macro_f1(m: str, rows: np.ndarray) -> float:
        return _macro_f1(labels, [golds[i] for i in rows], [preds[m][i] for i in rows])["value"]

    suite = _assemble("banking77", "classification", f"BANKING77 intent classification: one of {len(labels)} intents.",
                      _dataset("banking77", "data/banking77/test.jsonl", n, 3080), metrics, models, examples,
                      corpus={"macro_f1": macro_f1})
    suite["details"] = {m: {metric: _macro_f1(labels, golds, preds[m])["details"] for metric in ("accuracy", "macro_f1")}
                        for m in models}
    adapter, contender = models[1], "base-fewshot"
    if contender in models:
        base_v, pv, av = (suite["scores"][x]["accuracy"]["value"] for x in (models[0], contender, adapter))
        share = round((pv - base_v) / (av - base_v), 6) if av > base_v else None
        suite["prompting"] = {"contender": contender, "adapter": adapter, "metric": "accuracy", "k": 8,
                              "base_value": base_v, "prompted_value": pv, "adapter_value": av, "share_of_gain": share,
                              "recommendation": None}
    comp = next(c for c in suite["comparisons"] if c["model"] == adapter and c["metric"] == "accuracy")
    suite["gates"] = [{"id": f"banking77::accuracy > base significantly", "expression": "accuracy > base significantly",
                       "model": adapter, "passed": comp["verdict"] == "improved",
                       "message": f"accuracy improved: {adapter} {comp['model_value']:.3f} vs base {comp['reference_value']:.3f}"}]
    suite["contamination"] = {"train_files": ["data/banking77/train.jsonl"], "n_eval": n, "exact": 1, "near": 0,
                              "rate": round(1 / n, 6), "threshold": 0.8, "ngram": 8,
                              "matches": [{"eval_id": examples[0]["id"], "train_id": "banking77-train-00042",
                                           "train_file": "data/banking77/train.jsonl", "kind": "exact", "overlap": 1.0}]}
    suite["usage"] = _usage(models, examples, rng)
    return suite


def _macro_f1(labels: list[str], golds: list[str], preds: list[str]) -> dict[str, Any]:
    """Macro-F1 and the details ftevals.metrics.classification writes (rows gold, columns predicted
    plus an "(unparseable)" column, over the labels that occur)."""
    k = len(labels)
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * (k + 1) for _ in labels]
    for g, p in zip(golds, preds):
        matrix[index[g]][index.get(p, k)] += 1
    shown = [i for i in range(k) if sum(matrix[i]) or any(matrix[r][i] for r in range(k))]
    per_class, f1s = {}, []
    for i in shown:
        tp, support, predicted = matrix[i][i], sum(matrix[i]), sum(matrix[r][i] for r in range(k))
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * tp / (support + predicted) if support + predicted else 0.0
        per_class[labels[i]] = {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4), "support": support}
        if support:
            f1s.append(f1)
    details = {
        "labels": [labels[i] for i in shown],
        "columns": [labels[i] for i in shown] + ["(unparseable)"],
        "confusion_matrix": [[matrix[i][j] for j in [*shown, k]] for i in shown],
        "per_class": per_class,
        "unparseable": sum(1 for p in preds if p not in index),
        "n": len(golds),
    }
    return {"value": float(np.mean(f1s)) if f1s else 0.0, "details": details}


MAX_IDS_PER_KIND = 50  # as in ftevals.metrics: details list only the first ids of each error kind
FIELDS = ("people", "time", "date", "last_name")


def _error_details(kinds: list[str | None], ids: list[str], all_kinds: Sequence[str]) -> dict[str, Any]:
    examples: dict[str, list[str]] = {}
    for kind, xid in zip(kinds, ids):
        if kind is not None and len(examples.setdefault(kind, [])) < MAX_IDS_PER_KIND:
            examples[kind].append(xid)
    return {"error_kinds": {k: sum(1 for x in kinds if x == k) for k in all_kinds}, "examples": examples}


def extraction_suite(n: int, models: Sequence[str], seed: int = 1) -> dict[str, Any]:
    rng = random.Random(seed)
    examples = []
    ids = [f"restaurant8k-test-{k:05d}" for k in range(n)]
    # Per model: parsed prediction (None if not JSON) and gold, for the details below.
    parsed: dict[str, list[tuple[Any, dict[str, str]]]] = {m: [] for m in models}
    for xid in ids:
        people, name = str(rng.randint(1, 9)), rng.choice(NAMES)
        hour = f"{rng.randint(5, 10)}pm"
        text = f"Hi, could I book a table for {people} at {hour} tomorrow? The name is {name}."
        gold = {"people": people, "time": hour, "date": "tomorrow", "last_name": name}
        outputs = {}
        for m in models:
            roll, skill = rng.random(), SKILL["extraction"][m]
            if roll > skill + (1 - skill) * 0.5:  # chatty answer instead of JSON
                out, pred = f"Sure! The booking is for {people} people at {hour}.", None
            elif roll > skill:  # JSON, but not the schema (renamed key, wrong type)
                pred = {"party_size": int(people), "time": hour}
                out = json.dumps(pred)
            else:
                pred = dict(gold)
                if rng.random() < 0.3:
                    pred.pop("date")
                out = json.dumps(pred)
            pairs_p = set(pred.items()) if pred else set()
            tp = len(pairs_p & set(gold.items()))
            f1 = round(2 * tp / (len(pairs_p) + len(gold)), 4) if pred is not None else 0.0
            schema_ok = pred is not None and set(pred) <= set(FIELDS) and all(isinstance(v, str) for v in pred.values())
            parsed[m].append((pred, gold))
            outputs[m] = _output(out, {"field_f1": f1, "json_valid": float(pred is not None), "schema_valid": float(schema_ok)}, 140)
        examples.append({"id": xid, "input": text, "messages": [{"role": "user", "content": text}],
                         "reference": json.dumps(gold), "metadata": {}, "outputs": outputs})
    metrics = [{"name": "field_f1", "higher_is_better": True, "kind": "continuous", "primary": True, "range": [0, 1]},
               {"name": "json_valid", "higher_is_better": True, "kind": "binary", "primary": False, "range": [0, 1]},
               {"name": "schema_valid", "higher_is_better": True, "kind": "binary", "primary": False, "range": [0, 1]}]
    suite = _assemble("restaurant8k", "extraction", "Restaurant-8k slot extraction as JSON.",
                      _dataset("restaurant8k", "data/restaurant8k/test.jsonl", n, 3731), metrics, models, examples)
    for m in models:
        not_json = [None if p is not None else "not_json" for p, _ in parsed[m]]
        schema = [k or (None if e["outputs"][m]["scores"]["schema_valid"] else "schema") for k, e in zip(not_json, examples)]
        per_field = {}
        for f in FIELDS:
            tp = sum(1 for p, g in parsed[m] if p and p.get(f) == g[f])
            predicted = sum(1 for p, _ in parsed[m] if p and f in p)
            precision, recall = (tp / predicted if predicted else 0.0), tp / n
            per_field[f] = {"precision": round(precision, 4), "recall": round(recall, 4),
                            "f1": round(2 * precision * recall / (precision + recall), 4) if precision + recall else 0.0, "support": n}
        per_field["(other)"] = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
        suite["details"][m] = {
            "json_valid": _error_details(not_json, ids, ("not_json",)),
            "schema_valid": {**_error_details(schema, ids, ("not_json", "schema")),
                             "schema_errors": {"additionalProperties": schema.count("schema"), "type": schema.count("schema")}},
            "field_f1": {**_error_details(not_json, ids, ("not_json", "not_object")), "per_field": per_field,
                         "counts": {"tp": 0, "fp": 0, "fn": 0}},
        }
    for m in models[1:]:
        comp = next(c for c in suite["comparisons"] if c["model"] == m and c["metric"] == "json_valid")
        suite["gates"].append({"id": f"restaurant8k::{m}::json_valid >= 0.9", "expression": "json_valid >= 0.9",
                               "model": m, "passed": comp["model_value"] >= 0.9,
                               "message": f"json_valid {m} {comp['model_value']:.3f}; required >= 0.900"})
    suite["usage"] = _usage(models, examples, rng)
    return suite


def _dialogue(rng: random.Random) -> tuple[str, list[str]]:
    topic = rng.sample(WORDS, 4)
    turns = []
    for t in range(rng.randint(6, 10)):
        who = 1 + t % 2
        turns.append(f"#Person{who}#: " + " ".join(rng.choice(WORDS + topic * 3) for _ in range(rng.randint(6, 16))).capitalize() + ".")
    return "\n".join(turns), topic


def _rouge(pred: str, ref: str) -> tuple[float, float]:
    a, b = pred.lower().split(), ref.lower().split()
    if not a or not b:
        return 0.0, 0.0
    overlap = sum(min(a.count(w), b.count(w)) for w in set(a))
    r1 = 2 * overlap / (len(a) + len(b))
    dp = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a)):
        for j in range(len(b)):
            dp[i + 1][j + 1] = dp[i][j] + 1 if a[i] == b[j] else max(dp[i][j + 1], dp[i + 1][j])
    lcs = dp[-1][-1]
    return round(r1, 4), round(2 * lcs / (len(a) + len(b)), 4)


def generation_suite(n: int, models: Sequence[str], seed: int = 2) -> dict[str, Any]:
    rng = random.Random(seed)
    examples = []
    for k in range(n):
        dialogue, topic = _dialogue(rng)
        refs = [f"#Person1# and #Person2# talk about the {topic[0]} and the {topic[1]} before the {topic[2]}.",
                f"#Person2# helps #Person1# with the {topic[0]} and {topic[1]}.",
                f"They discuss the {topic[0]}, the {topic[1]} and a {topic[3]}."]
        outputs = {}
        for m in models:
            words = refs[0].split()
            keep = SKILL["generation"][m]
            pred = " ".join(w if rng.random() < keep else rng.choice(WORDS) for w in words)
            if m == "base" and rng.random() < 0.5:
                pred = "In this conversation, " + pred[0].lower() + pred[1:] + " They also mention the " + rng.choice(WORDS) + "."
            r1, rl = _rouge(pred, refs[0])
            finish = "length" if rng.random() < 0.02 else "stop"
            outputs[m] = _output(pred, {"rougeL": rl, "rouge1": r1}, 60 + len(dialogue) // 4, finish)
        examples.append({"id": f"dialogsum-test-{k:05d}", "input": dialogue, "messages": [{"role": "user", "content": dialogue}],
                         "reference": refs, "metadata": {}, "outputs": outputs})
    metrics = [{"name": "rougeL", "higher_is_better": True, "kind": "continuous", "primary": True, "range": [0, 1]},
               {"name": "rouge1", "higher_is_better": True, "kind": "continuous", "primary": False, "range": [0, 1]}]
    suite = _assemble("dialogsum", "generation", "DialogSum dialogue summarisation (ROUGE against three references).",
                      _dataset("dialogsum", "data/dialogsum/test.jsonl", n, 500), metrics, models, examples)
    if "base-fewshot" in models:
        base_v, pv, av = (suite["scores"][x]["rougeL"]["value"] for x in (models[0], "base-fewshot", models[1]))
        share = round((pv - base_v) / (av - base_v), 6) if av > base_v else None
        suite["prompting"] = {"contender": "base-fewshot", "adapter": models[1], "metric": "rougeL", "k": 8,
                              "base_value": base_v, "prompted_value": pv, "adapter_value": av, "share_of_gain": share,
                              "recommendation": ("Few-shot prompting recovers most of the adapter's gain on rougeL: "
                                                 "consider shipping the prompt instead of the adapter.")
                              if share is not None and share >= 0.8 else None}
    suite["human"] = human_block(models, [e["id"] for e in examples])
    suite["usage"] = _usage(models, examples, rng)
    return suite


def human_block(models: Sequence[str], ids: list[str], source_run: str = "2026-11-21T10-02-03Z-1a2b3c") -> dict[str, Any]:
    """suite["human"] in the shape docs/results-schema.md documents (written by ftevals.packets)."""
    criteria = [("faithfulness", "Faithfulness"), ("coverage", "Coverage"), ("style", "Style")]
    skill = SKILL["generation"]
    return {
        "schema": "ftevals.human", "version": 1, "packet_id": "8dac751c0a6a2f87", "part": "part-3",
        "source_run": source_run,
        "rubric": {"name": "generation", "title": "Summaries", "scale": [1, 5],
                   "criteria": [{"id": c, "label": label, "question": f"How good is the {c}?"} for c, label in criteria]},
        "reference": models[0], "models": list(models), "raters": ["r1", "r2", "r3"],
        "n_items": 30, "n_ratings": 60,
        "selection": {"n_candidates": len(ids), "n_selected": 30, "strata": {"regression": 8, "fix": 8, "disagreement": 0, "random": 14}},
        "methods": {"score_ci": "percentile bootstrap over items", "preference_ci": "Wilson score interval", "level": 0.95,
                    "resamples": 2000, "seed": 0},
        "scores": {m: {c: {"value": round(1 + 4 * skill[m] - 0.1 * j, 3), "ci_low": round(0.8 + 4 * skill[m] - 0.1 * j, 3),
                           "ci_high": round(1.2 + 4 * skill[m] - 0.1 * j, 3), "n_items": 30, "n_ratings": 60}
                       for j, (c, _) in enumerate(criteria)} for m in models},
        "preferences": {m: {"reference": models[0], "n": 60, "wins": 43, "win_rate": 0.717, "win_ci_low": 0.592, "win_ci_high": 0.815,
                            "ties": 8, "tie_rate": 0.133, "tie_ci_low": 0.069, "tie_ci_high": 0.242,
                            "losses": 9, "loss_rate": 0.15, "loss_ci_low": 0.081, "loss_ci_high": 0.261} for m in models[1:]},
        "agreement": {
            "krippendorff_alpha": {"overall": 0.62, "per_criterion": {"faithfulness": 0.66, "coverage": 0.58, "style": 0.41}, "preference": 0.55},
            "fleiss_kappa": {"overall": None, "per_criterion": {"faithfulness": None}, "preference": None},
            "cohen_kappa": [{"raters": ["r1", "r2"], "n": 45, "kappa": 0.35, "kappa_quadratic": 0.71},
                            {"raters": ["r1", "r3"], "n": 40, "kappa": 0.28, "kappa_quadratic": 0.64}],
            "raters": [{"rater": r, "n_items": 20, "mean_kappa_quadratic": 0.7, "alpha_without": 0.6, "flagged": r == "r3",
                        "reasons": ["low agreement"] if r == "r3" else []} for r in ("r1", "r2", "r3")],
        },
        "flags": {"items": [{"item": "K7QX3M", "example": ids[0], "kinds": ["opposite_preference"],
                             "reasons": ["opposite preferences: r1 prefer A, r3 prefer B"]}],
                  "raters": [{"rater": "r3", "reasons": ["mean quadratic-weighted kappa with the other raters is 0.13 (< 0.2)"]}]},
        "comments": [{"item": "K7QX3M", "example": ids[0], "rater": "r1", "text": "B invents a dinner that is not in the dialogue."}],
    }


def forgetting_suite(n: int, models: Sequence[str], seed: int = 3) -> dict[str, Any]:
    rng = random.Random(seed)
    examples = []
    for k in range(n):
        a, b = rng.randint(2, 60), rng.randint(2, 60)
        question = f"A baker makes {a} rolls in the morning and {b} in the afternoon. How many rolls does the baker make?"
        answer = str(a + b)
        outputs = {}
        for m in models:
            right = rng.random() < SKILL["forgetting"][m]
            out = f"The baker makes {a} + {b} = {a + b} rolls. #### {a + b}" if right else f"#### {a + b + rng.randint(1, 9)}"
            outputs[m] = _output(out, {"exact_match": float(right)}, 120)
        examples.append({"id": f"gsm8k-test-{k:05d}", "input": question, "messages": [{"role": "user", "content": question}],
                         "reference": answer, "metadata": {}, "outputs": outputs})
    metrics = [{"name": "exact_match", "higher_is_better": True, "kind": "binary", "primary": True, "range": [0, 1]}]
    suite = _assemble("gsm8k-forgetting", "forgetting", "GSM8K: does the adapter still do grade-school maths?",
                      _dataset("gsm8k", "data/gsm8k/test.jsonl", n, 1319), metrics, models, examples)
    for m in models[1:]:
        comp = next(c for c in suite["comparisons"] if c["model"] == m)
        suite["gates"].append({"id": f"gsm8k-forgetting::{m}::exact_match not worse than base",
                               "expression": "exact_match not worse than base", "model": m,
                               "passed": comp["verdict"] != "regressed",
                               "message": f"exact_match {comp['verdict']}: {m} {comp['model_value']:.3f} vs base "
                                          f"{comp['reference_value']:.3f} ({comp['delta']:+.3f}, 95% CI "
                                          f"{comp['ci_low']:+.3f}..{comp['ci_high']:+.3f}, n={n}; allowed -0.010)"})
    suite["usage"] = _usage(models, examples, rng)
    return suite


def make_results(sizes: dict[str, int] | None = None, models: Sequence[str] = ("base", "banking77", "base-fewshot"),
                 n_labels: int = len(LABELS)) -> dict[str, Any]:
    """A whole results file; `sizes` picks suites and example counts (default: all four, small)."""
    sizes = sizes or {"classification": 120, "extraction": 60, "generation": 40, "forgetting": 80}
    build = {"classification": lambda n, ms: classification_suite(n, ms, n_labels=n_labels), "extraction": extraction_suite,
             "generation": generation_suite, "forgetting": forgetting_suite}
    return {
        "schema": "ftevals.results",
        "schema_version": 1,
        "run": {
            "id": "2026-11-21T10-02-03Z-1a2b3c", "started_at": "2026-11-21T10:02:03Z",
            "finished_at": "2026-11-21T10:09:40Z", "seed": 0, "ftevals_version": "0.1.0", "python": "3.11.7",
            "platform": "Linux-x86_64",
            "libraries": {"vllm": "0.32.0", "torch": "2.13.0+cpu", "transformers": "5.19.0", "peft": "0.17.0"},
            "git": {"commit": "abc123def4567890abc123def4567890abc123de", "dirty": False},
            "backend": {"name": "vllm", "settings": {"dtype": "float32", "strategy": "multi-lora", "max_loras": 2}},
            "argv": ["pytest", "suites/"],
            "timings": {"total_s": 301.2, "generate_s": 250.1, "engine_start_s": 35.0, "score_s": 3.1},
        },
        "models": {m: copy.deepcopy(MODELS[m]) for m in models},
        "suites": [build[task](n, list(models)) for task, n in sizes.items()],
    }


# ---------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="session")
def results_factory() -> Callable[..., dict[str, Any]]:
    """make_results(sizes=None, models=(...)): a fresh, independent results dict per call."""
    return make_results


@pytest.fixture(scope="session")
def _small_results() -> dict[str, Any]:
    return make_results()


@pytest.fixture
def results(_small_results: dict[str, Any]) -> dict[str, Any]:
    """The standard small synthetic run (a deep copy: tests may mutate it)."""
    return copy.deepcopy(_small_results)


@pytest.fixture(scope="session")
def browser() -> Any:
    """A headless system Chromium; FAILS (never skips) when it is missing, naming the install command."""
    try:
        chromium_path()
    except BrowserNotFoundError as exc:
        pytest.fail(f"{exc}. CI installs it with: {INSTALL_COMMAND}", pytrace=False)
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.fail("the browser tests need playwright: .venv/bin/pip install playwright "
                    f"(and Chromium: {INSTALL_COMMAND})", pytrace=False)
    from ftevals.report.browser import launch_chromium

    with launch_chromium() as b:
        yield b


@pytest.fixture
def open_report(browser: Any, tmp_path: Path) -> Callable[..., Any]:
    """open_report(html) -> page: writes the page to a file and opens it, recording problems.

    The page object gets `console_errors` (console errors, page errors, CSP violations) and
    `requests` (every URL the page asked for) as attributes.
    """
    pages = []

    def _open(html: str, *, name: str = "report.html", width: int = 1280, height: int = 900) -> Any:
        path = tmp_path / name
        path.write_text(html, encoding="utf-8")
        page = browser.new_page(viewport={"width": width, "height": height})
        page.console_errors = []
        page.requests = []
        page.on("console", lambda msg: page.console_errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda err: page.console_errors.append(str(err)))
        page.on("request", lambda req: page.requests.append(req.url))
        page.goto(path.as_uri(), wait_until="load")
        pages.append(page)
        return page

    yield _open
    for p in pages:
        p.close()


# ---------------------------------------------------------------------------------------------------
# Hostile text: model outputs and dataset text are untrusted


#: Each payload, if it ever ran, would set window.__pwned (or the title, or navigate away).
PAYLOADS = [
    '<script>window.__pwned=1;document.title="pwned"</script>',
    '<img src=x onerror="window.__pwned=2">',
    '</textarea><script>window.__pwned=3</script>',
    '<a href="javascript:window.__pwned=4">click me</a>',
    "javascript:alert(1)",
    '"><svg onload="window.__pwned=5">',
    "'><iframe srcdoc='<script>parent.__pwned=6</script>'>",
    "</p></div></article></details><script>window.__pwned=7</script>",
    "{{ 7*7 }} {% raw %} ${7*7}",
    '<style>body{display:none}</style><link rel=stylesheet href="https://example.com/x.css">',
    '<meta http-equiv="refresh" content="0;url=https://example.com/">',
]
LONG_LINE = "A" * 100_000  # 100 KB without a single break opportunity


def hostile(results: dict[str, Any]) -> dict[str, Any]:
    """Plant the payloads everywhere untrusted text reaches the page."""
    r = copy.deepcopy(results)
    joined = " ".join(PAYLOADS)
    r["run"]["id"] = PAYLOADS[0]
    r["run"]["libraries"]["evil"] = PAYLOADS[1]
    r["run"]["backend"]["settings"]["note"] = PAYLOADS[5]
    for s in r["suites"]:
        s["description"] = joined
        s["dataset"]["path"] = PAYLOADS[2]
        for g in s["gates"]:
            g["message"] = PAYLOADS[7]
            g["passed"] = False
        for k, e in enumerate(s["examples"][:len(PAYLOADS) + 1]):
            payload = PAYLOADS[k] if k < len(PAYLOADS) else LONG_LINE
            e["input"] = payload
            e["reference"] = payload
            for m, o in e["outputs"].items():
                o["text"] = payload if m != "base" else "safe base text " + PAYLOADS[-1 - k % len(PAYLOADS)]
        s["examples"][0]["outputs"]["banking77"]["text"] = LONG_LINE
        if s["task"] == "classification":
            # A label is also an attribute value (data-c) and an <option value>.
            for details in s["details"].values():
                details["macro_f1"]["labels"][0] = PAYLOADS[5]
                details["macro_f1"]["per_class"][PAYLOADS[1]] = {"f1": 0.5, "support": 1}
            s["examples"][0]["metadata"]["label"] = PAYLOADS[5]
            s["examples"][1]["metadata"]["label"] = LONG_LINE
        if s["task"] == "extraction":
            for details in s["details"].values():
                details["json_valid"]["error_kinds"][PAYLOADS[0]] = 1
                details["json_valid"]["examples"][PAYLOADS[0]] = [PAYLOADS[1]]
        if s.get("human"):
            s["human"]["packet_id"] = PAYLOADS[3]
            s["human"]["methods"]["notes"] = {"why": PAYLOADS[8], "list": PAYLOADS}  # free-form: shown generically
    return r


@pytest.fixture
def hostile_results(results: dict[str, Any]) -> dict[str, Any]:
    return hostile(results)


@pytest.fixture
def payloads() -> list[str]:
    return [*PAYLOADS, LONG_LINE]
