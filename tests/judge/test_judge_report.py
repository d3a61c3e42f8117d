"""The judge in the HTML report and the terminal summary: figures shown, untrusted text escaped."""

from __future__ import annotations

import dataclasses
import json

from support.scriptedjudge import rate_and_merge

from ftevals.report import render_html
from ftevals.results import load
from ftevals.summary import summary_lines

HOSTILE = "<script>alert('judge')</script>"


def test_the_report_shows_the_judge_beside_the_raters_and_escapes_every_text(judged) -> None:
    path = judged.save(judged.run("anti", gates=["judge:correctness >= base"]))
    rate_and_merge(path, judged.root / "packet")
    results = load(path)
    suite = results.suites[0]
    # An example id is data, as untrusted as an output: make one hostile where the judge section
    # shows ids (the items where the judge and the raters disagree most; this judge mirrors them).
    victim = suite.human.ratings[0]["example"]
    items = tuple(dataclasses.replace(it, example=HOSTILE) if it.example == victim else it for it in suite.judge.items)
    ratings = tuple({**r, "example": HOSTILE} if r["example"] == victim else r for r in suite.human.ratings)
    hostile = dataclasses.replace(results, suites=(dataclasses.replace(
        suite, judge=dataclasses.replace(suite.judge, items=items),
        human=dataclasses.replace(suite.human, ratings=ratings)),))

    html = render_html(hostile)

    assert "LLM judge" in html and "Calibration against the human raters" in html
    assert "rated items" in html and "Where the judge and the raters disagree most" in html
    assert "Judge preference against base" in html and "Position bias" in html
    assert "not calibrated on correctness" in html  # the calibration state's message
    assert HOSTILE not in html and "&lt;script&gt;alert(&#39;judge&#39;)&lt;/script&gt;" in html


def test_the_terminal_summary_has_one_judge_line(judged) -> None:
    results = judged.run("position", gates=["judge_win_rate > 0.5"])
    lines = [line for line in summary_lines(results) if line.startswith("  judge ")]
    assert len(lines) == 1 and lines[0].startswith("  judge base, against base: tuned judge:correctness +")
    assert "tuned wins 0.000" in lines[0] and "position bias 1.000" in lines[0]
    assert "calibration correctness missing, format missing, preference missing" in lines[0]
    assert json.dumps(results.to_dict())  # the whole record stays JSON


def test_the_ci_markdown_summary_has_the_judge_line_too(judged) -> None:
    from ftevals.ci_summary import markdown_summary

    results = judged.run("position", gates=["judge_win_rate > 0.5"])
    judge_lines = [line for line in markdown_summary(results).splitlines() if line.startswith("- ⚖️ judge ")]
    assert len(judge_lines) == 1 and "tuned wins 0.000" in judge_lines[0] and "position bias 1.000" in judge_lines[0]
