"""Per-suite statistics of imported ratings: the `suite["human"]` block.

Scores with bootstrap intervals, preferences against the reference with Wilson intervals,
agreement (Krippendorff's alpha, Fleiss' kappa, Cohen's kappa per rater pair) and flags for items
and raters. Pure functions of already unblinded `Rating`s and the packet's key.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .. import agreement
from ._common import FORMAT_VERSION, HUMAN_SCHEMA, Rating
from .answer_key import _PacketInfo
from .rubrics import Rubric

#: An item is flagged when two raters' scores for one response and criterion differ by this much.
SCORE_SPREAD_FLAG = 2
#: A rater is flagged when their mean quadratic-weighted kappa with the others is below this ...
KAPPA_FLAG = 0.2
#: ... or when leaving them out raises the suite's alpha by at least this much. Only with at least
#: ALPHA_GAIN_MIN_RATERS raters: with three, leaving one out leaves a single pair, whose alpha on a
#: few dozen items swings by 0.1 through noise alone.
ALPHA_GAIN_FLAG = 0.1
ALPHA_GAIN_MIN_RATERS = 4


def _stable_int(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:8], "big")


def _num(x: float | None) -> float | None:
    """JSON-safe float: NaN and infinities become null (results files never hold NaN)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _outcome(rating: Rating, model: str, reference: str) -> int:
    """+1 if the rater ranked `model` above the reference, 0 for a tie, -1 below."""
    a, b = rating.rank_of(model), rating.rank_of(reference)
    return 1 if a < b else (0 if a == b else -1)


def _suite_block(
    info: _PacketInfo, part: str, ratings: Sequence[Rating], *, resamples: int, kappa_threshold: float
) -> dict[str, Any]:
    meta = info.parts[part]
    rubric = info.rubrics[part]
    models: list[str] = list(meta["models"])
    reference = meta["reference"]
    criteria = [c.id for c in rubric.criteria]
    items = [code for code, e in info.items.items() if e["part"] == part]
    by_item: dict[str, list[Rating]] = defaultdict(list)
    for r in ratings:
        by_item[r.item].append(r)
    items = [code for code in items if by_item[code]]
    raters = [r for r in info.raters if any(x.rater == r for x in ratings)]
    suite = meta["suite"]

    scores: dict[str, dict[str, Any]] = {}
    for model in models:
        scores[model] = {}
        for c in criteria:
            item_means = np.array([np.mean([r.scores[model][c] for r in by_item[i]]) for i in items])
            lo, hi = agreement.bootstrap_mean_ci(
                item_means, seed=[info.seed, _stable_int(suite, model, c)], resamples=resamples
            )
            scores[model][c] = {
                "value": _num(item_means.mean()) if item_means.size else None,
                "ci_low": _num(lo),
                "ci_high": _num(hi),
                "n_items": int(item_means.size),
                "n_ratings": sum(len(by_item[i]) for i in items),
            }

    preferences: dict[str, dict[str, Any]] = {}
    for model in models:
        if model == reference:
            continue
        outcomes = [_outcome(r, model, reference) for r in ratings]
        n = len(outcomes)
        entry: dict[str, Any] = {"reference": reference, "n": n}
        for name, value in (("win", 1), ("tie", 0), ("loss", -1)):
            k = sum(1 for o in outcomes if o == value)
            lo, hi = agreement.wilson_interval(k, n)
            entry[name + "s" if name != "loss" else "losses"] = k
            entry[f"{name}_rate"] = _num(k / n) if n else None
            entry[f"{name}_ci_low"] = _num(lo)
            entry[f"{name}_ci_high"] = _num(hi)
        preferences[model] = entry

    stats = _agreement_block(raters, items, by_item, models, reference, criteria, rubric, kappa_threshold)
    return {
        "schema": HUMAN_SCHEMA,
        "version": FORMAT_VERSION,
        "packet_id": info.packet_id,
        "part": part,
        "source_run": info.source_run,
        "rubric": {
            "name": rubric.name,
            "title": rubric.title,
            "scale": [rubric.scale_min, rubric.scale_max],
            "criteria": [{"id": c.id, "label": c.label, "question": c.question} for c in rubric.criteria],
        },
        "reference": reference,
        "models": models,
        "raters": raters,
        "n_items": len(items),
        "n_ratings": len(ratings),
        "selection": meta.get("selection"),
        "methods": {
            "score_ci": "percentile bootstrap over items (each item = mean of its raters' scores)",
            "preference_ci": "Wilson score interval over ratings (one judgement per rater and item)",
            "level": 0.95,
            "resamples": resamples,
            "seed": info.seed,
            "alpha": "Krippendorff's alpha, ordinal",
            "kappa": "Cohen's kappa per rater pair on all shared scores: plain and quadratic-weighted",
            "fleiss": "Fleiss' kappa (nominal), when every unit has the same number of ratings",
            "flag_score_spread": SCORE_SPREAD_FLAG,
            "flag_kappa_below": kappa_threshold,
            "flag_alpha_gain": ALPHA_GAIN_FLAG,
            "flag_alpha_gain_min_raters": ALPHA_GAIN_MIN_RATERS,
        },
        "scores": scores,
        "preferences": preferences,
        "agreement": stats["agreement"],
        "flags": {"items": _item_flags(items, by_item, models, criteria), "raters": stats["flagged_raters"]},
        "comments": [
            {"item": r.item, "example": r.example, "rater": r.rater, "text": r.comment} for r in ratings if r.comment
        ],
        # Every rating, unblinded: what an LLM judge is calibrated against (ftevals/judge/calibration.py).
        "ratings": [
            {"rater": r.rater, "example": r.example,
             "scores": {m: {c: int(v) for c, v in by.items()} for m, by in r.scores.items()},
             "ranking": [list(group) for group in r.ranking]}
            for r in sorted(ratings, key=lambda r: (r.example, r.rater))
        ],
    }


