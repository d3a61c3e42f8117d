"""render_html / write_report: content, robustness, safety at the markup level, size, determinism.

What a browser does with the page is in test_report_browser.py.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from ftevals.errors import ConfigError, ResultsError
from ftevals.report import content_security_policy, render_html, write_report
from ftevals.report.render import _environment
from ftevals.results import from_data

FOUR = ("base", "banking77", "base-fewshot", "banking77-r32")


class _Page(HTMLParser):
    """Just enough structure to ask questions about the page without regexes over markup."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in ("script", "style"):
            self._in = tag
            (self.scripts if tag == "script" else self.styles).append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "script":
            self.scripts[-1] += data
        elif self._in == "style":
            self.styles[-1] += data
        else:
            self.text.append(data)

    def ids(self) -> set[str]:
        return {a["id"] for _, a in self.tags if a.get("id")}

    def all(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())]


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def _suite(results: dict[str, Any], task: str) -> dict[str, Any]:
    return next(s for s in results["suites"] if s["task"] == task)


# ---------------------------------------------------------------------------------------------------
# What the report shows


def test_top_of_page_answers_first(results: dict[str, Any]) -> None:
    html = render_html(results)
    summary = html[html.index('<section id="summary">') : html.index('<section id="s0"')]
    # The failing gate banner and the per-suite verdicts come before any evidence.
    forgetting = _suite(results, "forgetting")
    failing = [g for s in results["suites"] for g in s["gates"] if not g["passed"]]
    assert failing, "the synthetic run is meant to have failing gates"
    assert f"{len(failing)} of {sum(len(s['gates']) for s in results['suites'])} gates failing" in summary
    assert forgetting["gates"][0]["message"].replace("'", "&#39;") in summary
    assert "&#9660; regressed" in summary and "&#9650; improved" in summary
    assert "Prompting the base model (base-fewshot, 8-shot) recovers" in summary
    # A recommendation sentence is shown exactly when the results carry one.
    gen = _suite(results, "generation")
    assert gen["prompting"]["recommendation"]
    assert gen["prompting"]["recommendation"].replace("'", "&#39;") in summary


def test_failing_gates_listed_first_in_each_card(results: dict[str, Any]) -> None:
    suite = _suite(results, "forgetting")
    suite["gates"].reverse()  # put the passing one first in the file
    assert suite["gates"][0]["passed"] and not suite["gates"][-1]["passed"]
    html = render_html(results)
    card = html[html.index('<a href="#s3">gsm8k-forgetting</a>') :]
    failing = card.index(suite["gates"][-1]["id"])
    passing = card.index(suite["gates"][0]["id"])
    assert failing < passing


def test_metric_tables_and_charts(results: dict[str, Any]) -> None:
    html = render_html(results)
    page = parse(html)
    cls = _suite(results, "classification")
    comp = next(c for c in cls["comparisons"] if c["model"] == "banking77" and c["metric"] == "accuracy")
    assert f"{comp['delta']:+.3f}" in html and f"{comp['ci_low']:+.3f}..{comp['ci_high']:+.3f}" in html
    for model in cls["models"]:
        s = cls["scores"][model]["accuracy"]
        assert f"{s['value']:.3f} <small>[{s['ci_low']:.3f}..{s['ci_high']:.3f}]</small>" in html
    charts = page.all("svg")
    n_metrics = sum(len(s["metrics"]) for s in results["suites"])
    assert len(charts) == 2 * n_metrics  # values with whiskers + deltas vs base, per metric
    assert all(c.get("xmlns") == "http://www.w3.org/2000/svg" for c in charts)


def test_classification_confusion_and_per_class(results: dict[str, Any]) -> None:
    html = render_html(results)
    assert "Most confused pairs" in html
    assert "Per-class F1 (24 classes)" in html
    assert html.count('<table class="heat">') == 3  # one per model


