"""The bootstrap's vectorised path (`Scored.aggregate_rows`) agrees with the per-resample one.

A metric with a custom `aggregate` may also give `aggregate_rows`, the same value for every row
of a resample index matrix at once; compare.py then skips its Python loop. These tests draw random
label sets, predictions (unparseable ones included) and resamples, and require the two paths to
agree row by row, for each F1 average and for field_f1, and the bootstrap CIs to agree.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from ftevals.compare import bootstrap_ci
from ftevals.data import Example, Message
from ftevals.metrics import get_metric


def _examples(golds: list[str], slots: list[dict[str, str]] | None = None) -> list[Example]:
    out = []
    for i, g in enumerate(golds):
        meta = {"label": g} if slots is None else {"slots": slots[i]}
        out.append(Example(f"e{i}", (Message("user", f"q{i}"),), g if slots is None else json.dumps(slots[i]), meta))
    return out


def _rows_agree(scored, rng: np.random.Generator, n: int) -> None:
    assert scored.aggregate_rows is not None
    idx = rng.integers(0, n, size=(64, n))
    looped = np.array([scored.on(row) for row in idx])
    rows = scored.aggregate_rows(idx)
    np.testing.assert_allclose(rows, looped, rtol=1e-12, atol=0)
    # The bootstrap over the whole run gives the same interval either way.
    plain = replace(scored, aggregate_rows=None)
    a, b = bootstrap_ci(scored, resamples=300, seed=3), bootstrap_ci(plain, resamples=300, seed=3)
    assert (a.ci_low, a.ci_high) == pytest.approx((b.ci_low, b.ci_high), rel=1e-12)


@pytest.mark.parametrize("metric", ["macro_f1", "micro_f1", "weighted_f1"])
@pytest.mark.parametrize("seed", range(5))
def test_f1_rows_equal_the_loop(metric: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    k, n = int(rng.integers(2, 9)), int(rng.integers(5, 60))
    labels = [f"intent_{i}" for i in range(k)]
    golds = [labels[int(rng.integers(0, k))] for _ in range(n)]
    preds = [labels[int(j)] if j >= 0 else "no idea" for j in rng.integers(-1, k, n)]
    scored = get_metric(metric)(preds, _examples(golds), labels=labels)
    _rows_agree(scored, rng, n)


@pytest.mark.parametrize("seed", range(5))
def test_field_f1_rows_equal_the_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 40))
    slots = [{f"k{j}": str(int(rng.integers(0, 3))) for j in range(int(rng.integers(0, 3)))} for _ in range(n)]
    preds = []
    for s in slots:
        roll = rng.random()
        preds.append("not json" if roll < 0.2 else json.dumps({} if roll < 0.35 else
                     {k: (v if rng.random() < 0.7 else "x") for k, v in s.items()}))
    scored = get_metric("field_f1")(preds, _examples([""] * n, slots))
    _rows_agree(scored, rng, n)
