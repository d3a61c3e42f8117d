"""A report section is one view function plus one template: adding one, and the built-in registry."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from ftevals.report import SECTIONS, Section, SuiteData, render_html

NOTES_TEMPLATE = """{# Reviewer notes: one list item per note. #}
{% if view %}
<h3>Reviewer notes <small>{{ s.name }}</small></h3>
<ul class="notes">{% for note in view %}<li>{{ note }}</li>{% endfor %}</ul>
{% endif %}
"""


def reviewer_notes(notes: Mapping[str, list[str]]) -> Callable[[SuiteData], list[str] | None]:
    """A view function drawing a team's own review notes (kept outside the results file), by suite name."""

    def build(data: SuiteData) -> list[str] | None:
        return notes.get(data.suite.name) or None

    return build


def test_a_new_section_renders_escaped_in_its_place(results: dict[str, Any], tmp_path: Path, payloads: list[str]) -> None:
    template = tmp_path / "notes.html.j2"
    template.write_text(NOTES_TEMPLATE, encoding="utf-8")
    suite = results["suites"][1]
    notes = {suite["name"]: ["check the date fields", payloads[0], payloads[1]]}
    # Before the examples browser, after everything else.
    sections = (*SECTIONS[:-1], Section("notes", template, reviewer_notes(notes)), SECTIONS[-1])

    html = render_html(results, sections=sections)

    assert html.count("<h3>Reviewer notes") == 1  # only the suite with notes draws the section
    start = html.index('<section id="s1"')
    notes = html.index("<h3>Reviewer notes", start)
    assert html.index("Cost and speed", start) < notes < html.index('id="s1-exs"') < html.index("</section>", start)
    assert f"<h3>Reviewer notes <small>{suite['name']}</small></h3>" in html
    assert "<li>check the date fields</li>" in html
    assert "<li>&lt;script&gt;window.__pwned=1;document.title=&#34;pwned&#34;&lt;/script&gt;</li>" in html
    assert "<li>&lt;img src=x onerror=&#34;window.__pwned=2&#34;&gt;</li>" in html
    assert payloads[0] not in html and payloads[1] not in html


def test_the_default_sections_are_the_registered_ones(results: dict[str, Any]) -> None:
    assert render_html(results) == render_html(results, sections=SECTIONS)
    names = [s.name for s in SECTIONS]
    assert names == ["scores", "classification", "format_errors", "dropped", "usage", "human", "judge", "ab", "contamination",
                     "baseline", "other_details", "examples"]
    templates = resources.files("ftevals.report") / "templates"
    for section in SECTIONS:
        assert isinstance(section.template, str) and (templates / section.template).is_file(), section.template
    # Without its section, a part of the page is gone and the rest is unchanged.
    without = render_html(results, sections=[s for s in SECTIONS if s.name != "usage"])
    assert "Cost and speed" in render_html(results) and "Cost and speed" not in without
    assert "Errors by kind" in without and 'id="s0-exs"' in without


def test_the_banner_fails_when_a_baseline_changed(results: dict[str, Any]) -> None:
    # pytest fails the run on a changed baseline: the page must not read green beside it.
    for other in results["suites"]:
        for g in other["gates"]:
            g["passed"], g["known_failure"] = True, None
    suite = results["suites"][0]
    suite["baseline"] = {"path": "suites/baselines/x.json", "status": "changed", "changes": [],
                         "message": "baseline suites/baselines/x.json differs from this run (1 change; compared exactly)\n  a b: 1 -> 2"}
    html = render_html(results)
    assert '<div class="banner fail"><strong>1 baseline changed</strong>' in html
    assert "baseline suites/baselines/x.json differs from this run (1 change; compared exactly)</li>" in html
    suite["baseline"]["status"] = "matched"
    assert '<div class="banner fail">' not in render_html(results)


def test_the_engine_integrity_line_is_shown(results: dict[str, Any]) -> None:
    results["integrity"] = {"tuned": {"adapter": "tuned", "base": "base", "n_prompts": 20, "changed_outputs": 0,
                                      "applied": True, "probe": "first-token-logprobs", "max_logprob_delta": 0.42}}
    html = render_html(results)
    assert ("engine integrity: tuned applied (outputs equal base&#39;s, first-token logprobs differ by up to "
            "0.420); one model per engine call.") in html