def test_77_classes_render_compactly(results_factory: Any) -> None:
    results = results_factory({"classification": 400}, n_labels=77)
    html = render_html(results)
    heat = re.findall(r'<table class="heat">.*?</table>', html, flags=re.S)
    assert heat
    for table in heat:
        assert table.count('<tr><th class="cl">') == 12  # gold rows: the 12 most confused classes
        columns = table.split("</thead>")[0].count('<th class="cl">')
        assert columns in (12, 13)  # the same classes, plus "(unparseable)" when it has counts
    assert "the 12 most confused of 77 classes" in html
    pairs = re.findall(r"<h4>(\S+) <small>(\d+) confused pairs", html)
    assert pairs and all(int(n) > 0 for _, n in pairs)
    assert "Per-class F1 (77 classes)" in html


def test_format_errors_link_to_example_rows(results: dict[str, Any]) -> None:
    html = render_html(results)
    page = parse(html)
    ext = _suite(results, "extraction")
    not_json = ext["details"]["banking77"]["json_valid"]["examples"]["not_json"]
    assert not_json
    ids = page.ids()
    links = [a["href"] for a in page.all("a") if a.get("href", "").startswith("#s1-e")]
    assert links and all(h[1:] in ids for h in links)
    position = {e["id"]: k for k, e in enumerate(ext["examples"])}
    assert f'href="#s1-e{position[not_json[0]]}"' in html
    # Every malformed output is marked for the "Invalid JSON" filter (schema errors included).
    bad = {e["id"] for e in ext["examples"] if any(0 in (o["scores"]["json_valid"], o["scores"]["schema_valid"]) for o in e["outputs"].values())}
    marked = [a for a in page.all("article") if a.get("data-b")]
    assert len(marked) == len(bad)


def test_forgetting_lists_dropped_examples(results: dict[str, Any]) -> None:
    html = render_html(results)
    suite = _suite(results, "forgetting")
    comp = next(c for c in suite["comparisons"] if c["model"] == "banking77")
    assert comp["regressions"]
    section = html[html.index("Forgetting: examples the base got right") :]
    assert f"{len(comp['regressions'])} dropped on exact_match" in section
    for xid in comp["regressions"]:
        assert f">{xid}</a>" in section


def test_flips_marked_on_example_rows(results: dict[str, Any]) -> None:
    page = parse(render_html(results))
    cls = _suite(results, "classification")
    comps = [c for c in cls["comparisons"] if c["kind"] == "binary"]
    regressed = {x for c in comps for x in c["regressions"]}
    fixed = {x for c in comps for x in c["fixes"]}
    rows = [a for a in page.all("article") if (a.get("id") or "").startswith("s0-e")]
    assert len(rows) == len(cls["examples"])  # every example is on the page, no script needed
    by_id = {cls["examples"][int(a["id"].split("-e")[1])]["id"]: a for a in rows}
    assert {x for x, a in by_id.items() if a.get("data-r")} == regressed
    assert {x for x, a in by_id.items() if a.get("data-f")} == fixed
    assert all("reg" in (by_id[x].get("class") or "").split() for x in regressed)


def test_word_diff_rendered_with_ins_and_del(results: dict[str, Any]) -> None:
    html = render_html(results)
    assert "<ins>" in html and "<del>" in html
    # The filter bar exists but stays hidden until the script runs; the checkbox works without it.
    page = parse(html)
    bars = [a for a in page.all("div") if a.get("class") == "flt"]
    assert bars and all("hidden" in a for a in bars)
    assert page.all("input", type="checkbox", **{"class": "plain"})


def test_usage_and_prices(results: dict[str, Any]) -> None:
    per_1k = {"banking77": {"input_per_1k_tokens": 0.5, "output_per_1k_tokens": 1.5}}
    per_token = {"banking77": {"input_per_token": 0.0005, "output_per_token": 0.0015}}
    html = render_html(results, prices=per_1k)
    assert html == render_html(results, prices=per_token)
    assert "cost / 1k examples" in html
    u = _suite(results, "classification")["usage"]["banking77"]
    expected = 1000 * (u["tokens_in"] * 0.0005 + u["tokens_out"] * 0.0015) / u["requests"]
    assert f"{expected:,.4f}" in html
    assert "cost / 1k examples" not in render_html(results)
    assert "not a model of this run" in render_html(results, prices={"gpt-x": {"input_per_token": 1, "output_per_token": 1}})


