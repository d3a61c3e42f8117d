"""Contamination between fine-tuning and evaluation data: exact and near duplicates, counted and
listed, through the library, the `ftevals data contamination` command and a suite gate."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from datafiles import chat, jsonl

from ftevals.cli import main
from ftevals.contamination import check_contamination
from ftevals.data import Example, Message
from ftevals.errors import ConfigError

Write = Callable[[str, "str | bytes"], Path]

NINE_WORDS = "please tell me when my new card will arrive"  # 7 word trigrams, 8 bigrams


def ex(id: str, text: str) -> Example:
    return Example(id, (Message("system", "Classify."), Message("user", text)), "x")


def test_exact_duplicates_after_normalisation() -> None:
    train = [ex("t1", "Where is my CARD??"), ex("t2", "something else entirely here")]
    report = check_contamination([ex("e1", "where is my card"), ex("e2", "unrelated words only")], [("train.jsonl", train)])
    assert (report.exact, report.near, report.rate) == (1, 0, 0.5)
    assert [m.to_dict() for m in report.matches] == [
        {"eval_id": "e1", "train_id": "t1", "train_file": "train.jsonl", "kind": "exact", "overlap": 1.0}
    ]


def test_near_duplicates_follow_the_ngram_jaccard_threshold() -> None:
    appended = ex("t-app", NINE_WORDS + " today")           # 8 trigrams, 7 shared: 7/8 = 0.875
    changed = ex("t-chg", NINE_WORDS.replace("arrive", "come"))  # last trigram differs: 6/8 = 0.75
    far = ex("t-far", "when will my card arrive")
    train = [("train.jsonl", [appended, changed, far])]
    strict = check_contamination([ex("e", NINE_WORDS)], train, threshold=0.8)
    assert [(m.train_id, m.kind, round(m.overlap, 4)) for m in strict.matches] == [("t-app", "near", 0.875)]
    loose = check_contamination([ex("e", NINE_WORDS)], train, threshold=0.75)
    assert [(m.train_id, round(m.overlap, 4)) for m in loose.matches] == [("t-app", 0.875), ("t-chg", 0.75)]
    assert (loose.exact, loose.near, loose.rate) == (0, 1, 1.0)
    # Bigrams see more overlap in the same pair of texts.
    bigram = check_contamination([ex("e", NINE_WORDS)], [("t", [changed])], threshold=0.77, ngram=2)
    assert [round(m.overlap, 4) for m in bigram.matches] == [0.7778]  # 7/9


def test_short_texts_are_compared_on_their_words() -> None:
    # Under n words there is no n-gram; the word set still catches a reordered short utterance.
    train = [("t", [ex("t1", "please refund"), ex("t2", "refund")])]
    report = check_contamination([ex("e1", "Refund, please!"), ex("e2", "cancel it")], train, threshold=0.8)
    assert [(m.eval_id, m.train_id, m.kind) for m in report.matches] == [("e1", "t1", "near")]
    assert report.matches[0].overlap == 1.0
    half = check_contamination([ex("e1", "refund now")], train, threshold=0.5)
    assert [(m.train_id, m.overlap) for m in half.matches] == [("t2", 0.5)]


def test_texts_without_words_never_match() -> None:
    report = check_contamination([ex("e", "?!?"), ex("e2", "🙂")], [("t", [ex("t", "..."), ex("t2", "🙂 🙂")])])
    assert report.matches == () and report.rate == 0.0


def test_several_training_files_each_listed_each_eval_example_counted_once() -> None:
    a = ("a.jsonl", [ex("a1", "where is my card")])
    b = ("b.jsonl", [ex("b1", "where is my card"), ex("b2", NINE_WORDS + " soon")])
    evals = [ex("e1", "Where is my card?"), ex("e2", NINE_WORDS), ex("e3", "nothing alike at all")]
    report = check_contamination(evals, [a, b])
    assert [(m.eval_id, m.train_file, m.train_id, m.kind) for m in report.matches] == [
        ("e1", "a.jsonl", "a1", "exact"), ("e1", "b.jsonl", "b1", "exact"), ("e2", "b.jsonl", "b2", "near"),
    ]
    assert (report.exact, report.near) == (1, 1)
    assert report.rate == pytest.approx(2 / 3)
    d = report.to_dict()
    assert d["train_files"] == ["a.jsonl", "b.jsonl"] and d["n_eval"] == 3 and d["rate"] == 0.666667
    assert (d["threshold"], d["ngram"]) == (0.8, 3)


def test_an_exact_match_in_one_file_outranks_a_near_match_in_another() -> None:
    report = check_contamination([ex("e", NINE_WORDS)], [("a", [ex("a", NINE_WORDS + " today")]), ("b", [ex("b", NINE_WORDS)])])
    assert [m.kind for m in report.matches] == ["near", "exact"]
    assert (report.exact, report.near) == (1, 0)


def test_matches_per_example_are_capped() -> None:
    train = [ex(f"t{i}", "where is my card") for i in range(6)]
    report = check_contamination([ex("e", "where is my card")], [("t", train)], max_matches_per_example=2)
    assert [m.train_id for m in report.matches] == ["t0", "t1"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"threshold": 0.0}, "contamination threshold must be in (0, 1], got 0.0; 0.8 is the usual choice"),
    ({"threshold": 1.5}, "contamination threshold must be in (0, 1], got 1.5; 0.8 is the usual choice"),
    ({"ngram": 0}, "contamination n-gram size must be >= 1, got 0; 3 is the usual choice"),
])
def test_bad_settings_are_config_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_contamination([ex("e", "a")], [("t", [ex("t", "a")])], **kwargs)
    assert str(info.value) == message


# ---------------------------------------------------------------------------------------------
# `ftevals data contamination`, in process


@pytest.fixture
def files(write: Write) -> dict[str, Path]:
    return {
        "train": write("train.jsonl", jsonl(chat("Where is my card?", "card_arrival", id="t1"),
                                            chat(NINE_WORDS + " today", "card_arrival", id="t2"),
                                            chat("How do I top up?", "top_up", id="t3"))),
        "train2": write("more/train.jsonl", jsonl(chat("What is the exchange rate?", "exchange_rate", id="m1"))),
        "eval": write("eval.jsonl", jsonl(chat("where is my card", "card_arrival", id="e1"),
                                          chat(NINE_WORDS, "card_arrival", id="e2"),
                                          chat("what is the exchange rate", "exchange_rate", id="e3"),
                                          chat("I want a refund", "refund", id="e4"))),
    }


def test_cli_counts_and_lists_matches(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["data", "contamination", "--train", str(files["train"]), "--train", str(files["train2"]),
                 "--eval", str(files["eval"])])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert out.out.splitlines() == [
        f"{files['eval']}: 2 exact and 1 near duplicates of training rows (75.00% of 4)",
        f"  exact e1 ~ t1 ({files['train']}, overlap 1.00)",
        f"  near  e2 ~ t2 ({files['train']}, overlap 0.88)",
        f"  exact e3 ~ m1 ({files['train2']}, overlap 1.00)",
    ]


def test_cli_as_a_gate(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    args = ["data", "contamination", "--train", str(files["train"]), "--eval", str(files["eval"])]
    assert main([*args, "--max-rate", "0.5"]) == 0  # 2 of 4 = 50%: at the limit passes
    assert main([*args, "--max-rate", "0.49"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == "ftevals: contamination 50.00% exceeds --max-rate 49.00%"
    assert main([*args, "--threshold", "0.9", "--max-rate", "0.25"]) == 0  # the near match no longer counts


def test_cli_bad_input_exits_2_with_the_message(files: dict[str, Path], write: Write, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write("bad.jsonl", '{"prompt": "x"}\n')
    assert main(["data", "contamination", "--train", str(bad), "--eval", str(files["eval"])]) == 2
    assert capsys.readouterr().err == f'ftevals: error: {bad}:1: "reference" is missing or empty; expected a non-empty string\n'
    assert main(["data", "contamination", "--train", str(files["train"]), "--eval", str(files["eval"]), "--ngram", "0"]) == 2
    assert capsys.readouterr().err == "ftevals: error: contamination n-gram size must be >= 1, got 0; 3 is the usual choice\n"


# ---------------------------------------------------------------------------------------------
# as a suite gate


def test_suite_gate_on_contamination(files: dict[str, Path], tmp_path: Path) -> None:
    from ftevals.pipeline import RunConfig, execute, prepare
    from ftevals.specs import ModelSpec
    from ftevals.suite import Suite

    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"model": m, "id": f"e{i}", "text": "card_arrival"}) + "\n"
                             for m in ("base", "tuned") for i in range(1, 5)))
    suite = Suite(name="leaky", task="classification", dataset=str(files["eval"]), models=("base", "tuned"),
                  train_files=(str(files["train"]),), gates=("contamination <= 0.25", "contamination <= 0.5"))
    config = RunConfig(models={"base": ModelSpec("base"), "tuned": ModelSpec("tuned", adapter="adapters/tuned")},
                       backend="replay", backend_options={"path": str(preds)}, cache_dir=tmp_path / "cache", resamples=100)
    prepared = prepare([suite], config)
    assert prepared.suites[0].contamination is not None and prepared.suites[0].contamination["rate"] == 0.5
    result = execute(prepared).suites[0]
    assert result.contamination is not None
    assert result.contamination.exact == 1 and result.contamination.near == 1
    assert [(g.source, g.passed) for g in result.gates] == [("contamination <= 0.25", False), ("contamination <= 0.5", True)]
