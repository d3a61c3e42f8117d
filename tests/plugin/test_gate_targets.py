"""The one rule for which models a gate checks and what its tests are called (`suite.gate_targets`),
used by the plugin at collection and by the pipeline for gate results and known-failure labels."""

from __future__ import annotations

import pytest

from ftevals.errors import ConfigError
from ftevals.gate import parse_gate
from ftevals.specs import ModelSpec
from ftevals.suite import (FewShot, GateTarget, Suite, check_known_failures, collection_targets, gate_targets,
                           known_failure)

BASE = ModelSpec("base")
TUNED = ModelSpec("tuned", adapter="adapters/tuned")
V2 = ModelSpec("v2", adapter="adapters/v2")
OTHER = ModelSpec("other", base="/models/other")
TABLE = {m.name: m for m in (BASE, TUNED, V2, OTHER)}


def suite(**fields) -> Suite:
    spec = {"name": "demo", "dataset": "data.jsonl", "models": ["base", "tuned", "v2"], **fields}
    return Suite(**spec)


def targets(s: Suite, models: list[ModelSpec], text: str) -> list[tuple[str | None, str]]:
    return [(t.model, t.label) for t in gate_targets(s, models, parse_gate(text))]


def test_an_unqualified_gate_is_one_test_per_adapter():
    assert targets(suite(), [BASE, TUNED, V2], "accuracy >= base - 0.05") == [
        ("tuned", "tuned: accuracy >= base - 0.05"), ("v2", "v2: accuracy >= base - 0.05")]


def test_the_fewshot_contender_is_gated_only_with_gate_models_all():
    contender = ModelSpec("base-fewshot4", fewshot=4)
    models = [BASE, TUNED, contender]

    assert targets(suite(), models, "accuracy > 0.5") == [("tuned", "tuned: accuracy > 0.5")]
    assert targets(suite(gate_models="all"), models, "accuracy > 0.5") == [
        ("tuned", "tuned: accuracy > 0.5"), ("base-fewshot4", "base-fewshot4: accuracy > 0.5")]


def test_without_adapters_every_non_reference_model_is_gated():
    assert targets(suite(models=["base", "other"]), [BASE, OTHER], "accuracy > 0.5") == [
        ("other", "other: accuracy > 0.5")]


def test_a_qualified_gate_and_a_suite_level_value_are_one_test_named_by_the_gate():
    assert targets(suite(), [BASE, TUNED, V2], "v2: accuracy >= 0.7") == [("v2", "v2: accuracy >= 0.7")]
    assert targets(suite(), [BASE, TUNED, V2], "contamination <= 0.05") == [(None, "contamination <= 0.05")]


def test_every_target_carries_the_gate_as_written():
    text = "accuracy  >=   0.7"
    (target,) = gate_targets(suite(models=["base", "tuned"]), [BASE, TUNED], parse_gate(text))

    assert target == GateTarget("tuned", f"tuned: {text}", text)


def test_known_failure_names_a_test_or_a_whole_gate_and_the_test_wins():
    s = suite(known_failures={"accuracy > 0.5": "every model", "v2: accuracy > 0.5": "v2 only"})
    models = [BASE, TUNED, V2]

    by_model = {t.model: known_failure(s, t) for t in gate_targets(s, models, parse_gate("accuracy > 0.5"))}
    assert by_model == {"tuned": "every model", "v2": "v2 only"}
    assert [known_failure(s, t) for t in gate_targets(s, models, parse_gate("macro_f1 > 0.1"))] == [None, None]


def test_a_known_failure_that_names_no_test_is_refused_with_the_choices():
    s = suite(models=["base", "tuned"], gates=["accuracy > 0.5"],
              known_failures={"accuracy > 0.5": "fine", "tuned: accuracy > 0.6": "typo"})
    found = gate_targets(s, [BASE, TUNED], parse_gate("accuracy > 0.5"))

    with pytest.raises(ConfigError) as info:
        check_known_failures(s, found)

    assert str(info.value) == ("suite 'demo': known_failures names 'tuned: accuracy > 0.6', which matches no gate "
                               "test; expected one of: 'tuned: accuracy > 0.5'")
    check_known_failures(suite(known_failures={"tuned: accuracy > 0.5": "ok"}), found)


def test_collection_targets_come_from_the_model_table_with_the_fewshot_contender():
    s = suite(models=["base", "tuned"], gate_models="all", fewshot=FewShot(k=3, pool="train.jsonl"))

    assert [(t.model, t.label) for t in collection_targets(s, "accuracy > 0.5", TABLE)] == [
        ("tuned", "tuned: accuracy > 0.5"), ("base-fewshot3", "base-fewshot3: accuracy > 0.5")]
    # Every model of the table when the suite names none.
    assert [t.model for t in collection_targets(suite(models=[]), "accuracy > 0.5", TABLE)] == ["tuned", "v2"]


@pytest.mark.parametrize(("fields", "text"), [
    pytest.param({}, "accuracy >> 0.5", id="unparsable-gate"),
    pytest.param({"models": ["base"]}, "accuracy > 0.5", id="no-model-to-gate"),
    pytest.param({"models": ["base", "ghost"]}, "accuracy > 0.5", id="unknown-model"),
])
def test_collection_keeps_one_item_where_preparation_or_the_test_will_say_why(fields, text):
    assert collection_targets(suite(**fields), text, TABLE) == [GateTarget(None, text, text)]