@pytest.mark.parametrize(
    ("prices", "message"),
    [
        ({"base": {"input_per_1k_tokens": 1}}, "output_per_token"),
        ({"base": {"input_per_1k_tokens": -1, "output_per_1k_tokens": 1}}, "non-negative"),
        ({"base": {"input_per_1k_tokens": 1, "input_per_token": 1, "output_per_token": 1}}, "several"),
        ({"base": 0.5}, "must be a dict"),
    ],
)
def test_bad_prices_are_config_errors(results: dict[str, Any], prices: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        render_html(results, prices=prices)


def test_human_ratings(results: dict[str, Any]) -> None:
    gen = _suite(results, "generation")
    html = render_html(results)
    section = html[html.index("<h3>Human ratings") : html.index('<details class="exw"', html.index("<h3>Human ratings"))]
    assert "Summaries" in section and "Faithfulness" in section
    s = gen["human"]["scores"]["banking77"]["faithfulness"]
    assert f"{s['value']:.3f} <small>[{s['ci_low']:.3f}..{s['ci_high']:.3f}]</small> <small>n=60</small>" in section
    assert "Preference against the reference" in section and "43 <small>71.7% [59.2%..81.5%]</small>" in section
    assert "krippendorff alpha" in section and "0.62" in section
    assert "Pairwise Cohen's kappa (2 pairs)" in section and "Per rater (1 flagged)" in section
    anchor = f"s2-e{[e['id'] for e in gen['examples']].index(gen['human']['flags']['items'][0]['example'])}"
    assert f'href="#{anchor}"' in section  # flags and comments link to the example row
    assert "B invents a dinner" in section
    assert "percentile bootstrap over items" in section  # unrecognised keys are shown, not dropped
    assert "collected on run" not in section
    gen["human"]["source_run"] = "another-run"
    assert "These ratings were collected on run another-run, not on this run" in render_html(results)


@pytest.mark.parametrize(
    "parts",
    [
        # The statistical blocks are free-form JSON (their keys follow the rubric and the raters).
        {"agreement": {"per_model": [{"model": "banking77", "helpfulness": 4.2}], "weird": [[1, [2, {"x": None}]]]},
         "methods": {"level": 0.4}},
        {"scores": {"banking77": {"helpfulness": 4.2}}, "preferences": {"banking77": {"wins": 3}}},
        {"scores": {"base": None}, "rubric": {"criteria": "generation"}, "agreement": {"krippendorff_alpha": None},
         "flags": {"items": [None]}, "comments": [{"text": None}]},
        {},
    ],
)
def test_human_ratings_of_other_shapes_still_render(results: dict[str, Any], parts: dict[str, Any]) -> None:
    # The record's header is fixed by the schema; everything else may be missing or odd.
    header = {"schema": "ftevals.human", "version": 1, "packet_id": "p1", "part": "part-1", "source_run": None,
              "rubric": {}, "reference": "base", "models": ["base", "banking77"], "raters": [], "n_items": 0,
              "n_ratings": 0}
    _suite(results, "generation")["human"] = {**header, **parts}
    html = render_html(results)
    assert "<h3>Human ratings" in html
    if "methods" in parts:  # unrecognised parts are shown as they are, not dropped
        assert "helpfulness" in html and "weird" in html and "level" in html


def test_provenance_footer(results: dict[str, Any]) -> None:
    html = render_html(results)
    footer = html[html.index('<footer id="provenance">') :]
    run = results["run"]
    for text in (run["git"]["commit"], run["ftevals_version"], run["started_at"], "torch 2.13.0+cpu", "multi-lora",
                 results["models"]["banking77"]["adapter_fingerprint"], results["suites"][0]["dataset"]["fingerprint"]):
        assert text in footer, text


# ---------------------------------------------------------------------------------------------------
# Robustness


def _strip_optional(results: dict[str, Any]) -> dict[str, Any]:
    r = copy.deepcopy(results)
    r["run"] = {"id": "r"}
    r["models"] = {}
    for s in r["suites"]:
        for key in ("details", "usage", "gates", "comparisons", "baseline", "dataset", "sampling", "description"):
            s.pop(key, None)
        s["prompting"] = s["contamination"] = s["human"] = None
        for e in s["examples"]:
            e.pop("metadata", None)
            e.pop("reference", None)
            for o in e["outputs"].values():
                o.pop("scores", None)
    return r


def test_missing_optional_keys(results: dict[str, Any]) -> None:
    html = render_html(_strip_optional(results))
    assert "No gates were defined" in html
    assert "not compared" in html
    no_examples = copy.deepcopy(results)
    for s in no_examples["suites"]:
        s.update(examples=[], metrics=[], scores={})  # required keys, but they may be empty
    assert "gsm8k-forgetting" in render_html(no_examples)
    empty = {"schema": "ftevals.results", "schema_version": 1, "run": {"id": "r"}, "models": {}, "suites": []}
    assert "ftevals report" in render_html(empty)


def test_duplicate_and_odd_example_ids_keep_anchors_unique(results: dict[str, Any]) -> None:
    s = results["suites"][0]
    s["examples"][1]["id"] = s["examples"][0]["id"]
    s["examples"][2]["id"] = 'x" onmouseover="alert(1)'
    s["examples"][3]["id"] = ""
    page = parse(render_html(results))
    ids = [a["id"] for _, a in page.tags if a.get("id")]
    assert len(ids) == len(set(ids))


def test_nulls_and_odd_values(results: dict[str, Any]) -> None:
    s = results["suites"][0]
    s["scores"]["base"]["accuracy"] = {"value": None, "ci_low": None, "ci_high": None}
    s["comparisons"][0].update(delta=None, ci_low=None, p_value=None)
    s["details"]["base"]["macro_f1"]["confusion_matrix"] = [[1, 2]]  # wrong shape: skipped, not fatal
    s["examples"][0]["outputs"].pop("banking77")
    s["examples"][1]["reference"] = {"a": 1}
    s["usage"]["base"] = {"requests": 0}
    html = render_html(results)
    assert "no output" in html
    comparison = html[html.index("<h4>Changes against base</h4>") :]
    assert '<td class="n" data-v="—">—</td><td class="ci"></td>' in comparison  # undefined delta, no CI


_HEAD = {"schema": "ftevals.results", "schema_version": 1, "run": {"id": "r"}, "models": {}}


@pytest.mark.parametrize(
    ("results_value", "message"),
    [
        ([], "JSON object"),
        ({"schema": "something.else", "suites": []}, "not an ftevals results file"),
        ({**_HEAD, "schema_version": 2, "suites": []}, "schema version 2.*upgrade ftevals"),
        ({**_HEAD, "suites": {}}, "suites: .* is not of type 'array'"),
        ({"schema": "ftevals.results", "schema_version": 1, "suites": []}, "'run' is a required property"),
    ],
)
def test_not_a_results_file(results_value: Any, message: str) -> None:
    with pytest.raises(ResultsError, match=message):
        render_html(results_value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s["comparisons"][0].update(verdict="unknown-verdict"), r"suites\[0\]\.comparisons\[0\]\.verdict: 'unknown-verdict'"),
        (lambda s: s["gates"][0].update(passed=None), r"suites\[0\]\.gates\[0\]\.passed: None is not of type 'boolean'"),
        (lambda s: s["usage"]["base"].update(tokens_in=None), r"suites\[0\]\.usage\.base\.tokens_in"),
        (lambda s: s["examples"][0].pop("id"), r"suites\[0\]\.examples\[0\]: 'id' is a required property"),
    ],
)
def test_a_bad_results_dict_is_refused_where_it_is_bad(results: dict[str, Any], change: Any, message: str) -> None:
    # The report reads only valid files: the validator's message names the bad place.
    change(results["suites"][0])
    with pytest.raises(ResultsError, match=message):
        render_html(results)