def _matrix(raters: Sequence[str], units: Sequence[Mapping[str, float]]) -> np.ndarray:
    """raters x units with NaN where a rater did not rate a unit."""
    m = np.full((len(raters), len(units)), np.nan)
    for j, unit in enumerate(units):
        for i, r in enumerate(raters):
            if r in unit:
                m[i, j] = unit[r]
    return m


def _fleiss(matrix: np.ndarray, categories: Sequence[float]) -> float | None:
    counts = (~np.isnan(matrix)).sum(axis=0)
    counts = counts[counts > 0]
    if counts.size == 0 or counts.min() < 2 or counts.min() != counts.max():
        return None
    table = agreement.category_counts(matrix[:, (~np.isnan(matrix)).sum(axis=0) > 0], categories)
    return _num(agreement.fleiss_kappa(table))


def _agreement_block(
    raters: Sequence[str],
    items: Sequence[str],
    by_item: Mapping[str, Sequence[Rating]],
    models: Sequence[str],
    reference: str,
    criteria: Sequence[str],
    rubric: Rubric,
    kappa_threshold: float,
) -> dict[str, Any]:
    per_criterion = {
        c: _matrix(raters, [{r.rater: r.scores[m][c] for r in by_item[i]} for i in items for m in models])
        for c in criteria
    }
    pooled = np.concatenate([per_criterion[c] for c in criteria], axis=1) if criteria else np.zeros((len(raters), 0))
    preference = _matrix(
        raters, [{r.rater: _outcome(r, m, reference) for r in by_item[i]} for i in items for m in models if m != reference]
    )
    levels = list(rubric.levels)
    alpha_overall = agreement.krippendorff_alpha(pooled, "ordinal")

    pairs = []
    for a, b in itertools.combinations(range(len(raters)), 2):
        shared = ~np.isnan(pooled[a]) & ~np.isnan(pooled[b])
        n = int(shared.sum())
        if n == 0:
            continue
        x, y = pooled[a, shared], pooled[b, shared]
        pairs.append({
            "raters": [raters[a], raters[b]],
            "n": n,
            "kappa": _num(agreement.cohen_kappa(x, y, labels=levels)),
            "kappa_quadratic": _num(agreement.cohen_kappa(x, y, weights="quadratic", labels=levels)),
        })

    per_rater = []
    flagged = []
    for i, r in enumerate(raters):
        mine = [p["kappa_quadratic"] for p in pairs if r in p["raters"] and p["kappa_quadratic"] is not None]
        mean_kappa = _num(float(np.mean(mine))) if mine else None
        without = _num(agreement.krippendorff_alpha(np.delete(pooled, i, axis=0), "ordinal")) if len(raters) >= 3 else None
        reasons = []
        if mean_kappa is not None and mean_kappa < kappa_threshold:
            reasons.append(f"mean quadratic-weighted kappa with the other raters is {mean_kappa:.2f} (< {kappa_threshold:g})")
        base_alpha = _num(alpha_overall)
        if (len(raters) >= ALPHA_GAIN_MIN_RATERS and without is not None and base_alpha is not None
                and without - base_alpha >= ALPHA_GAIN_FLAG):
            reasons.append(f"leaving this rater out raises alpha from {base_alpha:.2f} to {without:.2f}")
        per_rater.append({
            "rater": r,
            "n_items": sum(1 for it in items if any(x.rater == r for x in by_item[it])),
            "mean_kappa_quadratic": mean_kappa,
            "alpha_without": without,
            "flagged": bool(reasons),
            "reasons": reasons,
        })
        if reasons:
            flagged.append({"rater": r, "reasons": reasons})

    return {
        "agreement": {
            "krippendorff_alpha": {
                "overall": _num(alpha_overall),
                "per_criterion": {c: _num(agreement.krippendorff_alpha(per_criterion[c], "ordinal")) for c in criteria},
                "preference": _num(agreement.krippendorff_alpha(preference, "ordinal")),
            },
            "fleiss_kappa": {
                "overall": _fleiss(pooled, levels),
                "per_criterion": {c: _fleiss(per_criterion[c], levels) for c in criteria},
                "preference": _fleiss(preference, [-1, 0, 1]),
            },
            "cohen_kappa": pairs,
            "raters": per_rater,
        },
        "flagged_raters": flagged,
    }


