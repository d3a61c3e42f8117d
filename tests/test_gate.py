"""Gate expressions: parsing, start-up checks and one-line evaluation messages."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from ftevals.compare import Comparison, ScoreSummary, compare_pair
from ftevals.errors import ConfigError
from ftevals.gate import Gate, evaluate_gate, parse_gate, parse_gates
from ftevals.metrics.base import Scored

# ---------------------------------------------------------------- parsing

GOOD = [
    # text, model, metric, op, threshold, relative, significantly, normalised expression
    ("macro_f1 >= 0.70", None, "macro_f1", ">=", 0.70, False, False, "macro_f1 >= 0.70"),
    ("rougeL >= base - 0.01", None, "rougeL", ">=", -0.01, True, False, "rougeL >= base - 0.01"),
    ("accuracy > base significantly", None, "accuracy", ">", 0.0, True, True, "accuracy > base significantly"),
    ("json_valid >= 0.95", None, "json_valid", ">=", 0.95, False, False, "json_valid >= 0.95"),
    ("banking77: accuracy >= base - 0.05", "banking77", "accuracy", ">=", -0.05, True, False,
     "accuracy >= base - 0.05"),
    ("contamination <= 0.01", None, "contamination", "<=", 0.01, False, False, "contamination <= 0.01"),
    # "%" is hundredths on the 0-1 scale, for floors and for margins alike (percentage points).
    ("accuracy >= 95%", None, "accuracy", ">=", 0.95, False, False, "accuracy >= 95%"),
    ("accuracy >= base - 5%", None, "accuracy", ">=", -0.05, True, False, "accuracy >= base - 5%"),
    ("accuracy > base + 2.5 %", None, "accuracy", ">", 0.025, True, False, "accuracy > base + 2.5%"),
    ("acc>=base-0.01", None, "acc", ">=", -0.01, True, False, "acc >= base - 0.01"),
    ("  loss   <  -2e-3 ", None, "loss", "<", -0.002, False, False, "loss < -2e-3"),
    ("ppl <= base + 0.5 SIGNIFICANTLY", None, "ppl", "<=", 0.5, True, True, "ppl <= base + 0.5 significantly"),
    ("macro_f1 >= 0.7 significantly", None, "macro_f1", ">=", 0.7, False, True, "macro_f1 >= 0.7 significantly"),
    ("rouge-l.sum >= +.5", None, "rouge-l.sum", ">=", 0.5, False, False, "rouge-l.sum >= .5"),
    ("v1.2-lora : exact_match < base", "v1.2-lora", "exact_match", "<", 0.0, True, False, "exact_match < base"),
]


@pytest.mark.parametrize(("text", "model", "metric", "op", "threshold", "relative", "sig", "expression"), GOOD)
def test_good_expressions(text: str, model: str | None, metric: str, op: str, threshold: float, relative: bool,
                          sig: bool, expression: str) -> None:
    gate = parse_gate(text)
    assert (gate.model, gate.metric, gate.op, gate.relative, gate.significantly) == (model, metric, op, relative, sig)
    assert gate.threshold == pytest.approx(threshold, abs=1e-15)
    assert gate.expression == expression
    assert parse_gate(gate.expression).expression == expression  # the normal form parses to itself


BAD = [
    ("", "gate '': empty expression; expected e.g. 'accuracy >= 0.7'"),
    ("accuracy", "gate 'accuracy': no comparison operator; expected one of >=, >, <=, <, as in 'accuracy >= 0.7'"),
    ("acc >> 0.7", "gate 'acc >> 0.7': unknown operator '>>'; expected one of >=, >, <=, <"),
    ("acc => 0.7", "gate 'acc => 0.7': unknown operator '=>'; expected one of >=, >, <=, < (did you mean '>='?)"),
    ("acc == 0.7", "gate 'acc == 0.7': unknown operator '=='; expected one of >=, >, <=, < "
                   "(gates are bounds; equality is not supported)"),
    (">= 0.7", "gate '>= 0.7': missing the metric name before '>='"),
    ("acc >=", "gate 'acc >=': missing the threshold after '>='; expected a number, a percentage or 'base'"),
    ("acc >= 0,7", "gate 'acc >= 0,7': threshold '0,7' is not a number; use '.' as the decimal point"),
    ("acc >= abc", "gate 'acc >= abc': threshold 'abc' is not a number, a percentage or 'base'; "
                   "expected e.g. '0.7', '70%' or 'base - 0.01'"),
    ("acc >= base * 2", "gate 'acc >= base * 2': unexpected '* 2' after 'base'; "
                        "expected '+ NUMBER', '- NUMBER' or 'significantly'"),
    ("acc >= base -", "gate 'acc >= base -': expected a number after 'base -'"),
    ("acc >= base + -0.01", "gate 'acc >= base + -0.01': expected a number after 'base +', got '-0.01'"),
    ("acc >= 0.7 significant", "gate 'acc >= 0.7 significant': unexpected 'significant' after the threshold; "
                               "did you mean 'significantly'?"),
    ("acc >= 0.7 0.8", "gate 'acc >= 0.7 0.8': unexpected '0.8' after the threshold; only 'significantly' may follow it"),
    ("a:b: acc >= 0.7", "gate 'a:b: acc >= 0.7': 'a:b: acc' has more than one ':'; write MODEL: METRIC, "
                        "e.g. 'banking77: accuracy'"),
    (": acc >= 0.7", "gate ': acc >= 0.7': missing the model name before ':'"),
    ("m: >= 0.7", "gate 'm: >= 0.7': missing the metric name between ':' and '>='"),
    ("macro f1 >= 0.7", "gate 'macro f1 >= 0.7': metric name 'macro f1' is not valid; use letters, digits, '_', "
                        "'.' or '-', starting with a letter"),
    ("bad/model: acc >= 1", "gate 'bad/model: acc >= 1': model name 'bad/model' is not valid; "
                            "use letters, digits, '.', '_' or '-'"),
    ("acc >= 150%", "gate 'acc >= 150%': '150%' is more than 100%; '%' means hundredths of a 0-1 metric"),
    ("0.5 <= acc <= 0.9", "gate '0.5 <= acc <= 0.9': more than one comparison operator ('<=' and '<='); "
                          "write one gate per bound"),
    ("acc >= basement", "gate 'acc >= basement': threshold 'basement' is not a number, a percentage or 'base'; "
                        "expected e.g. '0.7', '70%' or 'base - 0.01'"),
    ("acc >= nan", "gate 'acc >= nan': threshold 'nan' is not a number, a percentage or 'base'; "
                   "expected e.g. '0.7', '70%' or 'base - 0.01'"),
    ("acc > base significantly significantly", "gate 'acc > base significantly significantly': 'significantly' "
                                               "appears more than once; write it once, at the end"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_malformed_expressions_name_the_bad_part(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_gate(text)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


def test_parse_gates_reports_every_bad_expression_at_once() -> None:
    assert [g.metric for g in parse_gates(["a >= 1", "b <= 2"])] == ["a", "b"]
    with pytest.raises(ConfigError) as info:
        parse_gates(["acc >= 0.7", "acc >> 0.7", "f1 =< 1"])
    assert str(info.value) == (
        "2 gates are invalid:\n"
        "  gate 'acc >> 0.7': unknown operator '>>'; expected one of >=, >, <=, <\n"
        "  gate 'f1 =< 1': unknown operator '=<'; expected one of >=, >, <=, < (did you mean '<='?)"
    )


def test_check_metrics_and_targets() -> None:
    known = {"accuracy", "macro_f1", "perplexity"}
    parse_gate("accuracy >= 0.5").check_metrics(known)
    with pytest.raises(ConfigError, match=r"^gate 'acuracy >= 0.5': unknown metric 'acuracy'; did you mean "
                                          r"'accuracy'\? \(this suite has: accuracy, macro_f1, perplexity\)$"):
        parse_gate("acuracy >= 0.5").check_metrics(known)
    with pytest.raises(ConfigError, match="'contamination' is a suite-level value with no reference value"):
        parse_gate("contamination <= base").check_metrics(known, suite_level={"contamination"})
    with pytest.raises(ConfigError, match="drop the 'banking77:' prefix"):
        parse_gate("banking77: contamination <= 0.01").check_metrics(known, suite_level={"contamination"})
    parse_gate("contamination <= 1%").check_metrics(known, suite_level={"contamination"})
    ranges = {"accuracy": (0.0, 1.0), "perplexity": (1.0, math.inf)}
    parse_gate("accuracy >= base - 2%").check_metrics(known, ranges=ranges)
    with pytest.raises(ConfigError, match=r"'%' means hundredths of a 0-1 metric, but 'perplexity' ranges over "
                                          r"\[1, inf\]; write the threshold as a plain number"):
        parse_gate("perplexity <= base + 5%").check_metrics(known, ranges=ranges)

    models = ["banking77", "restaurant8k"]
    assert parse_gate("accuracy >= 0.5").targets(models) == models
    assert parse_gate("banking77: accuracy >= 0.5").targets(models) == ["banking77"]
    assert parse_gate("contamination <= 0.01").targets(models, suite_level={"contamination"}) == [None]
    with pytest.raises(ConfigError, match=r"unknown model 'bankin77'; did you mean 'banking77'\?"):
        parse_gate("bankin77: accuracy >= 0.5").targets(models)


# ---------------------------------------------------------------- evaluation


def _comparison(**over: Any) -> Comparison:
    fields: dict[str, Any] = dict(
        model="adapter", reference="base", metric="rougeL", kind="continuous", higher_is_better=True,
        model_value=0.412, reference_value=0.437, delta=0.412 - 0.437, ci_low=-0.041, ci_high=-0.009, n=500,
        test="paired-bootstrap", p_value=0.002, resamples=2000, bootstrap_seed=0, alpha=0.05, verdict="regressed",
    )
    fields.update(over)
    return Comparison(**fields)


def _eval(text: str, comparisons: list[Comparison] | None = None, scores: dict[str, Any] | None = None,
          model: str | None = "adapter", suite: dict[str, Any] | None = None) -> Any:
    """Evaluate with `scores` as this model's metric -> score (wrapped into the suite-wide mapping)."""
    return evaluate_gate(parse_gate(text), model, {"adapter": scores or {}}, comparisons or [], suite)