# ---------------------------------------------------------------------------------------------------
# Safety at the markup level (the browser proves the rest)


def test_autoescape_is_always_on() -> None:
    env = _environment()
    assert env.autoescape is True
    assert all(name.endswith(".html.j2") for name in env.list_templates())


def test_untrusted_text_is_escaped(hostile_results: dict[str, Any], payloads: list[str]) -> None:
    html = render_html(hostile_results)
    page = parse(html)
    # Exactly one script element, ours; no element or attribute smuggled in by the data.
    assert len(page.scripts) == 1 and "__pwned" not in page.scripts[0]
    assert len(page.styles) == 1
    tags = {t for t, _ in page.tags}
    assert not tags & {"img", "iframe", "link", "textarea", "object", "embed", "base", "form"}
    assert len(page.all("meta")) == 4  # charset, CSP, referrer, viewport: no injected refresh
    for _, attrs in page.tags:
        assert not any(k.startswith("on") for k in attrs), attrs
        for k in ("href", "src", "action", "formaction", "xlink:href"):
            assert not (attrs.get(k) or "").lower().startswith(("javascript:", "http", "//")), attrs
    text = "".join(page.text)
    for payload in payloads:
        assert payload in text, payload  # shown to the reader as text, verbatim
    assert "{{ 7*7 }}" in text and "49" not in text.split("{{ 7*7 }}")[0][-5:]


