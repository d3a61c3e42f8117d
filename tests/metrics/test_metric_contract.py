"""The metric extension contract: one file adds a metric, parameters are passed by signature, the
registry imports no implementation, and the format metrics publish their error kinds.

The suites here run end to end through `ftevals.pipeline` with the replay backend (saved
predictions, no model), on a small labelled dataset written to tmp_path.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ftevals.errors import ConfigError
from ftevals.metrics import Scored, get_metric, register_metric
from ftevals.metrics import format as fmt
from ftevals.metrics.base import Metric
from ftevals.pipeline import RunConfig, execute, prepare
from ftevals.specs import ModelSpec
from ftevals.suite import Suite

DOCS = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
LABELS = ["card_arrival", "lost_card", "top_up"]
GOLD = ["card_arrival", "lost_card", "top_up", "card_arrival"]
OUTPUTS = {
    "base": ["card_arrival please", "Lost card", "no idea", "top_up"],
    "tuned": ["card_arrival", "lost_card", "top_up", "card_arrival"],
}
MODELS = {"base": ModelSpec("base"), "tuned": ModelSpec("tuned", adapter="adapters/tuned")}


def import_file(path: Path) -> ModuleType:
    """Import one module file, as a suite file is imported."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_suite(tmp_path: Path, **suite: Any) -> dict[str, Any]:
    """Run one classification suite over GOLD with the replay backend; the results record."""
    dataset, predictions = tmp_path / "intents.jsonl", tmp_path / "predictions.jsonl"
    rows = [
        {"id": f"ex-{i}", "messages": [{"role": "user", "content": f"message {i}"}, {"role": "assistant", "content": label}],
         "metadata": {"label": label}}
        for i, label in enumerate(GOLD)
    ]
    dataset.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    preds = [{"model": m, "id": f"ex-{i}", "text": t} for m, texts in OUTPUTS.items() for i, t in enumerate(texts)]
    predictions.write_text("".join(json.dumps(p) + "\n" for p in preds), encoding="utf-8")
    config = RunConfig(models=MODELS, backend="replay", backend_options={"path": str(predictions)},
                       cache_dir=tmp_path / "cache", resamples=50)
    spec = Suite(name="intents", task="classification", dataset=str(dataset), labels=LABELS, models=tuple(MODELS), **suite)
    return execute(prepare([spec], config)).to_dict()


def per_example(results: dict[str, Any], metric: str) -> dict[str, list[float]]:
    examples = results["suites"][0]["examples"]
    return {m: [ex["outputs"][m]["scores"][metric] for ex in examples] for m in MODELS}


