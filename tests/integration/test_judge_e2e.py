"""The LLM judge end to end on the real vLLM CPU engine: the embedded SmolLM2-135M-Instruct judges
six easy questions answered by itself and by the banking77 adapter (which answers every question
with an intent label), through the pytest plugin. Its judge gate is refused: first uncalibrated,
then, after synthetic raters' ratings are imported and calibrated, below the floor with the figure
(a 135M judge on at most 12 items). The second run's judge calls all come from the generation cache.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.scriptedjudge import rate_and_merge

from ftevals.cli import main
from ftevals.results import load

pytestmark = pytest.mark.vllm

ROOT = Path(__file__).resolve().parents[2]
QUESTIONS = [
    ("capital", "What is the capital of France? Answer in one word.", "Paris"),
    ("colour", "What colour is the sky on a clear day? Answer in one word.", "blue"),
    ("legs", "How many legs does a dog have? Answer with a number.", "4"),
    ("opposite", "What is the opposite of hot? Answer in one word.", "cold"),
    ("week", "How many days are in a week? Answer with a number.", "7"),
    ("ice", "What does water turn into when it freezes? Answer in one word.", "ice"),
]

SUITE = """\
from ftevals import Judge, SamplingSpec, Suite

easy = Suite(
    name="easy-judged",
    dataset="questions.jsonl",
    models=["base", "banking77"],
    sampling=SamplingSpec(max_tokens=12),
    judge=Judge("base", max_tokens=6),
    gates=["judge:correctness >= base"],
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


def _pytest(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"], cwd=project,
                          capture_output=True, text=True, timeout=600)


def test_the_embedded_model_judges_through_vllm_and_its_gate_is_refused_until_calibrated(
        tmp_path: Path, default_model) -> None:
    project = tmp_path
    (project / "pytest.ini").write_text(INI, encoding="utf-8")
    (project / "test_easy.py").write_text(SUITE, encoding="utf-8")
    (project / "questions.jsonl").write_text(
        "".join(json.dumps({"id": i, "prompt": q, "reference": a}) + "\n" for i, q, a in QUESTIONS), encoding="utf-8")

    first = _pytest(project)
    out = first.stdout + first.stderr
    assert first.returncode == 1, out[-4000:]  # the judge gate only
    assert "1 failed, 1 passed" in first.stdout, out[-4000:]
    assert "refused: judge:correctness may not gate yet: the judge is not calibrated on correctness" in first.stdout
    results = load(project / "out/results.json")
    suite = results.suites[0]
    judge = suite.judge
    assert judge is not None and judge.identity.model == "base" and judge.identity.base_fingerprint
    assert judge.parsing is not None and judge.parsing.requests == 6 * 2 * 3 + 6 * 2
    assert len(judge.items) == 12 and set(judge.win_rates) == {"banking77"}

    # Raters who score correctness by whether the answer holds the expected word.
    def score_of(model: str, example: str, criterion: str) -> int:
        ex = suite.example(example)
        assert ex is not None
        right = str(ex.reference).lower() in ex.outputs[model].text.lower()
        return {"correctness": 5 if right else 1, "helpfulness": 4 if right else 2}.get(criterion, 3 if right else 2)

    rate_and_merge(project / "out/results.json", project / "packet", score_of=score_of)
    calibration = project / "baselines" / "easy-judged.judge-calibration.json"
    assert main(["judge", "calibrate", str(project / "out/results.json"), "--out", str(calibration)]) == 0
    figures = json.loads(calibration.read_text(encoding="utf-8"))["criteria"]
    print("embedded judge:", judge.parsing, judge.win_rates, f"position bias {judge.position_bias}")
    print("embedded judge calibration:", json.dumps({c: {k: f[k] for k in ("n_items", "alpha", "alpha_humans",
                                                                          "kappa_quadratic")}
                                                     for c, f in figures.items()}))
    # Items: the rated outputs the judge could score (a weak judge leaves some unreadable).
    fig = figures["correctness"]

    second = _pytest(project)
    assert second.returncode == 1, (second.stdout + second.stderr)[-4000:]
    alpha = "undefined" if fig["alpha"] is None else format(fig["alpha"], ".2f")
    assert (f"refused: judge:correctness may not gate yet: judge-human alpha on correctness is {alpha} on "
            f"{fig['n_items']} items, below the suite's floor (alpha >= 0.67 on >= 30 items") in second.stdout
    again = load(project / "out/results.json")
    # Outputs and judge verdicts: all from the cache.
    assert again.run.timings["generated"] == again.run.timings["judge_generated"] == 0
    assert again.suites[0].judge.items == judge.items
