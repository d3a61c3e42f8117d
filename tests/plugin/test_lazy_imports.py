"""Importing ftevals, loading its plugin and collecting suites import no engine.

pytest loads the plugin in every session, model or not; torch and vLLM take seconds to import and
are absent from many CI machines. Fresh interpreters, so that nothing this test process imported
can hide a leak.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestAssertRewriteWarning")

ENGINES = ("torch", "vllm", "transformers", "peft")

#: Records which engine modules are loaded once the plugin and this conftest are imported, and
#: again at the end of the session (after collection and preparation, or after a whole run).
CONFTEST = f'''
import sys
from pathlib import Path

ENGINES = {ENGINES!r}
OUT = Path(__file__).parent / "modules.txt"


def _record(moment):
    loaded = [m for m in ENGINES if m in sys.modules]
    with OUT.open("a") as fh:
        fh.write(f"{{moment}}: {{','.join(loaded) or '-'}} pipeline={{'ftevals.pipeline' in sys.modules}}\\n")


_record("load")


def pytest_sessionfinish(session):
    _record("collect-only" if session.config.option.collectonly else "run")
'''


def test_import_ftevals_and_its_plugin_loads_no_engine():
    code = ("import sys, ftevals, ftevals.plugin, ftevals.cli; "
            f"print(','.join(m for m in {ENGINES!r} if m in sys.modules) or '-')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "-"


def test_pytest_collect_only_loads_no_engine(project):
    """(A whole replay run is checked too, in every xdist process: see test_plugin_xdist.py.)"""
    project.pytester.makeconftest(CONFTEST)

    result = project.run_subprocess("--co", "-q")

    assert result.ret == pytest.ExitCode.OK
    lines = (project.path / "modules.txt").read_text().splitlines()
    # Preparation ran (the pipeline was imported), yet no engine module was.
    assert lines == ["load: - pipeline=False", "collect-only: - pipeline=True"]


#: Records how ftevals' own modules and this project's test modules were loaded.
LOADERS_CONFTEST = '''
import sys
from pathlib import Path


def pytest_sessionfinish(session):
    loaders = {name: type(sys.modules[name].__loader__).__name__
               for name in ("ftevals.pipeline", "ftevals.score", "test_loaders")}
    (Path(__file__).parent / "loaders.txt").write_text(repr(loaders))
'''


def test_ftevals_own_modules_are_not_assert_rewritten_but_test_modules_are(project):
    """pytest marks every module of a plugin's distribution for assertion rewriting; ftevals unmarks
    its own package (none are tests): rewriting them cost 0.3-0.5 s of every warm re-run where
    bytecode is not cached. Test modules keep pytest's assertion messages."""
    project.pytester.makeconftest(LOADERS_CONFTEST)
    project.pytester.makepyfile(test_loaders="def test_plain():\n    assert 1 + 1 == 2\n")

    result = project.run_subprocess("--co", "-q")

    assert result.ret == pytest.ExitCode.OK
    loaders = eval((project.path / "loaders.txt").read_text())  # a dict of str written by the conftest above
    assert loaders == {"ftevals.pipeline": "SourceFileLoader", "ftevals.score": "SourceFileLoader",
                       "test_loaders": "AssertionRewritingHook"}
