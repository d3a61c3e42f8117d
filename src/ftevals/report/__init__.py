"""The HTML report: a pure function of the results file (docs/results-schema.md, docs/report.md).

    render_html(results, *, prices=None) -> str     one self-contained page, byte-identical per input
    write_report(results, path, *, prices=None)      the same, written atomically; returns the path
    measure_open_time(path)                          for benchmarks: how long Chromium takes to open it
"""

from __future__ import annotations

from .browser import measure_open_time
from .render import content_security_policy, render_html, write_report

__all__ = ["content_security_policy", "measure_open_time", "render_html", "write_report"]
