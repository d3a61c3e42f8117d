"""HF `evaluate` modules as suite metrics: real modules written here, loaded offline from local folders."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ftevals import evaluate_metric, get_metric
from ftevals.data import load_dataset
from ftevals.errors import ConfigError
from ftevals.pipeline import RunConfig, execute, prepare
from tests.support import replayrun

OVERLAP = '''
import datasets
import evaluate


class WordOverlap(evaluate.Metric):
    """Share of the reference's words found in the prediction (mean over pairs)."""

    def _info(self):
        return evaluate.MetricInfo(
            description="word overlap", citation="", inputs_description="",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references):
        scores = []
        for p, r in zip(predictions, references):
            ref = set(r.lower().split())
            scores.append(len(ref & set(p.lower().split())) / len(ref) if ref else 0.0)
        return {"overlap": sum(scores) / len(scores), "n": len(scores), "note": "mean"}
'''

# A thin wrapper over rouge-score, which is what the Hub's `rouge` module is: our ROUGE must agree.
ROUGE = '''
import datasets
import evaluate
from rouge_score import rouge_scorer


class Rouge(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="rouge-score", citation="", inputs_description="",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references, use_stemmer=False):
        scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)
        scores = [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references)]
        return {"rougeL": sum(scores) / len(scores)}
'''


def module(tmp_path: Path, name: str, source: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    return folder


def test_a_local_module_scores_per_example_and_corpus(tmp_path):
    folder = module(tmp_path, "word_overlap", OVERLAP)
    examples = list(load_dataset(replayrun.DATASET).sample(6, seed=0).examples)
    preds = [ex.reference.replace("_", " ") if i % 2 else "nothing" for i, ex in enumerate(examples)]
    refs = [ex.reference.replace("_", " ") for ex in examples]
    examples = [type(ex)(ex.id, ex.messages, r, ex.metadata) for ex, r in zip(examples, refs)]

    per = evaluate_metric(folder, name="t_overlap", key="overlap")
    scored = per(preds, examples)
    assert list(scored.per_example) == [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    assert scored.value == 0.5 and scored.max_resamples is None

    corpus = evaluate_metric(folder, name="t_overlap_corpus", key="overlap", per_example=False, max_resamples=50)
    scored = corpus(preds, examples)
    assert scored.value == 0.5 and scored.max_resamples == 50
    assert scored.on(np.array([1, 3, 3])) == 1.0  # recomputed on the resampled pairs
    assert get_metric("t_overlap_corpus").description.startswith("`evaluate` module")


def test_bad_modules_and_keys_are_named(tmp_path):
    with pytest.raises(ConfigError, match="from local paths only .*evaluate.load"):
        evaluate_metric("rouge", name="t_hub")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="holds no empty.py"):
        evaluate_metric(empty, name="t_empty")
    folder = module(tmp_path, "word_overlap", OVERLAP)
    examples = list(load_dataset(replayrun.DATASET).sample(2, seed=0).examples)
    with pytest.raises(ConfigError, match=r"returned \['n', 'note', 'overlap'\]; say which score .* \['n', 'overlap'\]"):
        evaluate_metric(folder, name="t_nokey")(["a", "b"], examples)
    with pytest.raises(ConfigError, match="'note' is a str, not a number"):
        evaluate_metric(folder, name="t_strkey", key="note")(["a", "b"], examples)


def test_our_rouge_l_equals_a_rouge_score_evaluate_module(tmp_path):
    folder = module(tmp_path, "rouge_wrap", ROUGE)
    examples = list(load_dataset(Path(replayrun.ROOT) / "data" / "dialogsum" / "test.jsonl").sample(25, seed=1).examples)
    preds = [ex.user_text[: 40 + 7 * i] for i, ex in enumerate(examples)]  # partial overlaps of varied size
    theirs = evaluate_metric(folder, name="t_rouge_wrap", key="rougeL", compute_kwargs={"use_stemmer": True})
    ours = get_metric("rougeL")(preds, examples)
    np.testing.assert_allclose(ours.per_example, theirs(preds, examples).per_example, rtol=0, atol=1e-12)


def test_a_suite_with_an_evaluate_metric_runs_end_to_end(tmp_path):
    """Replay serves the outputs; the module's metric gets a CI, a paired comparison and a gate."""
    evaluate_metric(module(tmp_path, "word_overlap", OVERLAP), name="t_suite_overlap", key="overlap",
                    per_example=False, max_resamples=100)
    preds = replayrun.write_predictions(tmp_path / "preds.jsonl")
    base = replayrun.suite(24)
    suite = type(base)(**{**base.__dict__, "metrics": ("accuracy", "t_suite_overlap"),
                          "gates": ("t_suite_overlap > base",)})
    config = RunConfig(models=replayrun.MODELS, backend="replay", cache_dir=tmp_path / "cache", resamples=400,
                       backend_options={"path": str(preds)})
    results = execute(prepare([suite], config))
    (result,) = results.suites
    cmp = result.comparison("banking77", "t_suite_overlap")
    assert cmp is not None and cmp.delta > 0 and cmp.ci_low is not None
    assert result.details["banking77"]["t_suite_overlap"]["mode"] == "corpus"
    assert result.gates[0].passed, result.gates[0].message
    assert json.loads(json.dumps(results.to_dict()))  # the record stays JSON
