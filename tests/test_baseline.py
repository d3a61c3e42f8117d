"""Record-then-compare baselines: the create -> match -> change -> update -> match workflow."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from ftevals.baseline import (BaselinePolicy, ModelRecord, Snapshot, check_baseline, describe_change, environment_of,
                              read_baseline)
from ftevals.results import BackendInfo, DatasetInfo, MetricInfo, ModelInfo, Results, RunInfo, ScoreSummary, SuiteResult
from ftevals.errors import ConfigError, ResultsError


#: Where the snapshots' numbers "came from": equal environments compare exactly.
HERE = {"backend": "vllm", "dtype": "float32", "hardware": "cpu:x86_64:avx2"}


def _snapshot(acc: float = 0.41, f1: float | None = 0.37, adapter_fp: str = "sha256:aaa",
              dataset_fp: str = "sha256:ddd", environment: dict[str, str] | None = HERE) -> Snapshot:
    return Snapshot(
        "banking77",
        dataset_fp,
        {
            "base": ModelRecord({"base": "sha256:bbb", "adapter": None},
                                {"accuracy": ScoreSummary(0.02, 0.005, 0.04, 200),
                                 "macro_f1": ScoreSummary(0.01, 0.0, 0.03, 200)}),
            "banking77": ModelRecord({"base": "sha256:bbb", "adapter": adapter_fp},
                                     {"accuracy": ScoreSummary(acc, acc - 0.07, acc + 0.07, 200),
                                      "macro_f1": ScoreSummary(f1, 0.30, 0.44, 200)}),
        },
        environment,
    )


def test_workflow_create_match_change_update_match(tmp_path: Path) -> None:
    path = tmp_path / "baselines" / "banking77.json"

    created = check_baseline(path, _snapshot())
    assert created.status == "created" and created.passed and path.exists()
    assert created.message == f"baseline {path} did not exist; wrote it with 4 values for 2 models: review and commit it"

    matched = check_baseline(path, _snapshot())
    assert matched.status == "matched" and matched.passed and matched.changes == ()
    assert matched.message == (f"baseline {path} matches this run (4 values for 2 models; compared exactly: "
                               "same dtype and hardware, float32 on cpu:x86_64:avx2 (vllm))")

    before = path.read_bytes()
    changed = check_baseline(path, _snapshot(acc=0.43, adapter_fp="sha256:ccc"))
    assert changed.status == "changed" and not changed.passed
    assert path.read_bytes() == before  # a failing check never rewrites the file
    assert changed.message == (
        f"baseline {path} differs from this run (2 changes; compared exactly: same dtype and hardware, "
        "float32 on cpu:x86_64:avx2 (vllm)):\n"
        "  banking77 adapter fingerprint: sha256:aaa -> sha256:ccc\n"
        "  banking77 accuracy: 0.41 -> 0.43 (+0.02)\n"
        "accept the new values with: pytest suites/ --ftevals-update-baseline"
    )
    assert changed.message.endswith("pytest suites/ --ftevals-update-baseline")
    assert [c.to_dict() for c in changed.changes] == [
        {"kind": "fingerprint", "model": "banking77", "metric": None, "baseline": "sha256:aaa",
         "current": "sha256:ccc", "field": "adapter"},
        {"kind": "value", "model": "banking77", "metric": "accuracy", "baseline": 0.41, "current": 0.43},
    ]

    updated = check_baseline(path, _snapshot(acc=0.43, adapter_fp="sha256:ccc"), update=True)
    assert updated.status == "updated" and updated.passed and len(updated.changes) == 2
    assert updated.to_dict()["path"] == str(path)

    again = check_baseline(path, _snapshot(acc=0.43, adapter_fp="sha256:ccc"))
    assert again.status == "matched"
    assert read_baseline(path) == _snapshot(acc=0.43, adapter_fp="sha256:ccc")


def test_file_is_deterministic_and_diffs_cleanly(tmp_path: Path) -> None:
    path_a, path_b = tmp_path / "a.json", tmp_path / "b.json"
    check_baseline(path_a, _snapshot())
    shuffled = _snapshot()
    reordered = Snapshot(shuffled.suite, shuffled.dataset_fingerprint,
                         {name: ModelRecord(dict(reversed(list(rec.fingerprints.items()))),
                                            dict(reversed(list(rec.scores.items()))))
                          for name, rec in reversed(list(shuffled.models.items()))}, shuffled.environment)
    check_baseline(path_b, reordered)
    text = path_a.read_text()
    assert path_b.read_text() == text
    assert text.endswith("}\n") and "NaN" not in text and "time" not in text
    data = json.loads(text)
    assert list(data) == sorted(data)
    assert data["schema"] == "ftevals.baseline" and data["schema_version"] == 1
    assert data["models"]["banking77"]["metrics"]["accuracy"] == {"ci_high": 0.48, "ci_low": 0.33999999999999997,
                                                                  "n": 200, "value": 0.41}


def test_update_keeps_unchanged_entries_verbatim(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    check_baseline(path, _snapshot(f1=0.37))
    # macro_f1 moves by float noise only (below the tolerance); accuracy really changes.
    check_baseline(path, _snapshot(acc=0.45, f1=0.37 + 1e-13), update=True)
    stored = read_baseline(path).models["banking77"].scores
    assert stored["macro_f1"].value == 0.37
    assert stored["accuracy"].value == 0.45


def test_tolerance_and_ci_modes(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    check_baseline(path, _snapshot(acc=0.41))
    assert check_baseline(path, _snapshot(acc=0.41 + 5e-10)).status == "matched"
    assert check_baseline(path, _snapshot(acc=0.41 + 5e-9)).status == "changed"
    assert check_baseline(path, _snapshot(acc=0.415), tolerance=0.01).status == "matched"
    # use_ci: the stored 0.41 lies inside the current run's CI 0.38..0.52, so it is not a change.
    assert check_baseline(path, _snapshot(acc=0.45), use_ci=True).status == "matched"
    assert check_baseline(path, _snapshot(acc=0.50), use_ci=True).status == "changed"


def test_undefined_values_added_and_removed_entries(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    check_baseline(path, _snapshot(f1=None))
    assert check_baseline(path, _snapshot(f1=None)).status == "matched"  # undefined equals undefined
    outcome = check_baseline(path, _snapshot(f1=0.3))
    assert outcome.status == "changed"
    assert describe_change(outcome.changes[0]) == "banking77 macro_f1: undefined -> 0.3"

    current = _snapshot(f1=None)
    current.models["banking77"].scores.pop("macro_f1")  # type: ignore[attr-defined]
    current.models["new-adapter"] = ModelRecord({}, {})  # type: ignore[index]
    outcome = check_baseline(path, current, accept_command="pytest suites/banking77 --ftevals-update-baseline")
    # A model the baseline does not hold is listed, never a change (a CI candidate must not fail it).
    assert [describe_change(c) for c in outcome.changes] == ["banking77 macro_f1: missing from this run (was undefined)"]
    assert outcome.not_in_baseline == ("new-adapter",)
    assert "not in the baseline: new-adapter" in outcome.message
    assert outcome.message.endswith("accept the new values with: pytest suites/banking77 --ftevals-update-baseline")

    dataset = check_baseline(path, _snapshot(f1=None, dataset_fp="sha256:eee"))
    assert [describe_change(c) for c in dataset.changes] == ["dataset fingerprint: sha256:ddd -> sha256:eee"]


def test_unreadable_baseline_is_an_error_unless_updating(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    path.write_text("{not json")
    with pytest.raises(ResultsError, match=r"cannot read the baseline .*--ftevals-update-baseline"):
        check_baseline(path, _snapshot())
    path.write_text(json.dumps({"schema": "ftevals.baseline", "schema_version": 99}))
    with pytest.raises(ResultsError, match="baseline schema_version 99 is not supported"):
        check_baseline(path, _snapshot())
    outcome = check_baseline(path, _snapshot(), update=True)
    assert outcome.status == "updated" and read_baseline(path) == _snapshot()


def test_snapshot_from_a_results_file(tmp_path: Path) -> None:
    def model(name: str, adapter_fp: str | None) -> ModelInfo:
        return ModelInfo(name, "base", base_fingerprint="sha256:bbb", adapter_fingerprint=adapter_fp)

    suite = SuiteResult(
        name="banking77",
        dataset=DatasetInfo("banking77", "data.jsonl", "sha256:ddd", n_examples=200),
        models=("base", "banking77"),
        metrics=(MetricInfo("accuracy", primary=True), MetricInfo("macro_f1")),
        scores={"base": {"accuracy": ScoreSummary(0.02, 0.005, 0.04), "macro_f1": ScoreSummary(0.01, 0.0, 0.03)},
                "banking77": {"accuracy": ScoreSummary(0.41, 0.33999999999999997, 0.48),
                              "macro_f1": ScoreSummary(0.37, 0.30, 0.44)}},
        examples=(),
    )
    run = RunInfo("run", backend=BackendInfo("vllm", {"dtype": "float32"}), hardware="cpu:x86_64:avx2")
    results = Results(run, {"base": model("base", None), "banking77": model("banking77", "sha256:aaa")}, (suite,))
    assert Snapshot.from_results(results, "banking77") == _snapshot()
    assert Snapshot.from_suite(suite, results.models, environment_of(results)) == _snapshot()
    assert Snapshot.from_suite(suite, results.models) == _snapshot(environment=None)
    with pytest.raises(ResultsError, match="no suite named 'gsm8k'"):
        Snapshot.from_results(results, "gsm8k")
    # check_baseline takes the suite entry directly (what the plugin holds), with the models section.
    path = tmp_path / "b.json"
    assert check_baseline(path, suite, models=results.models, environment=HERE).status == "created"
    assert read_baseline(path) == _snapshot()
    assert check_baseline(path, _snapshot()).status == "matched"
    no_fingerprints = check_baseline(path, suite, environment=HERE)
    assert no_fingerprints.status == "changed" and no_fingerprints.changes[0].field == "adapter"


# ---------------------------------------------------------------------------------------------
# BaselinePolicy: when a run compares, skips, refuses or rewrites a suite's baseline


def _prepared(evaluated: int, total: int, suite_limit: int | None = None) -> SimpleNamespace:
    """The parts of a PreparedSuite the policy reads: the sample, the file's size, the suite's own limit."""
    return SimpleNamespace(name="demo", dataset=[None] * evaluated, n_total=total,
                           suite=SimpleNamespace(limit=suite_limit))


@pytest.mark.parametrize(("limit", "ps", "reason"), [
    pytest.param(None, _prepared(20, 20), None, id="no-limit"),
    pytest.param(50, _prepared(20, 20), None, id="limit-above-size"),
    pytest.param(5, _prepared(5, 20),
                 "baseline not compared: --ftevals-limit 5 evaluates 5 of the 20 examples the baseline is for",
                 id="shrunk"),
    # The suite's own limit is what its baseline is for; a run limit at or above it changes nothing.
    pytest.param(10, _prepared(10, 100, suite_limit=10), None, id="suite-limit"),
    pytest.param(5, _prepared(5, 100, suite_limit=10),
                 "baseline not compared: --ftevals-limit 5 evaluates 5 of the 10 examples the baseline is for",
                 id="below-suite-limit"),
])
def test_policy_skips_the_baseline_only_when_the_sample_shrank(limit, ps, reason) -> None:
    assert BaselinePolicy(limit=limit).skip_reason(ps) == reason
    BaselinePolicy(limit=limit, update=reason is None).refuse_partial_update(ps)


def test_policy_refuses_an_update_from_a_shrunk_sample() -> None:
    with pytest.raises(ConfigError) as info:
        BaselinePolicy(update=True, limit=5).refuse_partial_update(_prepared(5, 20))

    assert str(info.value) == ("--ftevals-update-baseline cannot be combined with --ftevals-limit 5: suite 'demo' "
                               "would evaluate 5 of the 20 examples its baseline is for; drop --ftevals-limit to "
                               "update baselines")


def test_policy_path_and_accept_command(tmp_path: Path) -> None:
    policy = BaselinePolicy(folder="golden", argv=("suites/x.py", "-k", "a b", "--ftevals-update-baseline"))

    assert policy.path(tmp_path, "demo") == tmp_path / "golden" / "demo.json"
    assert policy.accept_command() == "pytest suites/x.py -k 'a b' --ftevals-update-baseline"


def test_policy_check_writes_then_compares_then_updates(tmp_path: Path) -> None:
    path = tmp_path / "demo.json"
    entry = SuiteResult(name="banking77", dataset=DatasetInfo("banking77", "d.jsonl", "sha256:ddd", n_examples=200),
                        models=("base",), metrics=(MetricInfo("accuracy", primary=True),),
                        scores={"base": {"accuracy": ScoreSummary(0.5, 0.4, 0.6)}}, examples=())

    def results(suite: SuiteResult, hardware: str = "cpu:x86_64:avx2") -> Results:
        return Results(RunInfo("r", backend=BackendInfo("vllm", {"dtype": "float32"}), hardware=hardware), {}, (suite,))

    assert BaselinePolicy().check(path, entry, results(entry)).status == "created"
    changed = replace(entry, scores={"base": {"accuracy": ScoreSummary(0.6, 0.5, 0.7)}})
    refused = BaselinePolicy(argv=("-q",)).check(path, changed, results(changed))
    assert refused.status == "changed" and "compared exactly: same dtype and hardware" in refused.message
    assert refused.message.endswith("accept the new values with: pytest -q --ftevals-update-baseline")
    # The same numbers from another kind of machine: 0.5 lies inside this run's CI 0.5..0.7.
    elsewhere = BaselinePolicy().check(path, changed, results(changed, "cpu:x86_64:avx512_bf16"))
    assert elsewhere.status == "matched"
    assert "compared within this run's confidence intervals: the baseline was recorded with float32 on " \
           "cpu:x86_64:avx2 (vllm), this run used float32 on cpu:x86_64:avx512_bf16 (vllm)" in (elsewhere.message or "")
    assert BaselinePolicy(use_ci=False).check(path, changed, results(changed, "cpu:x86_64:avx512_bf16")).status == "changed"
    assert BaselinePolicy(tolerance=0.2).check(path, changed, results(changed)).status == "matched"
    assert BaselinePolicy(update=True).check(path, changed, results(changed)).status == "updated"


def test_a_baseline_without_a_recorded_environment_is_compared_within_the_ci(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    check_baseline(path, _snapshot(environment=None))
    moved = check_baseline(path, _snapshot(acc=0.45))  # 0.41 is inside 0.38..0.52
    assert moved.status == "matched" and "recorded with an unrecorded dtype and hardware" in (moved.message or "")
    far = check_baseline(path, _snapshot(acc=0.60))  # 0.41 is outside 0.53..0.67
    assert far.status == "changed" and "compared within this run's confidence intervals" in (far.message or "")
    # Updating from another environment writes this run's values (and environment) wholesale.
    check_baseline(path, _snapshot(acc=0.45), update=True)
    assert read_baseline(path) == _snapshot(acc=0.45)


def test_a_rate_at_one_is_compared_within_its_wilson_interval_not_a_collapsed_bootstrap_ci() -> None:
    """Every example valid: the bootstrap CI is [1, 1], which would call one example of 200 a change."""
    from ftevals.baseline import _value_changed

    all_valid = ScoreSummary(1.0, 1.0, 1.0, 200)
    assert not _value_changed(0.995, all_valid, 1e-9, use_ci=True)  # one example of 200: inside [0.981, 1]
    assert _value_changed(0.95, all_valid, 1e-9, use_ci=True)  # ten of 200: outside it
    assert _value_changed(0.995, all_valid, 1e-9, use_ci=False)  # exact comparison is unchanged
    none_valid = ScoreSummary(0.0, 0.0, 0.0, 200)
    assert not _value_changed(0.005, none_valid, 1e-9, use_ci=True) and _value_changed(0.05, none_valid, 1e-9, use_ci=True)