def test_content_security_policy_pins_inline_code(results: dict[str, Any]) -> None:
    html = render_html(results)
    page = parse(html)
    csp = page.all("meta", **{"http-equiv": "Content-Security-Policy"})[0]["content"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["img-src"] == "data:"
    for kind, code in (("script-src", page.scripts[0]), ("style-src", page.styles[0])):
        digest = base64.b64encode(hashlib.sha256(code.encode()).digest()).decode()
        assert directives[kind] == f"'sha256-{digest}'", kind
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert csp == content_security_policy(page.styles[0], page.scripts[0])
    # Nothing on the page refers to the network: no CDN, no web fonts, no remote images.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "@import" not in page.styles[0] and "url(" not in page.styles[0]
    assert not any("style" in attrs for _, attrs in page.tags)  # the CSP would block style attributes


# ---------------------------------------------------------------------------------------------------
# Size and determinism


@pytest.mark.parametrize("task", ["generation", "classification", "extraction"])
def test_1000_examples_by_4_models_under_5_mb(results_factory: Any, task: str) -> None:
    results = results_factory({task: 1000}, models=FOUR, **({"n_labels": 77} if task == "classification" else {}))
    html = render_html(results)
    size = len(html.encode("utf-8"))
    assert size < 5_000_000, f"{task}: {size / 1e6:.2f} MB"
    assert html.count('<article id="s0-e') == 1000  # all examples, not a sample


def test_same_results_same_bytes(results: dict[str, Any]) -> None:
    prices = {"banking77": {"input_per_1k_tokens": 0.5, "output_per_1k_tokens": 1.5}}
    first = render_html(results, prices=prices)
    roundtrip = json.loads(json.dumps(results))
    assert render_html(roundtrip, prices=prices) == first
    assert render_html(copy.deepcopy(results), prices=dict(prices)) == first
    assert render_html(from_data(results), prices=prices) == first  # the records, as the pipeline passes them


def test_write_report_is_atomic_and_returns_path(results: dict[str, Any], tmp_path: Path) -> None:
    target = tmp_path / "out" / "report.html"
    assert write_report(results, target) == target
    assert target.read_text(encoding="utf-8") == render_html(results)
    assert [p.name for p in target.parent.iterdir()] == ["report.html"]  # no temp file left behind
    with pytest.raises(ResultsError):
        write_report({"schema": "nope"}, target)
    assert target.read_text(encoding="utf-8") == render_html(results)  # a failed render keeps the old file