def test_max_drop_gate_message_matches_the_style_guide() -> None:
    result = _eval("rougeL >= base - 0.01", [_comparison()])
    assert not result.passed
    assert result.message == ("rougeL regressed: adapter 0.412 vs base 0.437 "
                              "(-0.025, 95% CI -0.041..-0.009, n=500; allowed -0.010)")
    small = _comparison(model_value=0.432, delta=0.432 - 0.437, ci_low=-0.02, ci_high=0.01,
                        verdict="no_significant_change")
    result = _eval("rougeL >= base - 0.01", [small])
    assert result.passed
    assert result.message == ("rougeL dropped: adapter 0.432 vs base 0.437 "
                              "(-0.005, 95% CI -0.020..+0.010, n=500; allowed -0.010; not significant)")
    assert result.to_dict() == {"id": "adapter::rougeL >= base - 0.01", "expression": "rougeL >= base - 0.01",
                                "model": "adapter", "passed": True, "message": result.message,
                                "text": "rougeL >= base - 0.01"}


def test_floor_gate_messages() -> None:
    scores = {"macro_f1": ScoreSummary(0.652, 0.611, 0.690, 200)}
    result = _eval("macro_f1 >= 0.70", scores=scores)
    assert not result.passed
    assert result.message == "macro_f1 0.652 is below the floor 0.700 (95% CI 0.611..0.690, n=200)"
    result = _eval("macro_f1 >= 65%", scores=scores)
    assert result.passed and result.message == "macro_f1 0.652 is above the floor 0.650 (95% CI 0.611..0.690, n=200)"
    # "significantly": the whole CI must clear the floor. Tuples are accepted as plain records.
    result = _eval("macro_f1 >= 0.6 significantly", scores={"macro_f1": (0.652, 0.611, 0.690, 200)})
    assert result.passed and result.message == ("macro_f1 0.652 is significantly above the floor 0.600 "
                                                "(95% CI 0.611..0.690, n=200)")
    result = _eval("macro_f1 >= 0.62 significantly", scores=scores)
    assert not result.passed and result.observed == 0.611
    at = _eval("macro_f1 > 0.652", scores=scores)
    assert not at.passed and at.message.startswith("macro_f1 0.652 is not above the floor 0.652")


