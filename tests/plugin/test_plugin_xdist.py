"""pytest-xdist: the same results as a serial run, generation done once, files written once.

xdist needs real processes, so these run pytest in a subprocess (a few seconds each). A conftest
in the project logs, per process, every backend batch and every results-file write; the test then
checks who did what.
"""

from __future__ import annotations

import pytest

from ftevals.results import canonical

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestAssertRewriteWarning")

#: Installed in the project only for the subprocess runs (an in-process run would patch this process).
EVENT_LOG_CONFTEST = '''
import os
from pathlib import Path

import ftevals.results
from ftevals.backends.replay import ReplayBackend

LOG = Path(__file__).parent / "events.log"
WHO = os.environ.get("PYTEST_XDIST_WORKER", "controller")


def _log(event):
    with LOG.open("a") as fh:
        fh.write(f"{WHO} {event}\\n")


_generate = ReplayBackend.generate
_write_results = ftevals.results.save


def generate(self, requests):
    _log(f"generate {len(requests)}")
    return _generate(self, requests)


def write_results(path, results):
    _log(f"write_results {Path(path).name}")
    return _write_results(path, results)


ReplayBackend.generate = generate
ftevals.results.save = write_results


def pytest_collection_finish(session):
    _log(f"collected {len(session.items)}")


def pytest_sessionfinish(session):
    # A replay run needs no engine: no process may have imported one.
    import sys

    _log("engines " + (",".join(m for m in ("torch", "vllm", "transformers", "peft") if m in sys.modules) or "-"))
'''

OTHER_SUITE = (
    "from ftevals import Suite\n"
    "other = Suite(name='other', task='classification', dataset='data.jsonl', labels='labels.json',\n"
    "              models=['base', 'tuned'], metrics=['accuracy'], limit=10, gates=['accuracy >= 0.5'])\n"
)


def test_xdist_run_equals_serial_run_generates_once_and_only_the_controller_writes(project, monkeypatch):
    # When this test itself runs under xdist, its worker id must not leak into the inner controller.
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    project.pytester.makepyfile(test_other=OTHER_SUITE)
    serial = project.run()
    serial.assert_outcomes(passed=4)
    expected = canonical(project.results())
    for f in (project.path / "baselines").iterdir():  # so that both runs create them
        f.unlink()
    project.pytester.makeconftest(EVENT_LOG_CONFTEST)

    result = project.run_subprocess("-n", "2", "--ftevals-cache-dir", "cache2",
                                    "--ftevals-results", "out/xdist.json")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str() + result.stderr.str()
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines([
        "2 workers [[]4 items[]]",
        "*= ftevals =*",
        "other (classification, n=10 of 20, reference=base; gates 1/1 passed)",
        "demo (classification, n=20, reference=base; gates 1/1 passed)",
        "results: out/xdist.json",
    ])
    # The worker that generates shows its progress (xdist shows nothing of a worker's own output).
    result.stderr.fnmatch_lines(["[[]gw?[]] ftevals: 0 generations from the cache, 40 to generate with replay*",
                                 "[[]gw?[]] ftevals: [[]40/40[]] tuned: 20 generated in *"])
    got = project.results(project.path / "out" / "xdist.json")
    assert canonical(got) == expected
    # Each worker ran one of the two baseline items; the controller merged both outcomes.
    assert {s["name"]: s["baseline"]["status"] for s in got["suites"]} == {"demo": "created", "other": "created"}

    events = (project.path / "events.log").read_text().splitlines()
    writes = [e for e in events if "write_results" in e]
    assert writes == ["controller write_results xdist.json"], events
    generators = {e.split()[0] for e in events if " generate " in e}
    # One worker generated everything (40 prompts, one batch per model); the other found it cached.
    assert len(generators) == 1 and generators <= {"gw0", "gw1"}, events
    assert sorted(int(e.split()[-1]) for e in events if " generate " in e) == [20, 20], events
    # The controller collects nothing (xdist's DSession skips collection there), so it never
    # prepares suites; each worker collects all four items.
    assert sorted(e for e in events if " collected " in e) == ["gw0 collected 4", "gw1 collected 4"], events
    assert sorted(e for e in events if " engines " in e) == ["controller engines -", "gw0 engines -", "gw1 engines -"], events


def test_xdist_usage_error_is_a_usage_error_on_the_controller(project):
    project.write_suite(models=["base", "tuned", "ghost"])

    result = project.run_subprocess("-n", "2")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: ftevals: test_suite.py: suite 'demo' names unknown model(s) ghost; *"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    assert project.written_files() == []
