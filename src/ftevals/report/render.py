"""Render results (records, or a results dict) to one self-contained HTML page, and write it atomically.

Safety, in layers: jinja2 autoescape is always on (model outputs and dataset text are untrusted),
templates and static files come from this package (or, for a section a caller adds in code, from the
template file its `Section` names), and a Content-Security-Policy meta tag allows nothing but the
page's own inline stylesheet and script (by hash) and data: images. Even an escaping bug could then
neither run injected script nor load anything from the network.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import (BaseLoader, ChainableUndefined, ChoiceLoader, Environment, FileSystemBytecodeCache, PackageLoader,
                    TemplateNotFound)
from markupsafe import Markup

from ..fsutil import atomic_write_text
from ..results import Results
from .fmt import FILTERS
from .generic import tabular
from .views import SECTIONS, Section, build_report


class _FileLoader(BaseLoader):
    """Templates named by absolute path: those of sections defined outside this package (a Section whose
    template is a Path). Template names come from code, never from the results file."""

    def get_source(self, environment: Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        path = Path(template)
        if not path.is_absolute() or not path.is_file():
            raise TemplateNotFound(template)
        mtime = path.stat().st_mtime
        return path.read_text(encoding="utf-8"), str(path), lambda: path.is_file() and path.stat().st_mtime == mtime

    def list_templates(self) -> list[str]:
        return []  # any file, by path: nothing to list


def _bytecode_cache() -> FileSystemBytecodeCache | None:
    """Compiled templates kept between runs (jinja checks each against its template's source):
    compiling the report's templates is a good part of a warm re-run's time otherwise."""
    from ..memo import memo_dir

    folder = memo_dir() / "jinja"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return FileSystemBytecodeCache(str(folder))


@functools.lru_cache(maxsize=1)
def _environment() -> Environment:
    env = Environment(
        loader=ChoiceLoader([PackageLoader("ftevals.report", "templates"), _FileLoader()]),
        autoescape=True,  # always, whatever the template's file name
        trim_blocks=True,
        lstrip_blocks=True,
        # An optional part of the records may be None (a suite without a dataset, a run without a
        # backend): reading an attribute through it renders as missing instead of crashing.
        undefined=ChainableUndefined,
        bytecode_cache=_bytecode_cache(),
    )
    env.filters.update(FILTERS)
    env.globals["tabular"] = tabular
    return env


@functools.lru_cache(maxsize=None)
def _static(name: str) -> str:
    return (resources.files("ftevals.report") / "static" / name).read_text(encoding="utf-8")


def _sha256(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "sha256-" + base64.b64encode(digest).decode("ascii")


def content_security_policy(css: str, js: str) -> str:
    """The page's policy: only its own inline style and script (by hash), no network at all."""
    return (
        "default-src 'none'; "
        f"style-src '{_sha256(css)}'; "
        f"script-src '{_sha256(js)}'; "
        "img-src data:; "
        "base-uri 'none'; form-action 'none'"
    )


def render_html(
    results: Results | Mapping[str, Any],
    *,
    prices: Mapping[str, Any] | None = None,
    sections: Sequence[Section] = SECTIONS,
) -> str:
    """The HTML report for a run's results, as one self-contained page.

    `results` is a `Results` record or a results dict (docs/results-schema.md), which is read into
    records once (`ftevals.results.from_data`: migrated, then validated against the shipped schema).

    A pure function: the same results (and prices) give byte-identical HTML. `prices` maps model
    names to `{"input_per_1k_tokens": x, "output_per_1k_tokens": y}` (or `..._per_token`,
    `..._per_1m_tokens`) and adds cost per 1k examples to the cost table. `sections` are the parts
    of each suite's page, in order (see ftevals.report.views to add one).
    Raises ResultsError (naming the bad place) for something that is not a valid results file,
    ConfigError for bad prices.
    """
    report = build_report(results, prices, sections)
    css, js = _static("report.css"), _static("report.js")
    template = _environment().get_template("report.html.j2")
    # css and js are this package's own files, not data: the only markup passed through unescaped.
    return template.render(r=report, css=Markup(css), js=Markup(js), csp=content_security_policy(css, js))


def write_report(
    results: Results | Mapping[str, Any],
    path: str | Path,
    *,
    prices: Mapping[str, Any] | None = None,
    sections: Sequence[Section] = SECTIONS,
) -> Path:
    """Render `results` and write the page to `path` atomically (old file or new file, never half)."""
    target = Path(path)
    atomic_write_text(target, render_html(results, prices=prices, sections=sections))
    return target


__all__ = ["content_security_policy", "render_html", "write_report"]
