"""Fast ROUGE must give exactly rouge-score's numbers; the metrics wrap it per example."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ftevals.errors import ConfigError
from ftevals.metrics import get_metric
from benchmarks.rouge_reference import reference_rouge_scores

from ftevals.metrics.rouge_fast import lcs_length, rouge_scores

ALL_TYPES = ("rouge1", "rouge2", "rouge3", "rougeL", "rougeLsum")

# Words chosen to exercise the tokenizer: stemming pairs, case, digits, punctuation inside words,
# non-ASCII letters (dropped by rouge-score), speaker tags as in DialogSum, and short words (never stemmed).
WORDS = [
    "the", "The", "cat", "cats", "running", "runs", "run", "ran", "dog", "dogs", "generously", "generous",
    "#Person1#", "##Person2#", "isn't", "x-ray", "2021", "3.5", "caf\u00e9", "\u0130stanbul", "\u212a", "a", "I",
    "happily", "happy", "agreed", "agreement", "--", "", "abc", "ABC",
]
SEPARATORS = [" ", "  ", "\n", ", ", ". ", "\t", "\n\n", "!"]


@st.composite
def texts(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(max_size=30))
    words = draw(st.lists(st.sampled_from(WORDS), max_size=25))
    seps = draw(st.lists(st.sampled_from(SEPARATORS), min_size=len(words), max_size=len(words)))
    return "".join(w + s for w, s in zip(words, seps))


def _dp_lcs(a: list[int], b: list[int]) -> int:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 3), max_size=70), st.lists(st.integers(0, 3), max_size=70))
def test_bit_parallel_lcs_equals_dynamic_programming(a, b):
    assert lcs_length(a, b) == _dp_lcs(a, b)


def test_lcs_hand_checked():
    assert lcs_length([1, 2, 3, 4, 1], [3, 4, 1, 2, 1]) == 3
    assert lcs_length([], [1, 2]) == 0
    assert lcs_length([5] * 100, [5] * 70) == 70


@settings(max_examples=150, deadline=None)
@given(
    pairs=st.lists(st.tuples(texts(), st.lists(texts(), min_size=1, max_size=3)), min_size=1, max_size=4),
    stemmer=st.booleans(),
)
def test_identical_to_rouge_score(pairs, stemmer):
    predictions = [p for p, _ in pairs]
    references = [refs if len(refs) > 1 else refs[0] for _, refs in pairs]
    fast = rouge_scores(predictions, references, types=ALL_TYPES, stemmer=stemmer)
    slow = reference_rouge_scores(predictions, references, types=ALL_TYPES, stemmer=stemmer)
    for t in ALL_TYPES:
        np.testing.assert_allclose(fast[t], slow[t], rtol=0, atol=1e-12, err_msg=t)


def test_identical_to_rouge_score_on_dialogsum(dialogsum_test, dialogsum_bart_predictions):
    preds = dialogsum_bart_predictions
    single = [ex.reference for ex in dialogsum_test]
    multi = [ex.metadata["references"] for ex in dialogsum_test[:150]]
    types = ("rouge1", "rouge2", "rougeL", "rougeLsum")
    for refs, n in ((single, 500), (multi, 150)):
        fast = rouge_scores(preds[:n], refs, types=types)
        slow = reference_rouge_scores(preds[:n], refs, types=types)
        for t in types:
            np.testing.assert_allclose(fast[t], slow[t], rtol=0, atol=1e-12, err_msg=t)
    # Summary-level LCS only differs from rougeL when texts have several lines: check that case too.
    dialogues = [ex.user_text for ex in dialogsum_test[:40]]
    fast = rouge_scores(dialogues, single[:40], types=("rougeLsum",))
    slow = reference_rouge_scores(dialogues, single[:40], types=("rougeLsum",))
    np.testing.assert_allclose(fast["rougeLsum"], slow["rougeLsum"], rtol=0, atol=1e-12)


def test_process_pool_gives_the_same_scores(dialogsum_test, dialogsum_bart_predictions):
    preds = dialogsum_bart_predictions * 8
    refs = [ex.reference for ex in dialogsum_test] * 8
    one = rouge_scores(preds, refs)
    two = rouge_scores(preds, refs, workers=2)
    for t in one:
        assert np.array_equal(one[t], two[t])


def test_rouge_hand_checked():
    scores = rouge_scores(["the cat sat"], ["The cat sat on the mat."], types=("rouge1", "rouge2", "rougeL"))
    # Unigrams: 3 of 3 predicted, 3 of 6 reference -> F = 2 * 1 * 0.5 / 1.5; bigrams: 2 of 2, 2 of 5.
    assert scores["rouge1"][0] == pytest.approx(2 / 3)
    assert scores["rouge2"][0] == pytest.approx(2 * 0.4 / 1.4)
    assert scores["rougeL"][0] == pytest.approx(2 / 3)


def test_stemming_matters():
    with_stem = rouge_scores(["Running dogs"], ["run dog"], types=("rouge1",), stemmer=True)
    without = rouge_scores(["Running dogs"], ["run dog"], types=("rouge1",), stemmer=False)
    assert with_stem["rouge1"][0] == 1.0
    assert without["rouge1"][0] == 0.0


def test_rouge_lsum_uses_lines():
    pred, ref = "a b c d\ne f", "e f\na b c d"
    scores = rouge_scores([pred], [ref], types=("rougeL", "rougeLsum"))
    assert scores["rougeLsum"][0] == 1.0
    assert scores["rougeL"][0] == pytest.approx(4 / 6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown ROUGE type 'rougeX'"):
        rouge_scores(["a"], ["a"], types=("rougeX",))
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        rouge_scores(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="empty list"):
        rouge_scores(["a"], [[]])


def test_rouge_metrics_wrap_rouge_scores(make_examples, dialogsum_test, dialogsum_bart_predictions):
    examples, preds = dialogsum_test[:60], dialogsum_bart_predictions[:60]
    expected = reference_rouge_scores(preds, [ex.reference for ex in examples], types=("rouge1", "rouge2", "rougeL", "rougeLsum"))
    for name, values in expected.items():
        scored = get_metric(name)(preds, examples)
        np.testing.assert_allclose(scored.per_example, values, rtol=0, atol=1e-12)
        assert scored.value == pytest.approx(values.mean())
    multi = get_metric("rouge1")(preds, examples, multi_reference=True)
    best = reference_rouge_scores(preds, [ex.metadata["references"] for ex in examples], types=("rouge1",))
    np.testing.assert_allclose(multi.per_example, best["rouge1"], rtol=0, atol=1e-12)
    assert (multi.per_example >= get_metric("rouge1")(preds, examples).per_example).all()
    no_stem = get_metric("rouge1")(preds, examples, stemmer=False)
    assert no_stem.value < get_metric("rouge1")(preds, examples).value
    bare = make_examples(["a reference"])
    with pytest.raises(ConfigError, match="multi_reference=True needs metadata 'references'.*'ex-0'"):
        get_metric("rougeL")(["a prediction"], bare, multi_reference=True)
    assert get_metric("rougeL")([""], bare).details == {"empty_predictions": 1}
