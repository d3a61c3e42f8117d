"""SQuAD-style exact match and token F1, and corpus BLEU checked against sacrebleu."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import sacrebleu

from ftevals.errors import ConfigError, MissingDependencyError
from ftevals.metrics import get_metric
from ftevals.metrics.text import normalize_answer


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("The  Cat, sat!", "cat sat"),
        ("an apple a day", "apple day"),
        ("Theatre is another word", "theatre is another word"),
        ("  A.  ", ""),
        ("l'avion", "lavion"),
    ],
)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


def test_exact_match_hand_checked(make_examples):
    examples = make_examples(["cat", "the dog", "dog", ""])
    scored = get_metric("exact_match")(["The cat.", "a dog", "cat", "   "], examples)
    assert scored.per_example.tolist() == [1.0, 1.0, 0.0, 1.0]
    assert scored.value == 0.75


def test_exact_match_multi_reference(make_examples):
    examples = make_examples(["Paris", "Paris"], [{"references": ["Lyon", "Paris"]}, {"references": ["Lyon"]}])
    assert get_metric("exact_match")(["paris", "paris"], examples, multi_reference=True).per_example.tolist() == [1.0, 0.0]
    assert get_metric("exact_match")(["paris", "paris"], examples).per_example.tolist() == [1.0, 1.0]


def test_token_f1_hand_checked(make_examples):
    examples = make_examples(["a cat sat on the mat", "cat sat on mat", "", "", "dog"])
    preds = ["the cat sat on mat", "cat sat", "", "something", "cat"]
    scored = get_metric("token_f1")(preds, examples)
    # Second: precision 2/2, recall 2/4 -> 2/3. Empty vs empty agree; empty vs non-empty do not.
    np.testing.assert_allclose(scored.per_example, [1.0, 2 / 3, 1.0, 0.0, 0.0])


def test_token_f1_counts_repeated_tokens_once_per_occurrence(make_examples):
    scored = get_metric("token_f1")(["cat cat cat"], make_examples(["cat dog"]))
    # One shared "cat": precision 1/3, recall 1/2.
    assert scored.value == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))


def test_token_f1_takes_the_best_reference(make_examples):
    examples = make_examples(["x"], [{"references": ["dog", "cat sat"]}])
    assert get_metric("token_f1")(["cat sat"], examples, multi_reference=True).value == 1.0


def test_bleu_equals_sacrebleu_corpus_bleu(dialogsum_test, dialogsum_bart_predictions):
    examples, preds = dialogsum_test[:200], dialogsum_bart_predictions[:200]
    refs = [ex.reference for ex in examples]
    scored = get_metric("bleu")(preds, examples)
    assert scored.value == pytest.approx(sacrebleu.corpus_bleu(preds, [refs]).score / 100, abs=1e-12)
    assert 0.05 < scored.value < 0.6
    rng = np.random.default_rng(0)
    for _ in range(3):
        idx = rng.integers(0, len(preds), len(preds))
        expected = sacrebleu.corpus_bleu([preds[i] for i in idx], [[refs[i] for i in idx]]).score / 100
        assert scored.on(idx) == pytest.approx(expected, abs=1e-12)
    sentence = [sacrebleu.sentence_bleu(p, [r]).score / 100 for p, r in zip(preds[:20], refs[:20])]
    np.testing.assert_allclose(scored.per_example[:20], sentence, rtol=0, atol=1e-12)


def test_bleu_multi_reference(dialogsum_test, dialogsum_bart_predictions):
    examples, preds = dialogsum_test[:100], dialogsum_bart_predictions[:100]
    streams = [[ex.metadata["references"][k] for ex in examples] for k in range(3)]
    scored = get_metric("bleu")(preds, examples, multi_reference=True)
    assert scored.value == pytest.approx(sacrebleu.corpus_bleu(preds, streams).score / 100, abs=1e-12)
    assert scored.value > get_metric("bleu")(preds, examples).value


def test_bleu_options_and_missing_dependency(make_examples, monkeypatch):
    examples = make_examples(["the cat sat on the mat"])
    with pytest.raises(ConfigError, match="tokenize='nope'"):
        get_metric("bleu")(["the cat"], examples, tokenize="nope")
    assert get_metric("bleu")(["the cat sat on the mat"], examples).value == pytest.approx(1.0)
    monkeypatch.setitem(sys.modules, "sacrebleu", None)
    monkeypatch.setitem(sys.modules, "sacrebleu.metrics", None)
    with pytest.raises(MissingDependencyError, match="pip install 'sacrebleu>=2'"):
        get_metric("bleu")(["the cat"], examples)
