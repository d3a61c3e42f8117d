"""Generation metrics: ROUGE, SQuAD-style exact match and token F1, corpus BLEU. All in [0, 1].

References: `example.reference`, or with `multi_reference=True` the list
`example.metadata["references"]`; with several references each example takes its best score
(the maximum over references), as rouge-score's `score_multi` and SQuAD's evaluation do. BLEU is
the exception: it pools n-gram matches against all references, the way BLEU is defined.
"""

from __future__ import annotations

import functools
import math
import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, MissingDependencyError
from ._common import as_text, check_aligned
from .base import Scored
from .registry import register_metric
from .rouge_fast import rouge_scores

if TYPE_CHECKING:
    from ..data import Example

#: rouge1, rouge2 and rougeL cost little more together than alone, so they are always computed as
#: a group and shared between the three metrics through `_cached_rouge`.
_ROUGE_GROUP = ("rouge1", "rouge2", "rougeL")


def _references(examples: Sequence[Example], multi_reference: bool, metric: str) -> list[list[str]]:
    if not multi_reference:
        return [[ex.reference] for ex in examples]
    out: list[list[str]] = []
    for ex in examples:
        refs = ex.metadata.get("references")
        if not isinstance(refs, (list, tuple)) or not refs or not all(isinstance(r, str) for r in refs):
            raise ConfigError(
                f"metric {metric!r} with multi_reference=True needs metadata 'references' (a non-empty list "
                f"of strings) in every example; example {ex.id!r} has {refs!r}"
            )
        out.append(list(refs))
    return out


# ---------------------------------------------------------------------------------------------
# ROUGE


@functools.lru_cache(maxsize=4)
def _cached_rouge(
    predictions: tuple[str, ...], references: tuple[tuple[str, ...], ...], types: tuple[str, ...], stemmer: bool
) -> dict[str, np.ndarray]:
    # Bounded memo so that rouge1 / rouge2 / rougeL on the same outputs tokenise and stem once.
    return rouge_scores(predictions, references, types=types, stemmer=stemmer)


def _rouge(
    rouge_type: str, predictions: Sequence[str], examples: Sequence[Example], multi_reference: bool, stemmer: bool
) -> Scored:
    check_aligned(predictions, examples, rouge_type)
    preds = tuple(as_text(p) for p in predictions)
    refs = tuple(tuple(r) for r in _references(examples, multi_reference, rouge_type))
    types = _ROUGE_GROUP if rouge_type in _ROUGE_GROUP else (rouge_type,)
    per_example = _cached_rouge(preds, refs, types, bool(stemmer))[rouge_type].copy()
    return Scored.mean_of(per_example, {"empty_predictions": sum(1 for p in preds if not p.strip())})


@register_metric("rouge1", higher_is_better=True, kind="continuous", value_range=(0.0, 1.0))
def rouge1(
    predictions: Sequence[str], examples: Sequence[Example], *, multi_reference: bool = False, stemmer: bool = True, **_: Any
) -> Scored:
    """ROUGE-1 F-measure (unigram overlap), in [0, 1]; rouge-score tokenisation, Porter stemming on."""
    return _rouge("rouge1", predictions, examples, multi_reference, stemmer)


@register_metric("rouge2", higher_is_better=True, kind="continuous", value_range=(0.0, 1.0))
def rouge2(
    predictions: Sequence[str], examples: Sequence[Example], *, multi_reference: bool = False, stemmer: bool = True, **_: Any
) -> Scored:
    """ROUGE-2 F-measure (bigram overlap), in [0, 1]; rouge-score tokenisation, Porter stemming on."""
    return _rouge("rouge2", predictions, examples, multi_reference, stemmer)


@register_metric("rougeL", higher_is_better=True, kind="continuous", value_range=(0.0, 1.0))
def rougeL(  # noqa: N802 - the metric's conventional name
    predictions: Sequence[str], examples: Sequence[Example], *, multi_reference: bool = False, stemmer: bool = True, **_: Any
) -> Scored:
    """ROUGE-L F-measure (longest common subsequence, newlines ignored), in [0, 1]."""
    return _rouge("rougeL", predictions, examples, multi_reference, stemmer)


@register_metric("rougeLsum", higher_is_better=True, kind="continuous", value_range=(0.0, 1.0))
def rougeLsum(  # noqa: N802 - the metric's conventional name
    predictions: Sequence[str], examples: Sequence[Example], *, multi_reference: bool = False, stemmer: bool = True, **_: Any
) -> Scored:
    """Summary-level ROUGE-L F-measure (one sentence per line), in [0, 1]."""
    return _rouge("rougeLsum", predictions, examples, multi_reference, stemmer)


