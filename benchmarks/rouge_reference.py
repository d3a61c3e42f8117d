"""ROUGE computed by a plain rouge-score loop: the yardstick ftevals' fast ROUGE must equal.

It lives here, not in the package, because only the benchmarks (speed against the real peer) and
the tests (equality with it) use it; ftevals itself never computes ROUGE this slow way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ftevals.metrics.rouge_fast import DEFAULT_TYPES, References, check_types, reference_lists


def reference_rouge_scores(
    predictions: Sequence[str],
    references: References,
    types: Sequence[str] = DEFAULT_TYPES,
    stemmer: bool = True,
) -> dict[str, np.ndarray]:
    """Per-example F-measures from rouge-score's own scorer (best over references when several)."""
    from rouge_score import rouge_scorer

    types = check_types(types)
    scorer = rouge_scorer.RougeScorer(list(types), use_stemmer=stemmer)
    out: dict[str, list[float]] = {t: [] for t in types}
    for pred, ref in zip(predictions, reference_lists(references)):
        result = scorer.score(ref[0], pred) if len(ref) == 1 else scorer.score_multi(ref, pred)
        for t in types:
            out[t].append(result[t].fmeasure)
    return {t: np.asarray(v, dtype=float) for t, v in out.items()}
