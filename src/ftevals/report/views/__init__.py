"""From the results records (ftevals.results.records) to the small view records the templates draw.

All decisions about *what* the report shows live here, as small pure functions; the templates only
lay records out. One module per section of a suite's page, in page order:

    base.py            records every section shares (SuiteData, Section, SuiteView, Report); readers for free-form JSON
    build.py           build_report, and SECTIONS: the sections in page order (the one registration point)
    scores.py          verdicts and prompting (summary card); metric table, changes, charts
    classification.py  most confused pairs, confusion heat maps, per-class F1
    format_errors.py   failures by kind (JSON, schema, keys, lengths, ...); malformed outputs
    dropped.py         forgetting: examples the reference got right and a model now gets wrong
    usage.py           tokens, latency, cost (prices given at render time)
    ab.py              online A/B outcomes beside the offline verdict (ftevals ab)
    human.py           human ratings, agreement, flags, comments
    details.py         contamination check, baseline, other metric details
    examples.py        the examples browser

Adding a section is one view function and one template:

1. a function `(SuiteData) -> view` returning a record of what to draw (None or empty when the suite
   has nothing for it), in a module here; it reads the suite's SuiteResult record as `data.suite`;
2. a template in ftevals/report/templates/ that draws `view` (the suite's SuiteView is `s`, the macros
   are `m`) inside `{% if view %}...{% endif %}`;
3. `Section(name, template, function)` in SECTIONS (build.py), where it belongs in page order.

A section from outside this package is passed to `render_html(..., sections=(*SECTIONS, Section(...)))`
with a Path to its template; tests/report/test_report_sections.py does so.
"""

from __future__ import annotations

from .base import Report, Section, SuiteData, SuiteView
from .build import SECTIONS, build_report
from .usage import normalize_prices


__all__ = ["SECTIONS", "Report", "Section", "SuiteData", "SuiteView", "build_report", "normalize_prices"]
