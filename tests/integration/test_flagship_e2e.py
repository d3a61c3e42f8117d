"""The flagship path, end to end, in CI: a real suite through the pytest plugin and the real vLLM CPU
engine (the embedded base model and the committed banking77 LoRA adapter) to a results file, the
HTML report and rater packets; re-scoring the saved outputs from disk gives the stored scores.

Every other engine test stops short of this (parity on prompts, a server check, an engine killed
mid-run): this one is what a user's `pytest suites/` does, on a handful of examples.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ftevals.packets import build_packets
from ftevals.rescore import rescore
from ftevals.results import load

pytestmark = pytest.mark.vllm

ROOT = Path(__file__).resolve().parents[2]
N = 6
#: Gates that a broken run fails, robust to the rounding of bf16 vs float32 machines: structural
#: (the adapter answers in its trained format where the base chats: 6/6 against 0/6 on a float32
#: machine, so a margin of half the prompts), no worse than the base (accuracy 3/6 against 0/6 there),
#: and the integrity check's share of changed outputs. No accuracy level tuned to 6 prompts on one CPU.
GATES = ["regex_match >= base + 0.5", "accuracy >= base", "integrity >= 0.5"]

SUITE = f"""\
from ftevals import SamplingSpec, Suite

banking77 = Suite(
    name="banking77-e2e",
    task="classification",
    dataset={str(ROOT / "data/banking77/test.jsonl")!r},
    labels={str(ROOT / "data/banking77/labels.json")!r},
    limit={N},
    models=["base", "banking77"],
    sampling=SamplingSpec(max_tokens=16),
    metrics=["accuracy", "macro_f1", "regex_match"],
    # A bare snake_case label, the answer format the adapter was trained on; the base model chats.
    metric_params={{"regex_match": {{"pattern": "[a-z0-9_]+"}}}},
    gates={GATES!r},
)
"""

INI = f"""\
[pytest]
ftevals_models =
    base = default
    banking77 = base+{ROOT / "adapters/banking77"}
ftevals_backend = vllm
ftevals_cache_dir = cache
ftevals_results = out/results.json
ftevals_report = out/report.html
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, default_model) -> tuple[Path, subprocess.CompletedProcess[str]]:
    # A fresh interpreter, as a user runs it: the plugin loads from its entry point.
    project = tmp_path_factory.mktemp("flagship")
    (project / "pytest.ini").write_text(INI, encoding="utf-8")
    (project / "test_banking77_e2e.py").write_text(SUITE, encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"], cwd=project,
                          capture_output=True, text=True, timeout=900)
    return project, done


def test_the_suite_runs_through_the_plugin_and_vllm(run) -> None:
    project, done = run
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "4 passed" in done.stdout  # 3 gates x 1 adapter and the baseline (created)
    results = load(project / "out/results.json")
    suite = results.suites[0]
    assert results.run.backend is not None and results.run.backend.name == "vllm"
    assert list(suite.models) == ["base", "banking77"] and len(suite.examples) == N
    assert all(set(ex.outputs) == {"base", "banking77"} for ex in suite.examples)
    # The adapter was applied: its answers are not the base model's.
    assert any(ex.outputs["base"].text != ex.outputs["banking77"].text for ex in suite.examples)
    # Every gate was evaluated on the adapter, and passed on the run's own numbers.
    assert sorted(g.text for g in suite.gates if g.model == "banking77") == sorted(GATES)
    assert all(g.passed for g in suite.gates), [g.message for g in suite.gates if not g.passed]
    fmt = {m: suite.score(m, "regex_match").value for m in ("base", "banking77")}  # type: ignore[union-attr]
    assert fmt["banking77"] >= fmt["base"] + 0.5, fmt
    html = (project / "out/report.html").read_text(encoding="utf-8")
    assert "banking77-e2e" in html and html.count("<script") == 1


def test_a_candidate_on_the_command_line_passes_against_the_committed_baseline(run) -> None:
    # The README's CI promotion check, through the real engine: the first run wrote the baseline for
    # base and banking77; a job that adds a candidate (here the same adapter under a new name) must
    # pass, with the candidate listed as not in the baseline and a decision of its own.
    project, _ = run
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--ftevals-model",
                           f"candidate=base+{ROOT / 'adapters/banking77'}", "--ftevals-results", "out/candidate.json",
                           "--ftevals-no-report"], cwd=project, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "7 passed" in done.stdout  # 3 gates x 2 adapters and the baseline
    assert "not in the baseline: candidate (recorded when accepted with --ftevals-update-baseline)" in done.stdout
    results = load(project / "out/candidate.json")
    (suite,) = results.suites
    assert suite.baseline is not None and suite.baseline.status == "matched"
    assert suite.baseline.not_in_baseline == ("candidate",)
    decided = {d.model: d for d in results.decisions or ()}
    assert set(decided) == {"banking77", "candidate"}
    assert decided["candidate"].outcome == decided["banking77"].outcome  # the same adapter, the same evidence


