"""ROUGE F-measures identical to Google's `rouge-score`, several times faster.

`rouge-score` is the reference implementation (it mirrors ROUGE-1.5.5); this module reproduces its
scores exactly, to the last bit of the float, and only changes how they are computed:

- Tokenisation is rouge-score's own (lower-case, every run of characters outside ``[a-z0-9]`` is a
  separator, the Porter stemmer from NLTK applied to tokens longer than 3 characters), but each
  distinct word is stemmed once per call and mapped to an integer id. rouge-score stems every token
  every time, which is most of its run time.
- ROUGE-N counts n-grams of integer ids with `collections.Counter` (counted in C).
- ROUGE-L's LCS length uses the bit-parallel algorithm of Allison & Dix (1986) in Hyyrö's form
  (2004): one bit per token of the longer text, a few big-integer operations per token of the
  shorter one, instead of the full dynamic-programming table.
- ROUGE-Lsum (summary-level LCS, sentences split on newlines) needs *which* LCS was found, not just
  its length, so it keeps the table and back-tracks with rouge-score's exact tie-breaking.

benchmarks/rouge_reference.py runs plain rouge-score: what tests and benchmarks compare against.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np

#: The types `rouge_scores` computes by default; any ``rougeN`` with N >= 1 and ``rougeLsum`` also work.
DEFAULT_TYPES: tuple[str, ...] = ("rouge1", "rouge2", "rougeL")

_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_VALID_TOKEN = re.compile(r"^[a-z0-9]+$")
_ROUGE_N = re.compile(r"rouge([0-9]+)$")

#: Below this many pairs a process pool costs more to start than it saves.
_MIN_PAIRS_PER_WORKER = 2_000

References = Sequence[str] | Sequence[Sequence[str]]


class _StemMemo:
    """Porter stems (nltk, the stemmer rouge-score uses) memoised per process and on disk.

    A word's stem never changes for one nltk version, and importing nltk (it pulls in scikit-learn
    and pandas) costs about a second: a re-run that scores the same texts reads the stems from
    `<memo dir>/stems/porter-nltk-<version>.json` (memo.py) and never imports it. `save()` writes new stems."""

    MAX_WORDS = 500_000

    def __init__(self) -> None:
        from ..memo import JsonMemo, memo_dir, package_version

        self._memo = JsonMemo(memo_dir() / "stems" / f"porter-nltk-{package_version('nltk')}.json", self.MAX_WORDS)
        self._porter: Callable[[str], str] | None = None

    def _stem_now(self, word: str) -> str:
        if self._porter is None:
            from nltk.stem import porter

            # The same stemmer (class and mode) that rouge-score's DefaultTokenizer builds.
            self._porter = porter.PorterStemmer().stem
        return self._porter(word)

    def stem(self, word: str) -> str:
        return self._memo.get(word, lambda: self._stem_now(word))

    def save(self) -> None:
        self._memo.save()


_stem_memo: list[_StemMemo] = []


def _stems() -> _StemMemo:
    if not _stem_memo:
        _stem_memo.append(_StemMemo())
    return _stem_memo[0]


class _Vocabulary:
    """Maps raw words to integer ids of their (stemmed) tokens, stemming each distinct word once."""

    def __init__(self, stemmer: bool) -> None:
        self._stem: Callable[[str], str] | None = None
        if stemmer:
            self._stem = _stems().stem
        self._word_ids: dict[str, int | None] = {}
        self._token_ids: dict[str, int] = {}

    def _word_id(self, word: str) -> int | None:
        token = self._stem(word) if self._stem is not None and len(word) > 3 else word
        # rouge-score re-validates tokens after stemming; a stem that is not [a-z0-9]+ is dropped.
        if not _VALID_TOKEN.match(token):
            wid = None
        else:
            wid = self._token_ids.setdefault(token, len(self._token_ids))
        self._word_ids[word] = wid
        return wid

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, exactly the tokens rouge-score's tokenizer yields."""
        words = _NON_ALNUM.sub(" ", text.lower()).split()
        known = self._word_ids
        ids = [known.get(w, -1) for w in words]
        if -1 in ids:
            ids = [known[w] if w in known else self._word_id(w) for w in words]
        if None in ids:
            return [i for i in ids if i is not None]
        return ids  # type: ignore[return-value]

    def encode_lines(self, text: str) -> list[list[int]]:
        """Per-line token ids, the sentence split rouge-score uses for rougeLsum (empty lines dropped)."""
        return [self.encode(line) for line in text.split("\n") if line]