def test_significantly_better_than_base_uses_the_comparison_test() -> None:
    improved = _comparison(metric="accuracy", kind="binary", test="mcnemar-exact", model="banking77",
                           model_value=0.41, reference_value=0.02, delta=0.39, ci_low=0.32, ci_high=0.46, n=200,
                           p_value=1.2e-20, verdict="improved")
    result = _eval("accuracy > base significantly", [improved], model="banking77")
    assert result.passed
    assert result.message == ("accuracy improved: banking77 0.410 vs base 0.020 "
                              "(+0.390, 95% CI +0.320..+0.460, n=200, p<0.001; required > 0 with p < 0.05)")
    assert result.to_dict()["id"] == "banking77::accuracy > base significantly"
    # A positive but not significant delta fails, whatever the point estimate says.
    unsure = _comparison(metric="accuracy", kind="binary", test="mcnemar-exact", model_value=0.45,
                         reference_value=0.42, delta=0.03, ci_low=-0.01, ci_high=0.07, n=200, p_value=0.21,
                         verdict="no_significant_change")
    result = _eval("accuracy > base significantly", [unsure])
    assert not result.passed
    assert result.message == ("accuracy did not change significantly: adapter 0.450 vs base 0.420 "
                              "(+0.030, 95% CI -0.010..+0.070, n=200, p=0.210; required > 0 with p < 0.05)")