def test_rescoring_the_saved_outputs_gives_the_stored_scores(run) -> None:
    project, _ = run
    suite = load(project / "out/results.json").suites[0]
    ids = [ex.id for ex in suite.examples]
    for model in suite.models:
        for name, scored in rescore(suite, model, ids).items():
            stored = suite.score(model, name)
            assert stored is not None and scored.value == pytest.approx(stored.value, abs=1e-12), (model, name)


def test_packets_from_the_real_results(run, tmp_path: Path) -> None:
    project, _ = run
    manifest = build_packets(load(project / "out/results.json"), tmp_path / "packets", n_per_suite=N, raters=3,
                             raters_per_item=2, seed=0)
    assert len(manifest.raters) == 3 and manifest.parts[0].n_items > 0
    sent = [p for files in manifest.rater_files.values() for p in files]
    text = "".join(p.read_text(encoding="utf-8", errors="replace") for p in sent if p.suffix in {".html", ".csv", ".md"})
    assert text and "banking77" not in text  # blinded: no model or suite name reaches a rater
    assert json.loads(manifest.manifest_path.read_text())["packet_id"] == manifest.packet_id


def test_the_example_suites_collect() -> None:
    # `pytest suites/ --co`: every example suite imports, validates its gates and lists its tests.
    done = subprocess.run([sys.executable, "-m", "pytest", "suites/", "--co", "-q", "-p", "no:cacheprovider"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "banking77::gate[banking77: accuracy > base significantly]" in done.stdout
    assert "restaurant8k::baseline" in done.stdout


def test_the_run_records_the_integrity_of_each_adapter(run) -> None:
    project, done = run
    results = load(project / "out/results.json")
    check = results.integrity["banking77"]  # type: ignore[index]
    assert check.applied and check.base == "base" and check.n_prompts == N
    assert "engine integrity: banking77 applied" in done.stdout
    # ... and gates on: the share of the adapter's outputs that differ from the base's.
    (gate,) = [g for g in results.suites[0].gates if g.text == "integrity >= 0.5"]
    assert gate.model == "banking77" and gate.passed, gate.message
    assert f"{check.changed_outputs / check.n_prompts:.3f}" in gate.message


def test_an_adapter_with_zero_lora_weights_fails_alone(tmp_path: Path, default_model) -> None:
    # The committed adapter with every lora_B zeroed: it loads, vLLM serves it, and it changes nothing.
    import shutil

    from safetensors.numpy import load_file, save_file

    from ftevals.pipeline import RunConfig, execute, prepare
    from ftevals.specs import ModelSpec
    from ftevals.suite import Suite

    zeroed = tmp_path / "zeroed"
    shutil.copytree(ROOT / "adapters/banking77", zeroed)
    weights = load_file(str(zeroed / "adapter_model.safetensors"))
    save_file({k: v * 0 if "lora_B" in k else v for k, v in weights.items()}, str(zeroed / "adapter_model.safetensors"))
    (zeroed / "ftevals-adapter.json").unlink(missing_ok=True)  # its training record no longer describes it

    models = {"base": ModelSpec("base"), "zeroed": ModelSpec("zeroed", adapter=str(zeroed))}
    suite = Suite(name="b77-zero", task="classification", dataset=str(ROOT / "data/banking77/test.jsonl"),
                  labels=str(ROOT / "data/banking77/labels.json"), models=("base", "zeroed"), limit=3)
    config = RunConfig(models=models, backend="vllm", cache_dir=tmp_path / "cache", resamples=100)
    # The unapplied adapter fails alone: the base is scored and written, the adapter carries the cause.
    (result,) = execute(prepare([suite], config), progress=None).suites
    assert result.models == ("base",)
    assert re.search(r"adapter 'zeroed' had no effect: .* first-token log-probabilities", result.failures["zeroed"])


def test_the_terminal_shows_no_engine_log_lines(run) -> None:
    # vLLM's own warnings (one per engine start, from every engine process) go to a log file.
    _, done = run
    out = done.stdout + done.stderr
    assert "vLLM's log lines and warnings go to" in out
    assert "(EngineCore" not in out and "[input_processor.py" not in out and "WARNING 1" not in out, out[-3000:]
    # Nor third-party warnings: Python's (torch's DeprecationWarnings, in the engine process too)
    # or C++'s ("[W1202 ... utils.cpp:68] Warning: NUMA binding ...").
    assert "Warning:" not in out and "warnings.warn(" not in out and "Triton is installed" not in out, out[-3000:]
    # The progress display opens and closes the generation.
    assert "to generate with vllm" in out and "ftevals: generated " in out, out[-3000:]
