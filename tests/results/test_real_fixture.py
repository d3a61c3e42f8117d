"""The committed real-results fixture is what the current pipeline computes from its own outputs.

`tests/fixtures/real_results.json` holds real generations (see tests/fixtures/README.md for the
command, dtype and machine). Re-scoring its saved outputs with today's metrics, bootstrap and
multiplicity adjustment must give back every stored score, CI, comparison and verdict: if the
scoring code drifts, this fails and names what moved (then regenerate the fixture, on purpose).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftevals import compare as cmp
from ftevals.multiplicity import adjusted_p_values, compare_suite, recorded_method
from ftevals.rescore import compare_results, rescore
from ftevals.results import load

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "real_results.json"
RESULTS = load(FIXTURE)


def test_the_fixture_holds_real_generations_made_by_a_recent_pipeline():
    timings = RESULTS.run.timings
    assert timings["generated"] > 0 and timings["cached"] == 0, timings  # made with an empty cache
    assert RESULTS.run.backend is not None and RESULTS.run.backend.name == "vllm"
    assert RESULTS.run.hardware and RESULTS.integrity  # recorded by the current pipeline
    assert all(len(s.examples) == 20 for s in RESULTS.suites)


@pytest.mark.parametrize("suite", RESULTS.suites, ids=lambda s: s.name)
def test_rescoring_the_saved_outputs_gives_back_every_stored_number(suite):
    ids = [ex.id for ex in suite.examples]
    scores = {model: rescore(suite, model, ids) for model in suite.models}
    for model in suite.models:
        for metric, scored in scores[model].items():
            stored = suite.score(model, metric)
            assert stored is not None and scored.value == pytest.approx(stored.value, abs=1e-12), (model, metric)
            ci = cmp.bootstrap_ci(scored, resamples=suite.comparisons[0].resamples, seed=RESULTS.run.seed, alpha=0.05)
            assert (ci.ci_low, ci.ci_high) == pytest.approx((stored.ci_low, stored.ci_high), abs=1e-12), (model, metric)
    first = suite.comparisons[0]
    again = compare_suite(scores, reference=suite.reference, metrics=suite.metrics, ids=ids,
                          multiplicity=recorded_method(suite.comparisons), resamples=first.resamples,
                          seed=first.bootstrap_seed, alpha=first.alpha)
    assert [c.to_dict() for c in again] == [c.to_dict() for c in suite.comparisons]


def _with_adjustment(data: dict, method: str | None) -> dict:
    """The results as a run with another multiplicity setting would have recorded them."""
    out = json.loads(json.dumps(data))
    for suite in out["suites"]:
        for c in suite["comparisons"]:
            if method is None:
                for key in ("p_adjusted", "adjustment", "family_size"):
                    c.pop(key, None)
            else:
                c["adjustment"] = method
    return out


def test_comparing_two_runs_adjusts_with_the_method_their_file_records():
    data = json.loads(FIXTURE.read_text(encoding="utf-8"))
    # banking77 against base in the banking77 suite: McNemar p=0.0078 (accuracy) and 0.001 (macro_f1).
    pair = {"model_a": "base", "model_b": "banking77", "suites": ["banking77"], "alpha": 0.01}

    holm = compare_results(data, data, **pair)["banking77"]
    raw = [c.p_value for c in holm]
    assert [(c.adjustment, c.family_size) for c in holm] == [("holm", 2), ("holm", 2)]
    assert [c.p_adjusted for c in holm] == pytest.approx(adjusted_p_values(raw, "holm"), abs=1e-12)
    assert [c.verdict for c in holm] == ["improved", "improved"]  # Holm keeps 0.0078 for the larger p

    bonferroni = compare_results(_with_adjustment(data, "bonferroni"), data, **pair)["banking77"]
    assert [(c.adjustment, c.family_size) for c in bonferroni] == [("bonferroni", 2), ("bonferroni", 2)]
    assert [c.p_adjusted for c in bonferroni] == pytest.approx([min(1.0, 2 * p) for p in raw], abs=1e-12)
    # Bonferroni's 2 x 0.0078 is above alpha 0.01: the accuracy gain is no longer significant.
    assert [c.verdict for c in bonferroni] == ["no_significant_change", "improved"]

    unadjusted = compare_results(_with_adjustment(data, None), _with_adjustment(data, None), **pair)["banking77"]
    assert [(c.p_adjusted, c.adjustment) for c in unadjusted] == [(None, None), (None, None)]
    assert [c.verdict for c in unadjusted] == ["improved", "improved"]
