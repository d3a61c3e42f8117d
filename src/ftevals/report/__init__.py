"""The HTML report: a pure function of the results file (docs/results-schema.md, docs/report.md).

    render_html(results, *, prices=None, sections=SECTIONS) -> str  one self-contained page, byte-identical per input
    write_report(results, path, *, prices=None, sections=SECTIONS)  the same, written atomically; returns the path
    measure_open_time(path)                                         for benchmarks: how long Chromium takes to open it
    Section, SECTIONS                                               the parts of each suite's page (see ftevals.report.views)
"""

from __future__ import annotations

from .browser import measure_open_time
from .render import content_security_policy, render_html, write_report
from .views import SECTIONS, Section, SuiteData

__all__ = ["SECTIONS", "Section", "SuiteData", "content_security_policy", "measure_open_time", "render_html", "write_report"]
