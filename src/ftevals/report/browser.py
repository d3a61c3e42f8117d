"""Opening a report in a real headless Chromium: shared by the browser tests and by benchmarks.

Playwright drives the system's Chromium (Debian's `chromium` package): its own browser download needs
network access that CI machines do not have. Nothing here runs when a report is rendered; playwright is
imported only when a browser is actually asked for.

Why this ships: `ftevals.report` exports `measure_open_time`, and it and `save_screenshot` are documented
(docs/report.md).
"""

from __future__ import annotations

import os
import shutil
import statistics
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BrowserNotFoundError, MissingDependencyError  # BrowserNotFoundError: re-exported

if TYPE_CHECKING:
    from collections.abc import Iterator

    from playwright.sync_api import Browser

#: Where Debian's package puts it; FTEVALS_CHROMIUM overrides (another distribution, a dev laptop).
DEFAULT_CHROMIUM = "/usr/bin/chromium"
INSTALL_COMMAND = "apt-get install -y chromium"
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",  # CI containers run as root, where the sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # No background traffic: a report must not need the network, and tests check it makes none.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_path() -> str:
    """The Chromium executable to drive, or BrowserNotFoundError naming the install command."""
    configured = os.environ.get("FTEVALS_CHROMIUM")
    path = configured or DEFAULT_CHROMIUM
    if Path(path).is_file() and os.access(path, os.X_OK):
        return path
    found = None if configured else shutil.which("chromium")
    if found:
        return found
    raise BrowserNotFoundError(
        f"no Chromium at {path}: the report's browser checks need it; install it with "
        f"`{INSTALL_COMMAND}` (or run scripts/install_browser.sh)"
        + ("" if configured else ", or point FTEVALS_CHROMIUM at another Chromium executable")
    )


@contextmanager
def launch_chromium(browser: Browser | None = None) -> Iterator[Browser]:
    """A headless Chromium driven by playwright, closed on exit; `browser` reuses one already running
    (playwright's sync API cannot be started twice in one thread, e.g. inside a test session)."""
    if browser is not None:
        yield browser
        return
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise MissingDependencyError(
            "playwright", "pip install playwright", "needed only to open reports in a browser"
        ) from None
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=list(CHROMIUM_ARGS))
        try:
            yield browser
        finally:
            browser.close()


_TIMINGS_JS = """() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(() => {
  const nav = performance.getEntriesByType("navigation")[0];
  done({dom_content_loaded_ms: nav.domContentLoadedEventEnd, load_ms: nav.loadEventEnd,
        first_frame_ms: performance.now(), elements: document.getElementsByTagName("*").length});
})))"""


def measure_open_time(
    path: str | Path, *, repeats: int = 3, viewport: tuple[int, int] = (1280, 900), browser: Browser | None = None
) -> dict[str, Any]:
    """How long Chromium takes to open a report file: for benchmarks, never for test assertions.

    Each repeat opens the file in a fresh page and reads the Navigation Timing marks plus the time of
    the second animation frame after load (the page has been laid out and painted once by then).
    Returns the per-run numbers (milliseconds since navigation start) and their medians.
    """
    target = Path(path).resolve()
    runs: list[dict[str, Any]] = []
    with launch_chromium(browser) as chromium:
        for _ in range(repeats):
            page = chromium.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            page.goto(target.as_uri(), wait_until="load")
            runs.append(page.evaluate(_TIMINGS_JS))
            page.close()
    keys = ("dom_content_loaded_ms", "load_ms", "first_frame_ms")
    return {
        "path": str(target),
        "bytes": target.stat().st_size,
        "runs": runs,
        **{f"median_{k}": statistics.median(r[k] for r in runs) for k in keys},
    }


def save_screenshot(
    path: str | Path,
    out: str | Path,
    *,
    viewport: tuple[int, int] = (1280, 1250),
    full_page: bool = False,
    browser: Browser | None = None,
) -> Path:
    """A PNG of a report file (the top of it, or `full_page`), e.g. for docs/report-screenshot.png."""
    target = Path(out)
    with launch_chromium(browser) as chromium:
        page = chromium.new_page(viewport={"width": viewport[0], "height": viewport[1]})
        page.goto(Path(path).resolve().as_uri(), wait_until="load")
        page.screenshot(path=str(target), full_page=full_page)
        page.close()
    return target


__all__ = [
    "CHROMIUM_ARGS",
    "BrowserNotFoundError",
    "INSTALL_COMMAND",
    "chromium_path",
    "launch_chromium",
    "measure_open_time",
    "save_screenshot",
]
