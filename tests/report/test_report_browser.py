"""The report in a real headless Chromium (Debian's `chromium`, driven by playwright).

These tests FAIL, never skip, when Chromium is missing: install it with `apt-get install -y chromium`
(or scripts/install_browser.sh). They check what only a browser can: that no payload runs, that the
page makes no network request, lays out without horizontal blow-up, and that the filters work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ftevals.report import render_html
from ftevals.report.browser import INSTALL_COMMAND, BrowserNotFoundError, chromium_path, measure_open_time, save_screenshot


def _visible(page: Any, suite: str) -> int:
    return page.locator(f"#{suite}-exs > article:visible").count()


def _expected_title(results: dict[str, Any]) -> str:
    return f"ftevals report: {results['run']['id']}"


def _assert_clean(page: Any) -> None:
    assert page.console_errors == []  # includes CSP violations: nothing was even attempted
    assert all(url.startswith("file://") for url in page.requests), page.requests


def test_report_loads_without_errors_and_filters_work(results: dict[str, Any], open_report: Any, tmp_path: Path) -> None:
    page = open_report(render_html(results))
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    _assert_clean(page)
    assert page.title() == _expected_title(results)

    suite = next(s for s in results["suites"] if s["task"] == "classification")
    binary = [c for c in suite["comparisons"] if c["kind"] == "binary"]
    n = len(suite["examples"])
    regressed = {x for c in binary for x in c["regressions"]}
    bar = page.locator('.flt[data-for="s0-exs"]')
    assert bar.is_visible()  # the script reveals the filter bar
    assert _visible(page, "s0") == n

    bar.get_by_role("button", name="Regressions only").click()
    assert 0 < _visible(page, "s0") == len(regressed) < n
    assert bar.locator("output").inner_text() == f"showing {len(regressed)} of {n}"

    bar.locator('select[data-k="model"]').select_option(label="banking77")
    adapter = next(c for c in binary if c["model"] == "banking77")
    assert _visible(page, "s0") == len(adapter["regressions"])

    bar.get_by_role("button", name="Fixes only").click()
    assert _visible(page, "s0") == len(adapter["fixes"])

    label = suite["examples"][0]["metadata"]["label"]
    bar.locator('select[data-k="cls"]').select_option(value=label)
    gold = {e["id"] for e in suite["examples"] if e["metadata"]["label"] == label}
    assert _visible(page, "s0") == len(gold & set(adapter["fixes"]))

    bar.locator('select[data-k="model"]').select_option(value="")
    bar.locator('select[data-k="cls"]').select_option(value="")
    bar.get_by_role("button", name="All").click()
    assert _visible(page, "s0") == n
    _assert_clean(page)


def test_invalid_json_filter_and_sorting(results: dict[str, Any], open_report: Any) -> None:
    page = open_report(render_html(results))
    suite = next(s for s in results["suites"] if s["task"] == "extraction")
    # Malformed: not JSON, or JSON that breaks the schema, for any model.
    bad = {e["id"] for e in suite["examples"] if any(0 in (o["scores"]["json_valid"], o["scores"]["schema_valid"]) for o in e["outputs"].values())}
    bar = page.locator('.flt[data-for="s1-exs"]')
    bar.get_by_role("button", name="Invalid JSON").click()
    assert _visible(page, "s1") == len(bad)

    # Worst primary-metric change first for the adapter: deltas ascending, missing ones last.
    bar.get_by_role("button", name="All").click()
    bar.locator('select[data-k="sort"]').select_option(value="1")
    deltas = page.eval_on_selector_all("#s1-exs > article", "rows => rows.map(r => r.getAttribute('data-d1'))")
    values = [float(d) for d in deltas if d is not None]
    assert values == sorted(values) and len(set(values)) > 1
    bar.locator('select[data-k="sort"]').select_option(value="")
    ids = page.eval_on_selector_all("#s1-exs > article", "rows => rows.map(r => r.id)")
    assert ids == [f"s1-e{k}" for k in range(len(suite["examples"]))]
    _assert_clean(page)


def test_links_to_a_filtered_out_example_show_it(results: dict[str, Any], open_report: Any) -> None:
    page = open_report(render_html(results))
    bar = page.locator('.flt[data-for="s1-exs"]')
    bar.get_by_role("button", name="Fixes only").click()
    n = len(next(s for s in results["suites"] if s["task"] == "extraction")["examples"])
    hidden = page.eval_on_selector_all("#s1-exs > article[hidden]", "rows => rows.map(r => r.id)")
    assert hidden
    page.evaluate(f"location.hash = '#{hidden[0]}'")  # what clicking an error-list link does
    page.wait_for_function(f"!document.getElementById('{hidden[0]}').hidden")
    assert _visible(page, "s1") == n
    assert bar.locator("output").inner_text() == f"showing {n} of {n}"


def test_sortable_table(results: dict[str, Any], open_report: Any) -> None:
    page = open_report(render_html(results))
    table = page.locator("#s0 table.srt").first  # changes against base
    table.locator("th", has_text="delta").click()
    cells = table.locator("tbody tr td:nth-child(5)").evaluate_all("cs => cs.map(c => parseFloat(c.dataset.v))")
    assert cells == sorted(cells)
    table.locator("th", has_text="delta").click()
    cells = table.locator("tbody tr td:nth-child(5)").evaluate_all("cs => cs.map(c => parseFloat(c.dataset.v))")
    assert cells == sorted(cells, reverse=True)


def test_meaningful_without_javascript(results: dict[str, Any], browser: Any, tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    path.write_text(render_html(results), encoding="utf-8")
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(path.as_uri())
    n = sum(len(s["examples"]) for s in results["suites"])
    assert page.locator("article.ex:visible").count() == n  # every example is there
    assert page.locator(".flt:visible").count() == 0  # controls that need a script are not shown
    assert page.locator("#s0 del:visible").count() > 0
    page.locator("#s0-plain").check()  # the plain/diff toggle is pure CSS
    assert page.locator("#s0 del:visible").count() == 0
    context.close()


@pytest.mark.parametrize("with_csp", [True, False], ids=["with-csp", "escaping-alone"])
def test_hostile_outputs_do_not_run(hostile_results: dict[str, Any], payloads: list[str], open_report: Any, with_csp: bool) -> None:
    html = render_html(hostile_results)
    if not with_csp:
        # Escaping must hold on its own: the CSP is a second layer, not the fix.
        start = html.index('<meta http-equiv="Content-Security-Policy"')
        html = html[:start] + html[html.index(">", start) + 1 :]
        assert "Content-Security-Policy" not in html
    page = open_report(html, width=1280)
    page.wait_for_timeout(300)  # give any injected handler (onerror, onload, refresh) a chance to fire
    for link in page.locator("a").all()[:200]:
        assert not (link.get_attribute("href") or "").lower().startswith("javascript:")
    assert page.evaluate("window.__pwned") is None
    assert page.title() == _expected_title(hostile_results)
    assert page.url.startswith("file://")  # no meta refresh took us away
    _assert_clean(page)
    # The payloads are on screen as text, and the injected <style> did not hide the page.
    body = page.locator("body")
    assert body.is_visible()
    first = page.locator("#s0-e0 .io p.t").first.text_content()
    assert first == payloads[0]
    assert "{{ 7*7 }}" in page.locator("#s0-e8 .io p.t").first.text_content()
    # A 100 KB line wraps inside its box instead of widening the page.
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], width
    box = page.locator("#s0-e0 .outs .o").nth(1).bounding_box()
    assert box is not None and box["width"] < 1280


def test_screenshot_and_open_time_helpers(results: dict[str, Any], browser: Any, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_html(results), encoding="utf-8")
    png = save_screenshot(page, tmp_path / "shot.png", viewport=(800, 600), browser=browser)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    timings = measure_open_time(page, repeats=1, browser=browser)  # a benchmark helper: only its shape here
    assert timings["bytes"] == page.stat().st_size and len(timings["runs"]) == 1


def test_missing_chromium_fails_with_install_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FTEVALS_CHROMIUM", str(tmp_path / "no-such-chromium"))
    with pytest.raises(BrowserNotFoundError, match=INSTALL_COMMAND):
        chromium_path()