def _item_flags(
    items: Sequence[str], by_item: Mapping[str, Sequence[Rating]], models: Sequence[str], criteria: Sequence[str]
) -> list[dict[str, Any]]:
    flags = []
    for code in items:
        rs = by_item[code]
        reasons: list[str] = []
        kinds: list[str] = []
        for m in models:
            for c in criteria:
                given = {r.rater: r.scores[m][c] for r in rs}
                if len(given) >= 2 and max(given.values()) - min(given.values()) >= SCORE_SPREAD_FLAG:
                    shown = ", ".join(f"{s} ({r})" for r, s in given.items())
                    reasons.append(f"{c} of {m}: scores {shown}")
                    kinds.append("score_spread")
        for m1, m2 in itertools.combinations(models, 2):
            prefer_1 = [r.rater for r in rs if r.rank_of(m1) < r.rank_of(m2)]
            prefer_2 = [r.rater for r in rs if r.rank_of(m2) < r.rank_of(m1)]
            if prefer_1 and prefer_2:
                reasons.append(
                    f"opposite preferences: {', '.join(prefer_1)} prefer {m1}, {', '.join(prefer_2)} prefer {m2}"
                )
                kinds.append("opposite_preference")
        if reasons:
            flags.append({"item": code, "example": rs[0].example, "kinds": sorted(set(kinds)), "reasons": reasons})
    return flags
