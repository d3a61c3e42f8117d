"""The report's small pure parts: word diff, SVG charts, number formats, generic tables."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ftevals.report.diff import MAX_WORDS, changed_words, word_diff
from ftevals.report.fmt import ci, num, pct, pval, signed
from ftevals.report.generic import tabular
from ftevals.report.svg import Bar, bar_chart, delta_chart


def _output_of(segments: list[tuple[str, str]]) -> str:
    return "".join(text for op, text in segments if op != "-")


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ("the cat sat", "the dog sat", [("=", "the "), ("-", "cat "), ("+", "dog "), ("=", "sat")]),
        ("same words", "same words", [("=", "same words")]),
        ("", "new text", [("+", "new text")]),
        ("a b", "a", [("=", "a"), ("-", " b ")]),  # deletions are padded so they do not glue on
    ],
)
def test_word_diff(before: str, after: str, expected: list[tuple[str, str]]) -> None:
    assert word_diff(before, after) == expected


@given(st.text(alphabet=st.sampled_from("ab c\n\t<>&"), max_size=60), st.text(alphabet=st.sampled_from("ab c\n\t<>&"), max_size=60))
def test_dropping_deletions_gives_back_the_output_exactly(before: str, after: str) -> None:
    segments = word_diff(before, after)
    assert _output_of(segments) == after
    assert all(text for _, text in segments)
    assert all(a[0] != b[0] for a, b in zip(segments, segments[1:]))  # adjacent segments merged
    assert (changed_words(segments) == 0) == (before.split() == after.split())


def test_huge_outputs_are_not_diffed_word_by_word() -> None:
    before = " ".join(f"w{i}" for i in range(MAX_WORDS + 1))
    after = " ".join(f"v{i}" for i in range(MAX_WORDS + 1))
    segments = word_diff(before, after)
    assert [op for op, _ in segments] == ["-", "+"]
    assert _output_of(segments) == after


def test_bar_chart_is_wellformed_and_escaped() -> None:
    bars = [Bar("base", 0.2, 0.1, 0.3, "ref"), Bar('<script>"x"&', 0.8, 0.7, 0.9), Bar("missing", None)]
    svg = str(bar_chart(bars, title="accuracy <b>", value_range=[0, 1]))
    root = ET.fromstring(svg)  # well-formed XML: nothing unescaped got in
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    texts = "".join(root.itertext())
    assert "accuracy <b>" in texts and "0.800 [0.700..0.900]" in texts
    assert len(root.findall("{http://www.w3.org/2000/svg}rect")) == 2  # no bar for a missing value


def test_charts_clip_and_scale() -> None:
    # Whiskers outside the metric's range are clipped to the plot, not drawn over the labels.
    svg = str(bar_chart([Bar("m", 0.5, -3.0, 4.0)], title="t", value_range=[0, 1]))
    xs = [float(x) for el in ET.fromstring(svg).iter() for k, x in el.attrib.items() if k in ("x1", "x2")]
    assert min(xs) >= 120 and max(xs) <= 320
    delta = str(delta_chart([Bar("a", -0.2, -0.3, -0.1, "dn"), Bar("b", 0.05, -0.01, 0.1, "ns")], title="d"))
    root = ET.fromstring(delta)
    assert len(root.findall("{http://www.w3.org/2000/svg}circle")) == 2
    assert "-0.200 [-0.300..-0.100]" in "".join(root.itertext())


def test_number_formats() -> None:
    assert num(None) == "—" and num(1234) == "1,234" and num(0.12345) == "0.123" and num(float("nan")) == "—"
    assert num(True) == "True" and num("x") == "x"
    assert signed(0.39) == "+0.390" and signed(-0.025) == "-0.025"
    assert ci(0.32, 0.46, sign=True) == "+0.320..+0.460" and ci(None, 1) == ""
    assert pval(1.2e-20) == "<0.001" and pval(0.0456) == "0.046" and pval(None) == "—"
    assert pct(0.26) == "26%"


def test_tabular_recognises_records_only() -> None:
    t = tabular({"people": {"f1": 0.5, "support": 3}, "time": {"f1": 1.0, "support": 3}})
    assert t is not None and t.columns == ["f1", "support"] and t.rows[1] == ("time", [1.0, 3])
    t = tabular([{"raters": ["r1", "r2"], "kappa": 0.3}])
    assert t is not None and t.rows == [("1", [["r1", "r2"], 0.3])]
    assert tabular({"a": 1, "b": 2}) is None
    assert tabular({"a": {"deep": {"x": 1}}, "b": {}}) is None
    assert tabular([]) is None
    assert tabular({f"k{i}": {f"c{j}": j for j in range(20)} for i in range(2)}) is None  # too wide