# ---------------------------------------------------------------------------------------------
# Scores of one pair. Each follows rouge-score's arithmetic operation for operation so the floats
# match bit for bit (e.g. `2 * p * r / (p + r)`, not the algebraically equal `2 * hits / (m + n)`).


def _fmeasure(precision: float, recall: float) -> float:
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


def _ngram_f(target: list[int], prediction: list[int], n: int) -> float:
    if n == 1:
        t_counts, p_counts = Counter(target), Counter(prediction)
    else:
        t_counts = Counter(zip(*(target[i:] for i in range(n))))
        p_counts = Counter(zip(*(prediction[i:] for i in range(n))))
    if len(t_counts) > len(p_counts):
        small, large = p_counts, t_counts
    else:
        small, large = t_counts, p_counts
    hits = 0
    for gram, count in small.items():
        other = large.get(gram)
        if other:
            hits += count if count < other else other
    precision = hits / max(max(len(prediction) - n + 1, 0), 1)
    recall = hits / max(max(len(target) - n + 1, 0), 1)
    return _fmeasure(precision, recall)


def lcs_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common subsequence of `a` and `b` (bit-parallel, O(len(a) * len(b) / word))."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return 0
    # Bit i of masks[x] is set where a[i] == x.
    masks: dict[int, int] = {}
    bit = 1
    for tok in a:
        masks[tok] = masks.get(tok, 0) | bit
        bit <<= 1
    full = bit - 1
    v = full
    for tok in b:
        m = masks.get(tok)
        if m is None:
            continue  # no match: the row of the DP table is unchanged
        u = v & m
        v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()


def _lcs_f(target: list[int], prediction: list[int]) -> float:
    if not target or not prediction:
        return 0.0
    lcs = lcs_length(target, prediction)
    return _fmeasure(lcs / len(prediction), lcs / len(target))


def _lcs_positions(ref: list[int], can: list[int]) -> list[int]:
    """Indices into `ref` of the one LCS that rouge-score's back-tracking picks (ties matter here)."""
    cols = len(can)
    table = [[0] * (cols + 1)]
    for r_tok in ref:
        prev = table[-1]
        row = [0] * (cols + 1)
        for j in range(cols):
            if r_tok == can[j]:
                row[j + 1] = prev[j] + 1
            else:
                left, up = row[j], prev[j + 1]
                row[j + 1] = left if left > up else up
        table.append(row)
    out: list[int] = []
    i, j = len(ref), cols
    while i > 0 and j > 0:
        if ref[i - 1] == can[j - 1]:
            out.append(i - 1)
            i -= 1
            j -= 1
        elif table[i][j - 1] > table[i - 1][j]:
            j -= 1
        else:
            i -= 1
    out.reverse()
    return out


def _lsum_f(target_sents: list[list[int]], prediction_sents: list[list[int]]) -> float:
    if not target_sents or not prediction_sents:
        return 0.0
    m = sum(map(len, target_sents))
    n = sum(map(len, prediction_sents))
    if not m or not n:
        return 0.0
    left_t = Counter(tok for s in target_sents for tok in s)
    left_p = Counter(tok for s in prediction_sents for tok in s)
    hits = 0
    for ref in target_sents:
        union = sorted(set().union(*(_lcs_positions(ref, can) for can in prediction_sents)))
        for pos in union:
            tok = ref[pos]
            # A token is credited at most as often as it occurs on each side (as ROUGE-1.5.5 does).
            if left_p[tok] > 0 and left_t[tok] > 0:
                hits += 1
                left_p[tok] -= 1
                left_t[tok] -= 1
    return _fmeasure(hits / n, hits / m)


