"""The metric registry: built-ins, custom metrics from a suite file, duplicate and unknown names."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ftevals.errors import ConfigError
from ftevals.metrics import Scored, get_metric, list_metrics, register_metric

BUILTINS = {
    # name: (kind, higher_is_better)
    "accuracy": ("binary", True),
    "macro_f1": ("continuous", True),
    "micro_f1": ("continuous", True),
    "weighted_f1": ("continuous", True),
    "rouge1": ("continuous", True),
    "rouge2": ("continuous", True),
    "rougeL": ("continuous", True),
    "rougeLsum": ("continuous", True),
    "exact_match": ("binary", True),
    "token_f1": ("continuous", True),
    "bleu": ("continuous", True),
    "json_valid": ("binary", True),
    "schema_valid": ("binary", True),
    "required_keys": ("binary", True),
    "regex_match": ("binary", True),
    "length_ok": ("binary", True),
    "field_f1": ("continuous", True),
    "field_exact": ("binary", True),
    "gsm8k_answer": ("binary", True),
}

# Parameters a metric cannot run without.
REQUIRED_PARAMS = {"required_keys": {"keys": ["a"]}, "regex_match": {"pattern": ".*"}, "length_ok": {"max_chars": 5}}


def test_builtins_are_registered_with_their_metadata():
    metrics = {m.name: m for m in list_metrics()}
    assert set(BUILTINS) <= set(metrics)
    for name, (kind, higher) in BUILTINS.items():
        assert (metrics[name].kind, metrics[name].higher_is_better) == (kind, higher), name
        assert metrics[name].value_range == (0.0, 1.0)
        assert "[0, 1]" in metrics[name].fn.__doc__, f"{name}'s docstring must state its range"


def test_every_builtin_scores_within_its_range(make_examples):
    examples = make_examples(
        ['{"a": "1"}', "b", "c"],
        [{"label": "x", "answer": "1", "slots": {"a": "1"}}, {"label": "y", "answer": "2", "slots": {}}, {"label": "x", "answer": "3", "slots": {}}],
    )
    preds = ['{"a": "1"}', "y", "the answer is 4"]
    for name in BUILTINS:
        scored = get_metric(name)(preds, examples, **REQUIRED_PARAMS.get(name, {}))
        low, high = get_metric(name).value_range
        assert low <= scored.value <= high, name
        assert len(scored.per_example) == 3
        valid = scored.per_example[~np.isnan(scored.per_example)]
        assert ((valid >= low) & (valid <= high)).all(), name
        if get_metric(name).kind == "binary":
            assert set(valid.tolist()) <= {0.0, 1.0}, name


SUITE_FILE = '''
from ftevals.metrics import Scored, register_metric


@register_metric(kind="binary")
def starts_with_label(predictions, examples):
    """1 when the prediction starts with the gold label, in [0, 1]."""
    return Scored.mean_of([float(p.strip().startswith(e.label)) for p, e in zip(predictions, examples)])
'''


def test_custom_metric_registered_from_a_suite_file(registry, tmp_path, make_examples):
    path = tmp_path / "suite_custom.py"
    path.write_text(textwrap.dedent(SUITE_FILE))
    spec = importlib.util.spec_from_file_location("suite_custom", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    metric = get_metric("starts_with_label")
    assert (metric.kind, metric.higher_is_better) == ("binary", True)
    assert metric.description == "1 when the prediction starts with the gold label, in [0, 1]."
    examples = make_examples(["cat", "dog"])
    assert metric(["cat, surely", "cat"], examples).value == 0.5
    assert "starts_with_label" in [m.name for m in list_metrics()]


def test_duplicate_names_raise_unless_replaced(registry):
    def mine(predictions, examples):
        return Scored.mean_of([1.0] * len(predictions))

    with pytest.raises(ConfigError, match="'accuracy' is already registered"):
        register_metric("accuracy")(mine)
    register_metric("mine")(mine)
    register_metric("mine")(mine)  # the same function again (a re-imported module) is fine

    def other(predictions, examples):
        return Scored.mean_of([0.0] * len(predictions))

    with pytest.raises(ConfigError, match="'mine' is already registered"):
        register_metric("mine")(other)
    register_metric("mine", replace=True)(other)
    assert get_metric("mine").fn is other


def test_unknown_metric_names_suggest_close_matches():
    with pytest.raises(ConfigError, match=r"unknown metric 'rogueL'; did you mean rougeL"):
        get_metric("rogueL")
    with pytest.raises(ConfigError, match="unknown metric 'macro-f1'; did you mean macro_f1"):
        get_metric("macro-f1")


def test_wrong_number_of_per_example_values_is_refused(registry, make_examples):
    @register_metric("broken")
    def broken(predictions, examples):
        return Scored.mean_of([1.0])

    with pytest.raises(ValueError, match="returned 1 per-example values for 2 predictions"):
        get_metric("broken")(["a", "b"], make_examples(["a", "b"]))


def test_scored_on_uses_the_aggregate_or_the_mean():
    mean = Scored.mean_of([1.0, 0.0, math.nan])
    assert mean.on(np.array([0, 0, 1])) == pytest.approx(2 / 3)
    assert mean.on(np.array([2])) != mean.on(np.array([2]))  # NaN: nothing defined


def test_importing_metrics_stays_light():
    code = (
        "import sys, ftevals.metrics as m; m.list_metrics(); "
        "heavy = [k for k in ('torch', 'vllm', 'transformers', 'sklearn', 'rouge_score', 'nltk', 'sacrebleu', 'jsonschema') "
        "if k in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
