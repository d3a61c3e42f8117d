"""Classification metrics: label normalisation, hand-checked scores, and F1 equal to scikit-learn's."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import f1_score

from ftevals.errors import ConfigError
from ftevals.metrics import get_metric
from ftevals.metrics.classification import UNPARSEABLE, normalize_label

AVERAGES = ("macro", "micro", "weighted")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("card_arrival", "card_arrival"),
        ("  Card Arrival.  ", "card_arrival"),
        ('"card-arrival"', "card_arrival"),
        ("`top_up_reverted`", "top_up_reverted"),
        ("**Card  -  arrival**", "card_arrival"),
        ("\u201ccard arrival\u201d", "card_arrival"),
        ("\n\ncard_arrival\nBecause the customer asks where the card is.", "card_arrival"),
        ("Refund_not_showing_up", "refund_not_showing_up"),
        ("The intent is card_arrival", "the_intent_is_card_arrival"),
        ("", ""),
        ("...", ""),
    ],
)
def test_normalize_label(raw, expected):
    assert normalize_label(raw) == expected


@pytest.fixture
def animals(make_examples):
    gold = ["cat", "cat", "dog", "dog", "bird"]
    preds = ["cat", "Dog!", "dog", "fish", "cat\nbecause it purrs"]
    return preds, make_examples(gold, [{"label": g} for g in gold])


def test_accuracy_hand_checked(animals):
    preds, examples = animals
    scored = get_metric("accuracy")(preds, examples)
    assert scored.per_example.tolist() == [1.0, 0.0, 1.0, 0.0, 0.0]
    assert scored.value == pytest.approx(0.4)


def test_f1_hand_checked(animals):
    # cat: tp 1, predicted 2, support 2 -> F1 0.5; dog likewise; bird: never predicted -> 0.
    # "fish" is unparseable: a miss for dog's recall, a false positive for no class.
    preds, examples = animals
    assert get_metric("macro_f1")(preds, examples).value == pytest.approx(1 / 3)
    assert get_metric("micro_f1")(preds, examples).value == pytest.approx(4 / 9)
    assert get_metric("weighted_f1")(preds, examples).value == pytest.approx(0.4)
    assert np.isnan(get_metric("macro_f1")(preds, examples).per_example).all()


def test_details_confusion_matrix_and_per_class(animals):
    preds, examples = animals
    details = get_metric("macro_f1")(preds, examples).details
    assert details["labels"] == ["bird", "cat", "dog"]
    assert details["columns"] == ["bird", "cat", "dog", UNPARSEABLE]
    assert details["confusion_matrix"] == [[0, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]]
    assert details["unparseable"] == 1
    assert details["per_class"]["cat"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert details["per_class"]["bird"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_given_label_set_makes_other_labels_parseable(make_examples):
    examples = make_examples(["cat", "dog"], [{"label": "cat"}, {"label": "dog"}])
    preds = ["cow", "Dog"]
    scored = get_metric("accuracy")(preds, examples, labels=["cat", "cow", "dog"])
    assert scored.per_example.tolist() == [0.0, 1.0]
    assert scored.details["unparseable"] == 0
    # "cow" occurs in predictions only: shown in the matrix, but not averaged over by macro-F1.
    assert scored.details["labels"] == ["cat", "cow", "dog"]
    assert get_metric("macro_f1")(preds, examples, labels=["cat", "cow", "dog"]).value == pytest.approx(0.5)
    assert get_metric("accuracy")(preds, examples).details["unparseable"] == 1


def test_label_set_errors(make_examples):
    examples = make_examples(["cat", "dog"], [{"label": "cat"}, {"label": "dog"}])
    with pytest.raises(ConfigError, match="'dog'.*not in the 2 given labels"):
        get_metric("accuracy")(["cat", "dog"], examples, labels=["cat", "cow"])
    with pytest.raises(ConfigError, match="both normalise to 'card_arrival'"):
        get_metric("accuracy")(["cat", "dog"], examples, labels=["cat", "dog", "card-arrival", "Card arrival"])
    with pytest.raises(ConfigError, match="list of label strings"):
        get_metric("accuracy")(["cat", "dog"], examples, labels="labels.json")
    with pytest.raises(ValueError, match="2 predictions for 1 examples"):
        get_metric("accuracy")(["cat", "dog"], examples[:1])


def _sklearn_f1(gold: list[str], pred_labels: list[str], idx: np.ndarray, average: str) -> float:
    y_true = [gold[i] for i in idx]
    y_pred = [pred_labels[i] for i in idx]
    return f1_score(y_true, y_pred, labels=sorted(set(y_true)), average=average, zero_division=0)


LABELS = ["alpha", "beta", "gamma", "delta", "eps"]


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    n=st.integers(1, 30),
    given_labels=st.booleans(),
)
def test_f1_aggregate_equals_sklearn_on_resamples(make_examples, data, n, given_labels):
    gold = data.draw(st.lists(st.sampled_from(LABELS[:4]), min_size=n, max_size=n))
    # Predictions: exact labels, decorated spellings of labels, and text that matches no label.
    raw = data.draw(st.lists(st.sampled_from([*LABELS, "Beta.", " GAMMA ", "no idea"]), min_size=n, max_size=n))
    idx = np.array(data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=2 * n)))
    examples = make_examples(gold, [{"label": g} for g in gold])
    labels = LABELS if given_labels else None
    known = set(LABELS) if given_labels else set(gold)
    pred_labels = [normalize_label(p) if normalize_label(p) in known else UNPARSEABLE for p in raw]
    for average in AVERAGES:
        scored = get_metric(f"{average}_f1")(raw, examples, labels=labels)
        assert scored.on(idx) == pytest.approx(_sklearn_f1(gold, pred_labels, idx, average), abs=1e-12)
        assert scored.value == pytest.approx(_sklearn_f1(gold, pred_labels, np.arange(n), average), abs=1e-12)


def test_f1_on_banking77_equals_sklearn(banking77_test, banking77_labels):
    gold = [ex.label for ex in banking77_test]
    rng = np.random.default_rng(0)
    preds = []
    for i, g in enumerate(gold):
        if i % 7 == 0:
            preds.append(banking77_labels[(banking77_labels.index(g) + 1) % len(banking77_labels)])
        elif i % 11 == 0:
            preds.append(g.replace("_", " ").title() + ".")
        elif i % 13 == 0:
            preds.append("I am not sure what you mean.")
        else:
            preds.append(g)
    by_key = {normalize_label(x): x for x in banking77_labels}
    pred_labels = [by_key.get(normalize_label(p), UNPARSEABLE) for p in preds]
    assert UNPARSEABLE in pred_labels
    for average in AVERAGES:
        scored = get_metric(f"{average}_f1")(preds, banking77_test, labels=banking77_labels)
        assert scored.value == pytest.approx(_sklearn_f1(gold, pred_labels, np.arange(len(gold)), average), abs=1e-12)
        for _ in range(3):
            idx = rng.integers(0, len(gold), len(gold))
            assert scored.on(idx) == pytest.approx(_sklearn_f1(gold, pred_labels, idx, average), abs=1e-12)
    accuracy = get_metric("accuracy")(preds, banking77_test, labels=banking77_labels)
    assert accuracy.value == pytest.approx(np.mean([p == g for p, g in zip(pred_labels, gold)]))


def test_empty_input_is_nan():
    assert np.isnan(get_metric("macro_f1")([], []).value)
    assert np.isnan(get_metric("accuracy")([], []).value)
