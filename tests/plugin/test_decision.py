"""The decision card (decision.py) as a user meets it: one outcome per model with its reasons, the same
in the results record, on the terminal, in the CI markdown summary and in the HTML report."""

from __future__ import annotations

import json

import pytest
from support.miniproject import MiniProject

from ftevals.ci_summary import markdown_summary
from ftevals.results import load


def decisions(project: MiniProject) -> dict[str, dict]:
    data = json.loads(project.results_path.read_text(encoding="utf-8"))
    return {d["model"]: d for d in data["decisions"]}


def test_a_significant_gain_with_every_check_passing_is_promoted(project: MiniProject) -> None:
    project.write_predictions({"base": 2, "tuned": 18})
    project.write_suite(gates=["accuracy > base significantly", "macro_f1 >= 0.5"])

    result = project.run()

    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["decision (each model across the suites it ran in*",
                                 "  tuned  promote: 2 gates passed in 1 suite*"])
    d = decisions(project)["tuned"]
    assert d["outcome"] == "promote" and d["suites"] == ["demo"]
    (check,) = d["power"]
    assert check["gate"] == "accuracy > base significantly" and check["test"] == "mcnemar-exact"
    assert check["margin"] is None and 0 < check["mde"] < 1 and check["n"] == 20


def test_a_failing_gate_holds_the_model_and_names_the_gate(project: MiniProject) -> None:
    project.write_predictions({"base": 12, "tuned": 6})
    result = project.run()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["  tuned  HOLD: demo: accuracy >= base - 0.05 failed: accuracy regressed: tuned 0.300*"])
    assert decisions(project)["tuned"]["outcome"] == "hold"


def test_no_significant_change_below_the_suites_power_is_insufficient_evidence(project: MiniProject) -> None:
    # 20 examples, 2 of them flipped: the gate holds on its point estimate, but McNemar's test at
    # n=20 cannot see a drop of 0.05: that is not a pass.
    project.write_predictions({"base": 12, "tuned": 12 + 1})
    result = project.run()
    result.assert_outcomes(passed=2)  # the gate test itself judged the point estimate, as written
    d = decisions(project)["tuned"]
    assert d["outcome"] == "insufficient_evidence"
    (lacking,) = [r for r in d["reasons"] if r["status"] == "insufficient"]
    assert lacking["kind"] == "power"
    assert "at n=20 McNemar's exact test detects only changes of" in lacking["message"]
    (check,) = d["power"]
    assert check["margin"] == pytest.approx(0.05) and check["detectable"] is False
    assert check["mde"] > 0.05 and check["n_needed"] > 20
    result.stdout.fnmatch_lines(["  power: tuned accuracy: detects 0.* or more at n=20 (margin 0.050: NOT enough, n=* would)"])


def test_a_model_no_gate_checks_is_insufficient_evidence(project: MiniProject) -> None:
    project.write_predictions({"base": 2, "tuned": 18, "other": 14})
    project.write_suite(gates=["tuned: accuracy > base significantly"])
    project.run("--ftevals-model", "other=base+adapters/other").assert_outcomes(passed=2)
    d = decisions(project)["other"]
    assert d["outcome"] == "insufficient_evidence"
    assert [r["kind"] for r in d["reasons"] if r["status"] == "insufficient"] == ["coverage"]


def test_a_changed_baseline_holds_the_model_it_changed(project: MiniProject) -> None:
    project.write_predictions({"base": 2, "tuned": 18})
    project.write_suite(gates=["accuracy > base significantly"])
    project.run().assert_outcomes(passed=2)
    project.write_predictions({"base": 2, "tuned": 17})
    project.run().assert_outcomes(passed=1, failed=1)
    d = decisions(project)["tuned"]
    assert d["outcome"] == "hold"
    assert [r["kind"] for r in d["reasons"] if r["status"] == "block"] == ["baseline"]


def test_the_markdown_summary_and_report_show_the_same_decision(project: MiniProject) -> None:
    project.write_predictions({"base": 12, "tuned": 6})
    project.run()
    record = load(project.results_path)
    text = markdown_summary(record)
    assert text.index("### Decision") < text.index("### ❌ demo")  # first, before the suites
    assert "| tuned | ❌ **hold** | demo: accuracy &gt;= base - 0.05 failed: accuracy regressed" in text
    html = (project.path / "out" / "report.html").read_text(encoding="utf-8")
    assert html.index('class="decisions"') < html.index('class="cards"')
    assert '<strong class="outcome-hold">HOLD</strong>' in html


def test_speed_and_cost_sit_side_by_side_with_prices_from_the_ini(project: MiniProject) -> None:
    path = project.write_predictions({"base": 2, "tuned": 18})
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for row in rows:  # what a server's answers carry: tokens and each request's latency
        row.update(tokens_in=100, tokens_out=10 if row["model"] == "tuned" else 20,
                   latency_s=0.2 if row["model"] == "tuned" else 0.4)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    ini = (project.path / "tox.ini").read_text(encoding="utf-8")
    (project.path / "tox.ini").write_text(ini + "\nftevals_prices =\n    tuned = input_per_1m_tokens=0.5 output_per_1m_tokens=2\n",
                                          encoding="utf-8")
    project.write_suite(gates=["accuracy > base significantly"])

    result = project.run()

    result.assert_outcomes(passed=2)
    # (100 x 0.5 + 10 x 2) per million tokens, per request: 7e-05; 0.07 per 1,000 requests.
    assert decisions(project)["tuned"]["outcome"] == "promote"
    suite = json.loads(project.results_path.read_text(encoding="utf-8"))["suites"][0]
    assert suite["decisions"][0]["cost_per_1k_requests"] == pytest.approx(0.07)
    assert suite["usage"]["tuned"]["latency_basis"] == "request"  # replayed answers carry their own latency
    result.stdout.fnmatch_lines(["  speed and cost: base p50 0.400 s/request, * tok/s | tuned p50 0.200 s/request, * tok/s, "
                                 "0.07 per 1k requests"])


def test_a_bad_price_stops_the_run_before_anything_runs(project: MiniProject) -> None:
    ini = (project.path / "tox.ini").read_text(encoding="utf-8")
    (project.path / "tox.ini").write_text(ini + "\nftevals_prices =\n    tuned = input_per_1m_tokens=cheap\n", encoding="utf-8")
    result = project.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "ini ftevals_prices: 'tuned = input_per_1m_tokens=cheap': 'input_per_1m_tokens=cheap' is not KEY=NUMBER" in (
        result.stdout.str() + result.stderr.str())
