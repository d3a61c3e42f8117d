"""Engine integrity: an adapter the engine did not apply stops the run before anything is scored."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from support.replayrun import DATASET, LABELS

from ftevals.backends.base import BackendDefaults, Generation, GenerationRequest
from ftevals.data import Message
from ftevals.integrity import IntegrityError, check_integrity
from ftevals.models import unverified_models
from ftevals.pipeline import RunConfig, execute, prepare
from ftevals.specs import ModelSpec
from ftevals.suite import Suite
from ftevals.summary import integrity_line

MODELS = {"base": ModelSpec("base"), "tuned": ModelSpec("tuned", adapter="adapters/tuned")}


class Scripted(BackendDefaults):
    """A backend whose adapter answers like the base (or not), with scripted first-token logprobs."""

    name = "scripted"

    def __init__(self, *, adapter_differs: bool, logprob_shift: float | None) -> None:
        self.adapter_differs, self.logprob_shift = adapter_differs, logprob_shift
        self.probed: list[str] = []

    def identity(self) -> dict[str, object]:
        return {"backend": self.name, "differs": self.adapter_differs, "shift": self.logprob_shift}

    def render(self, model: ModelSpec, messages: Sequence[Message]) -> str:
        return messages[-1].content

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        return [Generation(text="card_arrival" if r.model.adapter is None or not self.adapter_differs else "lost_card",
                           tokens_in=3, tokens_out=1) for r in requests]

    def first_token_logprobs(self, requests: Sequence[GenerationRequest]) -> list[dict[int, float]] | None:
        if self.logprob_shift is None:
            return None
        self.probed += [r.model.name for r in requests]
        return [{7: -0.5 + (self.logprob_shift if r.model.adapter else 0.0), 9: -1.5} for r in requests]


def generated(backend: Scripted, tmp_path: Path, gates: tuple[str, ...] = ()):
    """Six BANKING77 rows through `backend` for base and tuned: the prepared run, plan and outcome."""
    from ftevals.cache import GenerationCache
    from ftevals.generate import Plan, build_messages, run_generation

    suite = Suite(name="b77", task="classification", dataset=str(DATASET), labels=str(LABELS), models=("base", "tuned"),
                  limit=6, gates=gates)
    config = RunConfig(models=MODELS, backend="vllm", cache_dir=tmp_path / "cache", cache_mode="off", resamples=100)
    prepared = prepare([suite], config)
    resolved = unverified_models(MODELS.values())
    plan = Plan()
    for ps in prepared.suites:
        for m in ps.models:
            for ex in ps.dataset.examples:
                plan.add(ps.name, resolved[m.name], ex, build_messages(ex, []), ps.suite.sampling, backend)
    outcome = run_generation(plan, backend, GenerationCache(tmp_path / "c", "off"), progress=None)
    return config, prepared, plan, outcome


def run(backend: Scripted, tmp_path: Path):
    _, prepared, plan, outcome = generated(backend, tmp_path)
    return check_integrity(prepared.suites, plan, outcome, backend)


def test_an_adapter_that_changes_outputs_passes_for_free(tmp_path: Path) -> None:
    backend = Scripted(adapter_differs=True, logprob_shift=None)
    checks = run(backend, tmp_path)
    assert checks["tuned"].applied and checks["tuned"].changed_outputs == 6 and checks["tuned"].probe == "outputs"
    assert backend.probed == []  # no extra engine work when the outputs already tell
    # A backend that re-runs nothing says so: no check is claimed that was not made.
    assert integrity_line(checks) == ("engine integrity: tuned applied (6/6 outputs differ from base); "
                                      "one model per engine call; base outputs not checked after serving "
                                      "adapters (this backend cannot re-check them)")


def test_identical_outputs_but_moved_logprobs_is_a_weak_adapter_not_an_error(tmp_path: Path) -> None:
    checks = run(Scripted(adapter_differs=False, logprob_shift=0.3), tmp_path)
    c = checks["tuned"]
    assert c.applied and c.changed_outputs == 0 and c.probe == "first-token-logprobs"
    assert c.max_logprob_delta == pytest.approx(0.3)


def test_an_adapter_with_no_effect_stops_the_run_naming_it(tmp_path: Path) -> None:
    with pytest.raises(IntegrityError) as err:
        run(Scripted(adapter_differs=False, logprob_shift=0.0), tmp_path)
    message = str(err.value)
    assert "adapter 'tuned' had no effect" in message and "equal 'base''s on all 6 prompts" in message
    assert "target modules match nothing" in message and "LoRA weights are zero" in message


def test_a_backend_without_logprobs_cannot_excuse_identical_outputs(tmp_path: Path) -> None:
    with pytest.raises(IntegrityError, match="cannot report log-probabilities"):
        run(Scripted(adapter_differs=False, logprob_shift=None), tmp_path)


def test_replay_runs_record_no_integrity(tmp_path: Path) -> None:
    # Replayed outputs come from a file: there is no engine whose integrity could be checked.
    from support.replayrun import MODELS as REPLAY_MODELS
    from support.replayrun import write_predictions

    preds = write_predictions(tmp_path / "p.jsonl")
    suite = Suite(name="b77", task="classification", dataset=str(DATASET), labels=str(LABELS),
                  models=tuple(REPLAY_MODELS), limit=5)
    config = RunConfig(models=REPLAY_MODELS, backend="replay", backend_options={"path": str(preds)},
                       cache_dir=tmp_path / "cache", resamples=100)
    results = execute(prepare([suite], config))
    assert results.integrity is None and "integrity" not in results.to_dict()


class Reswapping(Scripted):
    """Records the base samples it is asked to re-check; may report them changed (weights not restored)."""

    def __init__(self, *, restored: bool) -> None:
        super().__init__(adapter_differs=True, logprob_shift=None)
        self.restored = restored
        self.samples: list[tuple[str, str]] = []

    def verify_schedule(self, samples: Sequence[tuple[GenerationRequest, str]]) -> str:
        self.samples += [(r.model.name, kept) for r, kept in samples]
        if not self.restored:
            raise IntegrityError("base outputs changed after the swap")
        return f"swapped; {len(samples)}/{len(samples)} base outputs equal the run's"


def test_each_base_is_re_checked_once_with_its_own_greedy_outputs_and_the_schedule_is_recorded(tmp_path: Path) -> None:
    backend = Reswapping(restored=True)
    checks = run(backend, tmp_path)
    # Four of the base's requests, with the outputs the run kept for them.
    assert backend.samples == [("base", "card_arrival")] * 4
    assert checks["tuned"].schedule == "swapped; 4/4 base outputs equal the run's"
    assert integrity_line(checks).endswith("; swapped; 4/4 base outputs equal the run's")


def test_a_base_disturbed_by_serving_its_adapters_stops_the_run(tmp_path: Path) -> None:
    with pytest.raises(IntegrityError, match="base outputs changed after the swap"):
        run(Reswapping(restored=False), tmp_path)


# ---------------------------------------------------------------------------------------------
# The `integrity` gate: the share of an adapter's outputs that differ from its base model's


def _scored(backend: Scripted, tmp_path: Path, gates: tuple[str, ...]):
    from ftevals.score import score_suite

    config, prepared, plan, outcome = generated(backend, tmp_path, gates)
    checks = check_integrity(prepared.suites, plan, outcome, backend)
    return {g.id: g for g in score_suite(prepared.suites[0], plan, outcome, config, checks).gates}


def test_an_integrity_gate_checks_each_adapter_against_a_share_of_changed_outputs(tmp_path: Path) -> None:
    changed = _scored(Scripted(adapter_differs=True, logprob_shift=None), tmp_path, ("integrity >= 0.5",))
    (gate,) = changed.values()
    assert gate.model == "tuned" and gate.passed, gate.message
    # Applied (the log-probabilities moved) but not one output changed: the run goes on, the gate fails.
    weak = _scored(Scripted(adapter_differs=False, logprob_shift=0.3), tmp_path / "weak", ("tuned: integrity >= 0.5",))
    (gate,) = weak.values()
    assert not gate.passed and "integrity" in gate.message and "0.0" in gate.message, gate.message


@pytest.mark.parametrize(("gate", "why"), [
    ("integrity >= base", "compare it with a number"),
    ("integrity >= 0.2 significantly", "compare it with a number"),
    ("base: integrity >= 0.2", "is not an adapter"),
])
def test_an_integrity_gate_that_cannot_mean_anything_is_refused(tmp_path: Path, gate: str, why: str) -> None:
    from ftevals.errors import ConfigError

    suite = Suite(name="b77", task="classification", dataset=str(DATASET), labels=str(LABELS), models=("base", "tuned"),
                  limit=6, gates=(gate,))
    with pytest.raises(ConfigError, match=why):
        prepare([suite], RunConfig(models=MODELS, backend="vllm", cache_dir=tmp_path, resamples=100))


def test_an_integrity_gate_on_a_suite_without_adapters_is_refused(tmp_path: Path) -> None:
    from ftevals.errors import ConfigError

    suite = Suite(name="b77", task="classification", dataset=str(DATASET), labels=str(LABELS), models=("base",),
                  limit=6, gates=("integrity >= 0.2",))
    with pytest.raises(ConfigError, match="runs no adapter whose integrity is checked"):
        prepare([suite], RunConfig(models=MODELS, backend="vllm", cache_dir=tmp_path, resamples=100))


def test_an_integrity_gate_without_a_check_fails_loudly(tmp_path: Path) -> None:
    from support.replayrun import MODELS as REPLAY_MODELS
    from support.replayrun import write_predictions

    preds = write_predictions(tmp_path / "p.jsonl")
    adapter = next(name for name, spec in REPLAY_MODELS.items() if spec.adapter is not None)
    suite = Suite(name="b77", task="classification", dataset=str(DATASET), labels=str(LABELS),
                  models=tuple(REPLAY_MODELS), limit=5, gates=("integrity >= 0.1",))
    config = RunConfig(models=REPLAY_MODELS, backend="replay", backend_options={"path": str(preds)},
                       cache_dir=tmp_path / "cache", resamples=100)
    gates = execute(prepare([suite], config)).suites[0].gates
    assert [g.model for g in gates] == [adapter] and not gates[0].passed
    assert "no engine-integrity check" in gates[0].message