def docs_custom_metric() -> str:
    """The first code block of docs/metrics.md's "Custom metrics" section: the documented recipe."""
    section = DOCS.read_text(encoding="utf-8").split("## Custom metrics", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_the_documented_custom_metric_runs_in_a_suite_with_labels(registry, tmp_path):
    path = tmp_path / "suite_docs_metric.py"
    path.write_text(docs_custom_metric(), encoding="utf-8")
    import_file(path)
    assert get_metric("starts_with_label").params == frozenset()  # (predictions, examples): takes nothing

    results = run_suite(tmp_path, metrics=("starts_with_label", "accuracy"))
    suite = results["suites"][0]
    assert per_example(results, "starts_with_label") == {"base": [1.0, 0.0, 0.0, 0.0], "tuned": [1.0, 1.0, 1.0, 1.0]}
    assert suite["scores"]["base"]["starts_with_label"]["value"] == 0.25
    assert per_example(results, "accuracy")["base"] == [0.0, 1.0, 0.0, 0.0]  # accuracy still gets the labels
    # The record is unchanged: the labels are listed for every metric, whether it takes them or not.
    assert suite["metric_params"] == {"starts_with_label": {"labels": LABELS}, "accuracy": {"labels": LABELS}}


ONE_FILE_METRIC = '''
from ftevals.metrics import Scored, register_metric


@register_metric(kind="binary")
def label_share(predictions, examples, *, labels, min_chars=0):
    """1 when the output is one of the suite's labels and at least min_chars long, in [0, 1]."""
    return Scored.mean_of([float(p in labels and len(p) >= min_chars) for p in predictions])
'''


def test_adding_a_metric_is_one_file(registry, tmp_path):
    path = tmp_path / "my_metrics.py"
    path.write_text(textwrap.dedent(ONE_FILE_METRIC), encoding="utf-8")
    import_file(path)
    assert get_metric("label_share").params == {"labels", "min_chars"}

    results = run_suite(tmp_path, metrics=("label_share",), metric_params={"label_share": {"min_chars": 8}})
    assert per_example(results, "label_share") == {"base": [0.0, 0.0, 0.0, 0.0], "tuned": [1.0, 1.0, 0.0, 1.0]}
    assert results["suites"][0]["metric_params"] == {"label_share": {"labels": LABELS, "min_chars": 8}}


def test_a_parameter_the_metric_does_not_take_is_refused_at_prepare(registry, tmp_path):
    path = tmp_path / "my_metrics_strict.py"
    path.write_text(textwrap.dedent(ONE_FILE_METRIC), encoding="utf-8")
    import_file(path)
    expected = (r"suite 'intents': metric 'label_share' does not take parameter 'min_length' "
                r"\(it takes: labels, min_chars\); remove it from the suite's metric_params")
    with pytest.raises(ConfigError, match=expected):
        run_suite(tmp_path, metrics=("label_share",), metric_params={"label_share": {"min_length": 8}})

    @register_metric("bare")
    def bare(predictions, examples):
        return Scored.mean_of([1.0] * len(predictions))

    # Labels given explicitly are a parameter like any other; only the implicit ones are withheld.
    with pytest.raises(ConfigError, match=r"metric 'bare' does not take parameter 'labels' \(it takes: none\)"):
        run_suite(tmp_path, metrics=("bare",), metric_params={"bare": {"labels": LABELS}})


def test_a_direct_call_passes_parameters_by_signature(registry, make_examples):
    seen: list[dict[str, Any]] = []

    @register_metric("kw")
    def kw(predictions, examples, *, labels=None, threshold=0.5):
        seen.append({"labels": labels, "threshold": threshold})
        return Scored.mean_of([1.0] * len(predictions))

    @register_metric("anything")
    def anything(predictions, examples, **params):
        seen.append(params)
        return Scored.mean_of([1.0] * len(predictions))

    examples = make_examples(["a", "b"])
    get_metric("kw")(["a", "b"], examples, labels=["a", "b"], threshold=0.9)
    get_metric("anything")(["a", "b"], examples, labels=["a"], whatever=1)
    assert seen == [{"labels": ["a", "b"], "threshold": 0.9}, {"labels": ["a"], "whatever": 1}]
    with pytest.raises(ConfigError, match=r"metric 'kw' does not take parameter 'treshold' \(it takes: labels, threshold\)"):
        get_metric("kw")(["a", "b"], examples, treshold=0.9)


def test_signatures_are_read_once_at_registration():
    def scored(*_: Any, **__: Any) -> Scored:
        return Scored.mean_of([])

    assert Metric("m", lambda p, e: scored()).params == frozenset()
    assert Metric("m", lambda prediction, reference, /, k=1, *, labels: scored()).params == {"k", "labels"}
    assert Metric("m", lambda p, e, **kw: scored()).params is None
    assert Metric("m", lambda *args, labels=None: scored()).params == {"labels"}
    # Built-ins take **_: every key reaches them, as before.
    assert get_metric("accuracy").params is None and get_metric("rougeL").params is None
    with pytest.raises(ConfigError, match=r"metric 'one': .* must take \(predictions, examples\)"):
        Metric("one", lambda predictions: scored())


def run_python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_the_registry_imports_no_metric_implementation():
    out = run_python("""
        import sys
        import ftevals.metrics.registry
        print(sorted(k for k in sys.modules if k.startswith("ftevals.metrics")))
    """)
    assert out == "['ftevals.metrics', 'ftevals.metrics.base', 'ftevals.metrics.registry']"
    # The package has the built-ins registered on the first lookup.
    assert run_python("import ftevals.metrics as m; print(len(m.list_metrics()))") == "19"


def test_replace_overrides_a_builtin_before_the_first_lookup():
    out = run_python("""
        from ftevals.errors import ConfigError
        from ftevals.metrics import Scored, get_metric, register_metric

        def accuracy(predictions, examples):
            return Scored.mean_of([0.5] * len(predictions))

        try:
            register_metric()(accuracy)
        except ConfigError as exc:
            print(exc)
        register_metric(replace=True)(accuracy)
        print(get_metric("accuracy").fn is accuracy)
    """)
    assert out.splitlines() == ["a metric named 'accuracy' is already registered; pick another name or pass replace=True", "True"]


# ---------------------------------------------------------------------------------------------
# Format error kinds

#: Outputs that, between them, trigger every error kind of every format metric.
BAD_OUTPUTS = ["x", "[1]", '{"b": 1}', "aaaaaaaaaaaa", "abc", "a b c d", "#### 7", '{"a": "2"}']
FORMAT_PARAMS = {
    "schema_valid": {"schema": {"type": "object", "required": ["a"]}},
    "required_keys": {"keys": ["a"]},
    "regex_match": {"pattern": r"\d+"},
    "length_ok": {"min_chars": 2, "max_chars": 10, "min_words": 2, "max_words": 3},
}


def test_format_metrics_emit_exactly_their_published_kinds(make_examples):
    examples = make_examples(["{}"] * len(BAD_OUTPUTS), [{"slots": {"a": "1"}, "answer": "1"}] * len(BAD_OUTPUTS))
    emitted: set[str] = set()
    for name, kinds in fmt.ERROR_KINDS.items():
        details = get_metric(name)(BAD_OUTPUTS, examples, **FORMAT_PARAMS.get(name, {})).details
        assert list(details["error_kinds"]) == list(kinds), name
        assert set(details["examples"]) == set(kinds), f"{name} emitted {sorted(details['examples'])}"
        emitted |= set(details["examples"])
    assert fmt.INVALID_KINDS == emitted - fmt.WRONG_VALUE_KINDS
    # The values the report relies on.
    assert fmt.INVALID_KINDS == {"not_json", "not_object", "schema", "missing_keys", "no_match", "too_short",
                                 "too_long", "too_few_words", "too_many_words", "no_number"}
    assert fmt.JSON_KINDS == {"not_json", "not_object", "schema", "missing_keys"}
    assert isinstance(fmt.INVALID_KINDS, frozenset) and isinstance(fmt.JSON_KINDS, frozenset)