# ---------------------------------------------------------------------------------------------
# SQuAD-style answer matching

_PUNCTUATION = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower-case, drop ASCII punctuation, drop the articles a/an/the, collapse whitespace."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split())


def _token_f1(prediction: str, reference: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        # Two empty answers agree; one empty answer shares nothing with a non-empty one.
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


@register_metric("exact_match", higher_is_better=True, kind="binary", value_range=(0.0, 1.0))
def exact_match(
    predictions: Sequence[str], examples: Sequence[Example], *, multi_reference: bool = False, **_: Any
) -> Scored:
    """1 when the SQuAD-normalised prediction equals a normalised reference, else 0; mean in [0, 1]."""
    check_aligned(predictions, examples, "exact_match")
    refs = _references(examples, multi_reference, "exact_match")
    per_example = [
        float(any(normalize_answer(as_text(p)) == normalize_answer(r) for r in rs)) for p, rs in zip(predictions, refs)
    ]
    return Scored.mean_of(per_example)


@register_metric("token_f1", higher_is_better=True, kind="continuous", value_range=(0.0, 1.0))
def token_f1(
    predictions: Sequence[str], examples: Sequence[Example], *, multi_reference: bool = False, **_: Any
) -> Scored:
    """SQuAD token-overlap F1 between normalised prediction and reference (best reference), in [0, 1]."""
    check_aligned(predictions, examples, "token_f1")
    refs = _references(examples, multi_reference, "token_f1")
    return Scored.mean_of([max(_token_f1(as_text(p), r) for r in rs) for p, rs in zip(predictions, refs)])


# ---------------------------------------------------------------------------------------------
# BLEU


def _unit(score: float) -> float:
    # sacrebleu's 0-100 scale; a perfect match can come out as 100.00000000000004 after exp(log(...)).
    return min(score / 100, 1.0)


def _sacrebleu_bleu_class() -> Any:
    try:
        from sacrebleu.metrics import BLEU
    except ImportError:
        raise MissingDependencyError(
            "sacrebleu", "pip install 'sacrebleu>=2'", why="the bleu metric computes corpus BLEU with it"
        ) from None
    return BLEU


@register_metric("bleu", higher_is_better=True, kind="continuous", value_range=(0.0, 1.0))
def bleu(
    predictions: Sequence[str],
    examples: Sequence[Example],
    *,
    multi_reference: bool = False,
    tokenize: str = "13a",
    lowercase: bool = False,
    **_: Any,
) -> Scored:
    """Corpus BLEU from sacrebleu (default 13a tokenisation, exponential smoothing) divided by 100, in [0, 1].

    Per-example values are sentence BLEU (effective order), also in [0, 1]; the corpus value and its
    resamples are recomputed from per-example n-gram counts, as sacrebleu's corpus_bleu sums them.
    """
    check_aligned(predictions, examples, "bleu")
    refs = _references(examples, multi_reference, "bleu")
    bleu_class = _sacrebleu_bleu_class()
    try:
        scorer = bleu_class(tokenize=tokenize, lowercase=lowercase, effective_order=True)
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"metric 'bleu': unknown sacrebleu option (tokenize={tokenize!r}): {exc}") from None
    order = scorer.max_ngram_order
    # Columns: hypothesis length, closest reference length, matches per order, totals per order.
    stats = np.zeros((len(refs), 2 + 2 * order), dtype=np.int64)
    sentence = np.empty(len(refs))
    for i, (pred, rs) in enumerate(zip(predictions, refs)):
        s = scorer.sentence_score(as_text(pred), rs)
        stats[i] = [s.sys_len, s.ref_len, *s.counts, *s.totals]
        sentence[i] = _unit(s.score)
    corpus = bleu_class(tokenize=tokenize, lowercase=lowercase)

    def aggregate(idx: np.ndarray) -> float:
        if len(idx) == 0:
            return math.nan
        total = stats[np.asarray(idx, dtype=np.intp)].sum(axis=0).tolist()
        score = corpus.compute_bleu(
            total[2 : 2 + order], total[2 + order :], total[0], total[1],
            smooth_method=corpus.smooth_method, smooth_value=corpus.smooth_value, max_ngram_order=order,
        )
        return _unit(score.score)

    value = aggregate(np.arange(len(refs)))
    details = {"tokenize": tokenize, "lowercase": lowercase, "hyp_len": int(stats[:, 0].sum()), "ref_len": int(stats[:, 1].sum())}
    return Scored(value, sentence, aggregate, details)


__all__ = [
    "bleu",
    "exact_match",
    "normalize_answer",
    "rouge1",
    "rouge2",
    "rougeL",
    "rougeLsum",
    "token_f1",
]