def test_lower_is_better_metrics_gate_on_the_raw_direction() -> None:
    # Perplexity fell significantly: verdict "improved", raw delta negative.
    ppl = _comparison(metric="ppl", higher_is_better=False, model_value=8.0, reference_value=9.0, delta=-1.0,
                      ci_low=-1.4, ci_high=-0.6, verdict="improved")
    assert _eval("ppl < base significantly", [ppl]).passed
    assert not _eval("ppl > base significantly", [ppl]).passed
    assert _eval("ppl <= base + 0.5", [ppl]).passed
    worse = _comparison(metric="ppl", higher_is_better=False, model_value=9.8, reference_value=9.0, delta=0.8,
                        ci_low=0.5, ci_high=1.1, verdict="regressed")
    result = _eval("ppl <= base + 0.5", [worse])
    assert not result.passed
    assert result.message == "ppl regressed: adapter 9.800 vs base 9.000 (+0.800, 95% CI +0.500..+1.100, n=500; allowed +0.500)"
    # With a margin, "significantly" asks the whole CI to clear it: here ci_high 1.1 > 1.2 is false -> passes.
    assert _eval("ppl <= base + 1.2 significantly", [worse]).passed
    assert not _eval("ppl <= base + 1.0 significantly", [worse]).passed


def test_float_rounding_cannot_flip_a_gate() -> None:
    # With n=100, accuracy 0.41 vs 0.42 gives a delta of -0.010000000000000009.
    comp = _comparison(metric="accuracy", model_value=0.41, reference_value=0.42, delta=0.41 - 0.42,
                       verdict="no_significant_change")
    assert comp.delta < -0.01
    assert _eval("accuracy >= base - 0.01", [comp]).passed
    assert not _eval("accuracy > base - 0.01", [comp]).passed


def test_missing_or_undefined_values_fail_with_a_clear_message() -> None:
    nan = float("nan")
    result = _eval("macro_f1 >= 0.7", scores={"macro_f1": ScoreSummary(nan, nan, nan, 200)})
    assert not result.passed and result.message == "macro_f1 is undefined for adapter (no value); the gate cannot pass"
    result = _eval("macro_f1 >= 0.7", scores={})
    assert not result.passed and result.message == "adapter has no macro_f1 score; the gate cannot pass"
    result = _eval("rougeL >= base - 0.01", [])
    assert not result.passed
    assert result.message == "no comparison of adapter with the reference on rougeL; the gate cannot pass"
    undefined = _comparison(model_value=nan, delta=nan, ci_low=nan, ci_high=nan, verdict="no_significant_change")
    result = _eval("rougeL >= base - 0.01", [undefined])
    assert not result.passed
    assert result.message == "rougeL is undefined (adapter n/a vs base 0.437); the gate cannot pass"
    result = _eval("contamination <= 0.01", model=None, suite={"contamination": None})
    assert not result.passed and result.message == "contamination is undefined for this suite (no value); the gate cannot pass"
    result = _eval("contamination <= 0.01", model=None, suite={})
    assert not result.passed and result.message == "contamination has no suite-level value; the gate cannot pass"