# ---------------------------------------------------------------------------------------------
# Public entry points


def check_types(types: Iterable[str]) -> tuple[str, ...]:
    out = tuple(types)
    for t in out:
        m = _ROUGE_N.match(t)
        if t not in ("rougeL", "rougeLsum") and not (m and int(m.group(1)) > 0):
            raise ValueError(f"unknown ROUGE type {t!r}; expected rouge1, rouge2, ..., rougeL or rougeLsum")
    if not out:
        raise ValueError("no ROUGE types requested; expected e.g. ('rouge1', 'rouge2', 'rougeL')")
    return out


def reference_lists(references: References) -> list[list[str]]:
    out: list[list[str]] = []
    for i, ref in enumerate(references):
        refs = [ref] if isinstance(ref, str) else list(ref)
        if not refs:
            raise ValueError(f"reference #{i} is an empty list; give at least one reference text")
        out.append(refs)
    return out


def _score_chunk(
    predictions: Sequence[str], references: list[list[str]], types: tuple[str, ...], stemmer: bool
) -> dict[str, list[float]]:
    vocab = _Vocabulary(stemmer)
    flat = [t for t in types if t != "rougeLsum"]
    orders = {t: int(t[5:]) for t in flat if t != "rougeL"}
    out: dict[str, list[float]] = {t: [] for t in types}
    for pred, refs in zip(predictions, references):
        p_toks = vocab.encode(pred) if flat else []
        p_sents = vocab.encode_lines(pred) if "rougeLsum" in types else []
        best = dict.fromkeys(types, -1.0)
        for ref in refs:
            if flat:
                r_toks = vocab.encode(ref)
                for t in flat:
                    f = _lcs_f(r_toks, p_toks) if t == "rougeL" else _ngram_f(r_toks, p_toks, orders[t])
                    if f > best[t]:
                        best[t] = f
            if "rougeLsum" in types:
                f = _lsum_f(vocab.encode_lines(ref), p_sents)
                if f > best["rougeLsum"]:
                    best["rougeLsum"] = f
        for t in types:
            out[t].append(best[t])
    if stemmer:
        _stems().save()
    return out


def rouge_scores(
    predictions: Sequence[str],
    references: References,
    types: Sequence[str] = DEFAULT_TYPES,
    stemmer: bool = True,
    workers: int = 1,
) -> dict[str, np.ndarray]:
    """Per-pair ROUGE F-measures, in [0, 1], identical to rouge-score's `RougeScorer`.

    `references[i]` is one reference text or a list of them; with several, each type takes the
    best F-measure over the references (what rouge-score's `score_multi` returns). `rougeLsum`
    treats newlines as sentence breaks, like rouge-score without `split_summaries`.
    `workers > 1` spreads large inputs over that many processes (results are identical).
    Returns {type: float array with one value per prediction}.
    """
    types = check_types(types)
    refs = reference_lists(references)
    if len(refs) != len(predictions):
        raise ValueError(f"got {len(predictions)} predictions but {len(refs)} references; expected one per prediction")
    preds = list(predictions)
    n_workers = min(workers, len(preds) // _MIN_PAIRS_PER_WORKER)
    if n_workers <= 1:
        scores = _score_chunk(preds, refs, types, stemmer)
    else:
        bounds = np.linspace(0, len(preds), n_workers + 1).astype(int)
        chunks = [(preds[a:b], refs[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
        with ProcessPoolExecutor(n_workers) as pool:
            parts = list(pool.map(_score_chunk, *zip(*chunks), [types] * n_workers, [stemmer] * n_workers))
        scores = {t: [v for part in parts for v in part[t]] for t in types}
    return {t: np.asarray(v, dtype=float) for t, v in scores.items()}


__all__ = ["DEFAULT_TYPES", "References", "check_types", "lcs_length", "reference_lists", "rouge_scores"]
