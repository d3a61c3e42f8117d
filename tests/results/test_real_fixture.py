"""The committed real-results fixture is what the current pipeline computes from its own outputs.

`tests/fixtures/real_results.json` holds real generations (see tests/fixtures/README.md for the
command, dtype and machine). Re-scoring its saved outputs with today's metrics, bootstrap and
multiplicity adjustment must give back every stored score, CI, comparison and verdict: if the
scoring code drifts, this fails and names what moved (then regenerate the fixture, on purpose).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ftevals import compare as cmp
from ftevals.multiplicity import adjust_family
from ftevals.rescore import rescore
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
    method = first.adjustment or "none"
    again = adjust_family(cmp.compare_models(scores, reference=suite.reference, metrics=suite.metrics, ids=ids,
                                             resamples=first.resamples, seed=first.bootstrap_seed, alpha=first.alpha),
                          method)
    assert [c.to_dict() for c in again] == [c.to_dict() for c in suite.comparisons]