def test_suite_level_values() -> None:
    result = _eval("contamination <= 0.01", model=None, suite={"contamination": 0.005})
    assert result.passed and result.message == "contamination 0.005 is below the ceiling 0.010"
    assert result.to_dict() == {"id": "contamination <= 0.01", "expression": "contamination <= 0.01", "model": None,
                                "passed": True, "message": "contamination 0.005 is below the ceiling 0.010",
                                "text": "contamination <= 0.01"}
    result = _eval("contamination <= 0.01", model=None, suite={"contamination": ScoreSummary(0.02, n=200)})
    assert not result.passed and result.message == "contamination 0.020 is above the ceiling 0.010 (n=200)"


def test_qualified_gate_refuses_another_model() -> None:
    with pytest.raises(ConfigError, match="is for model 'banking77', not 'other'"):
        _eval("banking77: accuracy >= 0.5", model="other")


def test_end_to_end_from_scored_values() -> None:
    ref = np.array([1.0] * 60 + [0.0] * 40)
    mod = ref.copy()
    mod[60:85] = 1.0
    comp = compare_pair(Scored.mean_of(mod), Scored.mean_of(ref), model="a", reference="base", metric="accuracy",
                        kind="binary", higher_is_better=True, ids=[str(i) for i in range(100)], resamples=500)
    gate: Gate = parse_gate("accuracy > base significantly")
    result = evaluate_gate(gate, "a", {}, [comp])
    assert result.passed and result.message.startswith("accuracy improved: a 0.850 vs base 0.600 (+0.250, 95% CI +")
    assert result.message.endswith(", n=100, p<0.001; required > 0 with p < 0.05)")


def test_results_file_shapes_reference_selection_and_written_text() -> None:
    # Scores as stored in a results file (no n), for several models; n supplied by the caller.
    scores = {"a": {"macro_f1": {"value": 0.652, "ci_low": 0.611, "ci_high": 0.690}},
              "b": {"macro_f1": {"value": 0.751, "ci_low": 0.702, "ci_high": 0.790}}}
    gate = parse_gate("macro_f1 >= 0.70")
    result = evaluate_gate(gate, "a", scores, [], n=200)
    assert result.message == "macro_f1 0.652 is below the floor 0.700 (95% CI 0.611..0.690, n=200)"
    assert evaluate_gate(gate, "b", scores, [], n=200).passed
    # Comparisons against two references: the one named `reference` is used.
    vs_base = _comparison(model="a")
    vs_other = _comparison(model="a", reference="v1", model_value=0.412, reference_value=0.410, delta=0.002,
                           ci_low=-0.01, ci_high=0.014, verdict="no_significant_change")
    relative = parse_gate("rougeL >= base - 0.01")
    assert not evaluate_gate(relative, "a", scores, [vs_base, vs_other], reference="base").passed
    assert evaluate_gate(relative, "a", scores, [vs_base, vs_other], reference="v1").passed
    missing = evaluate_gate(relative, "a", scores, [vs_base], reference="v2")
    assert missing.message == "no comparison of a with v2 on rougeL; the gate cannot pass"
    # `text` keeps the gate exactly as the suite wrote it, so callers can match results to their list.
    written = "a:  rougeL>=base-0.01"
    qualified = evaluate_gate(parse_gate(written), "a", scores, [vs_base])
    assert qualified.to_dict()["text"] == written
    assert (qualified.id, qualified.expression) == ("a::rougeL >= base - 0.01", "rougeL >= base - 0.01")
