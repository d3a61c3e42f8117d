"""A scripted LLM judge and scripted human raters, for exact judge and calibration tests.

The judge is the replay backend answering the judge's requests from a predictions file (rows for
model `base`, ids `judge:point:CRITERION:MODEL:EXAMPLE` and `judge:pair:ab|ba:MODEL:EXAMPLE`, plus
`:retry`): each behaviour below is written out row by row, so a test knows every verdict exactly.

Every (model, example, criterion) has a true score (`truth`); raters give it (with a little seeded
disagreement), so a judge that also gives it agrees with them and one that gives its mirror image
(6 - truth) disagrees systematically.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

BEHAVIOURS = ("agree", "anti", "position", "unparseable", "retry_fixes")
#: The criteria of the packaged classification rubric (what a classification suite is judged on).
CRITERIA = ("correctness", "format")


def _u(*parts: str) -> int:
    return int(hashlib.sha256("|".join(parts).encode()).hexdigest()[:8], 16)


def truth(model: str, example: str, criterion: str) -> int:
    """A spread of 1..5 scores; `tuned` is a point better than base on average (capped at 5)."""
    return min(5, _u(model, example, criterion) % 5 + 1 + (1 if model == "tuned" else 0))


def total(model: str, example: str, criteria: Sequence[str]) -> int:
    return sum(truth(model, example, c) for c in criteria)


def _pair_answer(model: str, reference: str, example: str, order: str, criteria: Sequence[str], behaviour: str) -> str:
    if behaviour == "position":
        return "A"
    if behaviour == "unparseable":
        return "Both have merits."
    diff = total(model, example, criteria) - total(reference, example, criteria)
    if behaviour == "anti":
        diff = -diff
    if diff == 0:
        return "tie"
    model_letter = "A" if order == "ab" else "B"
    other = "B" if model_letter == "A" else "A"
    return model_letter if diff > 0 else other


def judge_rows(ids: Sequence[str], models: Sequence[str], reference: str, criteria: Sequence[str], behaviour: str,
               judge: str = "base") -> list[dict[str, Any]]:
    """Replay rows answering every judge request of a suite the way `behaviour` says."""
    assert behaviour in BEHAVIOURS, behaviour
    rows = []
    for ex in ids:
        for m in models:
            for c in criteria:
                score = truth(m, ex, c)
                first = {"agree": str(score), "anti": str(6 - score), "position": str(score),
                         "unparseable": "between 3 and 4", "retry_fixes": "I would say it is good"}[behaviour]
                again = str(score) if behaviour == "retry_fixes" else first
                rows.append({"model": judge, "id": f"judge:point:{c}:{m}:{ex}", "text": first})
                rows.append({"model": judge, "id": f"judge:point:{c}:{m}:{ex}:retry", "text": again})
            if m == reference:
                continue
            for order in ("ab", "ba"):
                answer = _pair_answer(m, reference, ex, order, criteria, behaviour)
                again = (_pair_answer(m, reference, ex, order, criteria, "agree")
                         if behaviour == "retry_fixes" else answer)
                first = "Hmm, hard to say" if behaviour == "retry_fixes" else answer
                rows.append({"model": judge, "id": f"judge:pair:{order}:{m}:{ex}", "text": first})
                rows.append({"model": judge, "id": f"judge:pair:{order}:{m}:{ex}:retry", "text": again})
    return rows


def rate_and_merge(results_path: Path, packet_dir: Path, *, n_items: int = 20, noise_every: int = 10,
                   score_of: Callable[[str, str, str], int] = truth) -> Path:
    """Build packets from a results file, fill every sheet as three careful raters would (the true
    score `score_of(model, example, criterion)`, one point off on every `noise_every`-th cell), import
    them and merge them into the file."""
    from ftevals.packets import build_packets, import_ratings, merge_into_results
    from ftevals.results import load, save

    results = load(results_path)
    build_packets(results, packet_dir, n_per_suite=n_items, raters=3, raters_per_item=2, seed=0)
    key = json.loads((packet_dir / "key" / "answer_key.json").read_text(encoding="utf-8"))
    manifest = json.loads((packet_dir / "manifest.json").read_text(encoding="utf-8"))
    sheets = []
    cell = 0
    for entry in manifest["raters"]:
        rater = entry["rater"]
        for part in entry["items"]:
            src = packet_dir / "raters" / rater / f"{part}.jsonl"
            criteria = [c["id"] for c in key["parts"][part]["rubric"]["criteria"]]
            out_rows = []
            for line in src.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                row = json.loads(line)
                item = key["items"][row["item"]]
                totals = {}
                for letter, model in item["letters"].items():
                    for c in criteria:
                        cell += 1
                        score = score_of(model, item["example"], c)
                        if cell % noise_every == 0:
                            score = score - 1 if score > 1 else score + 1
                        row[f"{letter}_{c}"] = score
                    totals[letter] = sum(score_of(model, item["example"], c) for c in criteria)
                ordered = sorted(totals, key=lambda k: -totals[k])
                text = ordered[0]
                for prev, cur in zip(ordered, ordered[1:]):
                    text += ("=" if totals[prev] == totals[cur] else ">") + cur
                row["preference"] = text
                out_rows.append(json.dumps(row))
            dst = packet_dir.parent / "sheets" / f"{rater}-{part}.jsonl"
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text("\n".join(out_rows) + "\n", encoding="utf-8")
            sheets.append(dst)
    human = import_ratings(packet_dir, sheets)
    save(results_path, merge_into_results(results, human))
    return results_path


__all__ = ["BEHAVIOURS", "CRITERIA", "judge_rows", "rate_and_merge", "total", "truth"]
