"""Untrusted text stays text, and names cannot steer where files go.

Model outputs, dataset inputs, labels and example ids are untrusted: the HTML report and the rater
packets show them escaped, and none of them is ever part of an output path. The names that are
(suites, models, raters) must be plain names: `../`, slashes and the like are refused. The one
place names are joined under an output folder, `fsutil.safe_join`, refuses anything that would
land outside it, symlinks included.

Unit-level escaping tests: tests/report/test_report_render.py (test_untrusted_text_is_escaped,
test_autoescape_is_always_on, the content security policy), tests/report/test_report_browser.py
(hostile outputs do not run in Chromium), tests/packets/test_packets_build.py (escaping, rater
and suite names); blinding: test_no_identifying_string_in_rater_facing_files there. This file runs
hostile data through the real pipeline, plugin, report and packets.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from markupsafe import escape
from support.miniproject import MiniProject, banking77_rows

from ftevals.errors import ConfigError
from ftevals.fsutil import safe_join
from ftevals.packets import build_packets
from ftevals.results import read_results
from ftevals.specs import ModelSpec
from ftevals.suite import Suite

#: Example ids that would escape or break out of an attribute if used carelessly.
HOSTILE_IDS = [
    "../../../escaped-by-id",
    "..\\..\\escaped-by-id-win",
    "a/b/../../../../escaped-deep",
    "<img src=x onerror=alert('id')>",
    "\" onmouseover=\"alert('attr')",
    "javascript:alert('href')",
]
#: Model outputs (and one input and one label) that would run if rendered raw.
HOSTILE_OUTPUTS = [
    "<script>alert('output')</script>",
    "</textarea></td></table><script>alert('break-out')</script>",
    "<img src=x onerror=alert('img')>",
    "{{ 7*7 }} {% for x in y %}",
    "<svg/onload=alert('svg')>",
    "]]></script><!--",
]
HOSTILE_INPUT = "<iframe src=javascript:alert('input')></iframe> where is my card?"
HOSTILE_LABEL = "<b onclick=alert('label')>card</b>"
#: Raw fragments that must not survive into any HTML we write.
DANGEROUS = ["<script>alert", "<img src=x onerror", "<svg/onload", "<iframe src=javascript", "onmouseover=\"alert",
             "<b onclick", "href=\"javascript:"]


def hostile_rows() -> list[dict]:
    rows = banking77_rows(len(HOSTILE_IDS))
    for row, ex_id in zip(rows, HOSTILE_IDS):
        row["id"] = ex_id
    rows[0]["messages"][-2]["content"] = HOSTILE_INPUT
    rows[1]["messages"][-1]["content"] = HOSTILE_LABEL
    rows[1].setdefault("metadata", {})["label"] = HOSTILE_LABEL
    return rows


def test_hostile_ids_outputs_inputs_and_labels_through_plugin_report_and_packets(pytester: pytest.Pytester) -> None:
    project = MiniProject.create(pytester, hostile_rows())
    texts = dict(zip(HOSTILE_IDS, HOSTILE_OUTPUTS))
    project.write_predictions({"base": 0, "tuned": 0}, texts=texts)
    result = project.run()
    assert result.ret == 0, result.stdout.str() + result.stderr.str()

    results = read_results(project.path / "out" / "results.json")
    assert sorted(ex["id"] for ex in results["suites"][0]["examples"]) == sorted(HOSTILE_IDS)
    build_packets(results, project.path / "out" / "packets", raters=2, n_per_suite=len(HOSTILE_IDS))

    # Files went where they were told to and nowhere else: no id became a path.
    root = project.path
    assert not list(root.parent.rglob("escaped-*")) and not list(root.parent.parent.glob("escaped-*"))
    tops = {p.relative_to(root).parts[0] for p in root.rglob("*") if p.is_file()}
    # (.cache: pytester's HOME holds ftevals' own cache root, where memo.py keeps validated datasets.)
    assert tops <= {"out", "cache", "baselines", "data.jsonl", "labels.json", "preds.jsonl", "test_suite.py",
                    "tox.ini", ".cache"}, tops

    report = (root / "out" / "report.html").read_text(encoding="utf-8")
    packets = [p.read_text(encoding="utf-8") for p in (root / "out" / "packets" / "raters").rglob("packet.html")]
    for html in [report, *packets]:
        for raw in DANGEROUS:
            assert raw not in html, raw
        assert "]]></script><!--" not in html
    # They were shown, escaped (so the checks above are not passing on an empty page).
    for text in [*HOSTILE_OUTPUTS, HOSTILE_INPUT, HOSTILE_LABEL]:
        assert str(escape(text)) in report, text
    for text in HOSTILE_OUTPUTS:
        assert any(str(escape(text)) in html for html in packets), text
    assert any(str(escape(ex_id)) in report for ex_id in HOSTILE_IDS[3:])


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", ".", "/abs", "x\\..\\y", "evil name", "", "-flag",
                                  "é" * 3, "a" * 65])
def test_suite_and_model_names_must_be_plain(name: str) -> None:
    with pytest.raises(ConfigError, match="is not allowed"):
        Suite(name=name, dataset="data.jsonl")
    with pytest.raises(ConfigError, match="is not allowed"):
        ModelSpec(name)


def test_a_model_name_on_the_command_line_cannot_escape(pytester: pytest.Pytester) -> None:
    project = MiniProject.create(pytester)
    result = project.run("--ftevals-model", "../../evil=base")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: ftevals: --ftevals-model: model name '../../evil' is not allowed: use 1-64 "
                                 "letters, digits, '.', '_' or '-', starting with a letter or digit"])
    assert project.written_files() == []


def test_a_results_file_with_escaping_names_cannot_place_packets(pytester: pytest.Pytester, tmp_path: Path) -> None:
    project = MiniProject.create(pytester)
    assert project.run().ret == 0
    results = read_results(project.path / "out" / "results.json")
    results["suites"][0]["name"] = "../../escaped-suite"
    with pytest.raises(ConfigError, match="is not allowed"):
        build_packets(results, tmp_path / "p")
    with pytest.raises(ConfigError, match="is not allowed"):
        build_packets(read_results(project.path / "out" / "results.json"), tmp_path / "q", raters=["../x", "y"])
    assert not list(tmp_path.parent.rglob("escaped-suite*")) and not (tmp_path / "x").exists()


@pytest.mark.parametrize("parts", [("..", "x"), ("a", "..", "..", "x"), ("/etc", "passwd"), ("a/../../x",),
                                   ("link", "file")])
def test_safe_join_refuses_every_way_out(tmp_path: Path, parts: tuple[str, ...]) -> None:
    root = tmp_path / "out"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)  # a symlink inside the folder that points outside it
    with pytest.raises(ConfigError, match="would escape the output folder"):
        safe_join(root, *parts)


def test_safe_join_allows_plain_names_and_nested_folders(tmp_path: Path) -> None:
    assert safe_join(tmp_path, "raters", "r1", "packet.html") == tmp_path.resolve() / "raters" / "r1" / "packet.html"
    assert safe_join(tmp_path, "a", "..", "b") == tmp_path.resolve() / "b"  # stays inside: allowed
    assert json.dumps(str(safe_join(tmp_path, "part-1.csv"))).endswith('part-1.csv"')
