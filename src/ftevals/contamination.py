"""Contamination check: does the evaluation set overlap the fine-tuning data?

An adapter evaluated on examples it was trained on looks better than it is. For every evaluation
example this finds training examples that are exact duplicates (after normalisation: lower case,
punctuation dropped, whitespace collapsed) or near duplicates (Jaccard similarity of word n-gram
sets at or above a threshold). Texts shorter than n words are compared on their word sets, so short
utterances (BANKING77's average is 11 words) are still caught.

An inverted index over n-grams keeps this linear-ish: each evaluation example is compared only with
training examples that share at least one n-gram.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .data import Example, normalize_text
from .errors import ConfigError


@dataclass(frozen=True)
class Match:
    eval_id: str
    train_id: str
    train_file: str
    kind: str  # "exact" | "near"
    overlap: float

    def to_dict(self) -> dict[str, Any]:
        return {"eval_id": self.eval_id, "train_id": self.train_id, "train_file": self.train_file,
                "kind": self.kind, "overlap": round(self.overlap, 4)}


@dataclass(frozen=True)
class ContaminationReport:
    train_files: tuple[str, ...]
    n_eval: int
    matches: tuple[Match, ...]
    threshold: float
    ngram: int

    @property
    def exact(self) -> int:
        return len({m.eval_id for m in self.matches if m.kind == "exact"})

    @property
    def near(self) -> int:
        exact_ids = {m.eval_id for m in self.matches if m.kind == "exact"}
        return len({m.eval_id for m in self.matches if m.kind == "near"} - exact_ids)

    @property
    def rate(self) -> float:
        """Fraction of evaluation examples with at least one exact or near match."""
        return (self.exact + self.near) / self.n_eval if self.n_eval else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "train_files": list(self.train_files),
            "n_eval": self.n_eval,
            "exact": self.exact,
            "near": self.near,
            "rate": round(self.rate, 6),
            "threshold": self.threshold,
            "ngram": self.ngram,
            "matches": [m.to_dict() for m in self.matches],
        }


def _grams(text: str, n: int) -> frozenset[str]:
    words = normalize_text(text).split()
    if len(words) < n:
        return frozenset(words)
    return frozenset(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))


def check_contamination(
    eval_examples: Sequence[Example],
    train_sets: Sequence[tuple[str, Sequence[Example]]],
    *,
    threshold: float = 0.8,
    ngram: int = 3,
    max_matches_per_example: int = 3,
) -> ContaminationReport:
    """Compare eval inputs (the user turn) with training inputs, per training file.

    Texts that normalise to nothing (only punctuation or emoji) are never matched: two of them are
    "equal" only in having no words, which says nothing about leakage.
    """
    if not 0.0 < threshold <= 1.0:
        raise ConfigError(f"contamination threshold must be in (0, 1], got {threshold}; 0.8 is the usual choice")
    if ngram < 1:
        raise ConfigError(f"contamination n-gram size must be >= 1, got {ngram}; 3 is the usual choice")
    matches: list[Match] = []
    for train_file, train in train_sets:
        exact_index: dict[str, list[Example]] = defaultdict(list)
        gram_index: dict[str, list[int]] = defaultdict(list)
        train_grams: list[frozenset[str]] = []
        for i, ex in enumerate(train):
            key = normalize_text(ex.user_text)
            if key:
                exact_index[key].append(ex)
            grams = _grams(ex.user_text, ngram)
            train_grams.append(grams)
            for g in grams:
                gram_index[g].append(i)
        for ev in eval_examples:
            key = normalize_text(ev.user_text)
            exact = exact_index.get(key, [])
            for tr in exact[:max_matches_per_example]:
                matches.append(Match(ev.id, tr.id, train_file, "exact", 1.0))
            if exact:
                continue
            grams = _grams(ev.user_text, ngram)
            if not grams:
                continue
            candidates: dict[int, int] = defaultdict(int)
            for g in grams:
                for i in gram_index.get(g, ()):
                    candidates[i] += 1
            scored = []
            for i, shared in candidates.items():
                union = len(grams) + len(train_grams[i]) - shared
                jaccard = shared / union if union else 0.0
                if jaccard >= threshold:
                    scored.append((jaccard, train[i].id))
            for jaccard, train_id in sorted(scored, key=lambda t: (-t[0], t[1]))[:max_matches_per_example]:
                matches.append(Match(ev.id, train_id, train_file, "near", jaccard))
    return ContaminationReport(tuple(f for f, _ in train_sets), len(eval_examples), tuple(matches), threshold, ngram)


#: The word n-gram sets near-duplicate checks compare (also used by logs_import.py).
word_ngrams = _grams

__all__ = ["ContaminationReport", "Match", "check_contamination", "word_ngrams"]
