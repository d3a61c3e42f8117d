"""The plugin as a user meets it: collection, outcomes, the summary, the results file, fixtures."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from importlib import metadata

import pytest

from ftevals.plugin import SESSION_KEY, FtevalsSession
from ftevals.results import SCHEMA, SCHEMA_VERSION

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestAssertRewriteWarning")


def test_passing_suite_prints_a_table_and_writes_a_valid_results_file(project):
    project.write_suite(gates=["accuracy >= base - 0.05", "macro_f1 >= 0.5"])

    result = project.run()

    result.assert_outcomes(passed=3)  # two gates for `tuned`, one baseline
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([
        "ftevals: backend replay, models base, tuned, cache cache",
        "collected 3 items",
        "*= ftevals =*",
        "demo (classification, n=20, reference=base; gates 2/2 passed)",
        "  model  accuracy * macro_f1 * verdict * gates",
        "  base   0.600 * reference*",
        "  tuned  0.800 (+0.200 [[]+0.*,+0.*[]]) * 2/2 passed",
        "  [[]PASS[]] accuracy rose: tuned 0.800 vs base 0.600 (+0.200, 95% CI +0.*..+0.*, n=20; allowed -0.050; not significant)",
        "  [[]PASS[]] macro_f1 0.* is above the floor 0.500 (95% CI *, n=20)",
        "  baseline baselines/demo.json did not exist; wrote it with 4 values for 2 models: review and commit it",
        "results: out/results.json",
        "report:  out/report.html",
        "*= 3 passed in *",
    ])
    results = project.results()  # validates schema and version
    assert (results["schema"], results["schema_version"]) == (SCHEMA, SCHEMA_VERSION)
    # Provenance: what produced these numbers.
    assert results["run"]["backend"]["name"] == "replay"
    assert results["run"]["backend"]["settings"]["predictions_sha256"].startswith("sha256:")
    assert results["run"]["ftevals_version"] and "pytest" in results["run"]["libraries"]
    assert results["run"]["argv"][0] == "pytest"
    assert set(results["models"]) == {"base", "tuned"}
    (suite,) = results["suites"]
    assert suite["scores"]["base"]["accuracy"]["value"] == pytest.approx(0.6)
    assert suite["scores"]["tuned"]["accuracy"]["value"] == pytest.approx(0.8)
    assert [(g["id"], g["passed"]) for g in suite["gates"]] == [
        ("tuned::accuracy >= base - 0.05", True), ("tuned::macro_f1 >= 0.5", True)]
    assert suite["baseline"]["status"] == "created"
    assert "<html" in (project.path / "out" / "report.html").read_text(encoding="utf-8")


def test_failing_gate_fails_its_test_with_one_line_and_exit_code_1(project):
    # tuned loses 6 of base's 12 right answers and fixes none: a significant regression (McNemar).
    project.write_predictions({"base": 12, "tuned": 6})
    project.write_suite(gates=["accuracy >= base - 0.05", "macro_f1 >= 0.1"])

    result = project.run()

    result.assert_outcomes(passed=2, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "*_ demo::gate[[]tuned: accuracy >= base - 0.05[]] _*",
        "accuracy regressed: tuned 0.300 vs base 0.600 (-0.300, 95% CI -0.*..-0.*, n=20; allowed -0.050)",
        "*= ftevals =*",
        "demo (classification, n=20, reference=base; gates 1/2 passed, 1 FAILED)",
        "  tuned  0.300 (-0.300 [[]-0.*,-0.*[]]) * REGRESSED * 1/2 FAILED",
        "  [[]FAIL[]] accuracy regressed: tuned 0.300 vs base 0.600 *",
        "FAILED test_suite.py::demo::gate[[]tuned: accuracy >= base - 0.05[]] - accuracy*",
    ])
    # No traceback into the plugin: the failure is the sentence.
    assert "plugin.py" not in result.stdout.str()
    # A failing gate is a result too: the file is written and records it.
    gates = project.results()["suites"][0]["gates"]
    assert [g["passed"] for g in gates] == [False, True]


def test_each_gated_model_and_suite_level_value_is_its_own_test(project):
    project.write_predictions({"base": 12, "tuned": 16, "other": 11})
    project.write_suite(models=["base", "tuned", "other"], train_files=["data.jsonl"],
                        gates=["accuracy >= base - 0.05", "tuned: macro_f1 >= 0.5", "contamination <= 0.5"])

    result = project.run("-v", "--ftevals-model", "other=base+adapters/other")

    result.stdout.fnmatch_lines([
        "test_suite.py::demo::gate[[]tuned: accuracy >= base - 0.05[]] PASSED*",
        "test_suite.py::demo::gate[[]other: accuracy >= base - 0.05[]] PASSED*",
        "test_suite.py::demo::gate[[]tuned: macro_f1 >= 0.5[]] PASSED*",
        # The eval file is its own training file here: every example is contaminated.
        "test_suite.py::demo::gate[[]contamination <= 0.5[]] FAILED*",
        "test_suite.py::demo::baseline PASSED*",
    ])
    result.assert_outcomes(passed=4, failed=1)


def test_gate_items_cover_every_gate_row_with_fewshot_and_gate_models_all(project):
    """Items are made at collection time from the model table; the pipeline evaluates gates after
    preparation. Both must name the same (gate, model) pairs, few-shot contender included."""
    project.write_predictions({"base": 12, "tuned": 16, "base-fewshot2": 14})
    (project.path / "pool.jsonl").write_text(
        "".join(json.dumps({"id": f"pool-{i}", "messages": [
            {"role": "user", "content": f"pool question {i}"},
            {"role": "assistant", "content": project.labels[i]}]}) + "\n" for i in range(4)),
        encoding="utf-8")
    project.write_suite(body=(
        "from ftevals import FewShot, Suite\n"
        "demo = Suite(name='demo', task='classification', dataset='data.jsonl', labels='labels.json',\n"
        "             models=['base', 'tuned'], fewshot=FewShot(k=2, pool='pool.jsonl'), gate_models='all',\n"
        "             gates=['accuracy >= base - 0.05'])\n"))

    result = project.run("-v")

    result.assert_outcomes(passed=3)
    rows = {(g["source"], g["model"]) for g in project.results()["suites"][0]["gates"]}
    assert rows == {("accuracy >= base - 0.05", "tuned"), ("accuracy >= base - 0.05", "base-fewshot2")}
    result.stdout.fnmatch_lines(["*gate[[]base-fewshot2: accuracy >= base - 0.05[]] PASSED*"])


def test_one_backend_for_all_suites_and_identical_requests_generated_once(project, monkeypatch):
    from ftevals.backends.replay import ReplayBackend

    built: list[int] = []
    batches: list[int] = []
    real_init, real_generate = ReplayBackend.__init__, ReplayBackend.generate

    def init(self, *args, **kwargs):
        built.append(1)
        real_init(self, *args, **kwargs)

    def generate(self, requests):
        batches.append(len(requests))
        return real_generate(self, requests)

    monkeypatch.setattr(ReplayBackend, "__init__", init)
    monkeypatch.setattr(ReplayBackend, "generate", generate)
    project.pytester.makepyfile(test_other=(
        "from ftevals import Suite\n"
        "other = Suite(name='other', task='classification', dataset='data.jsonl', labels='labels.json',\n"
        "              models=['base', 'tuned'], metrics=['accuracy'], gates=['accuracy >= 0.5'])\n"))

    result = project.run()

    result.assert_outcomes(passed=4)
    assert built == [1]
    # Two suites on the same examples and models: 40 distinct prompts, one batch per model.
    assert batches == [20, 20]
    assert [s["name"] for s in project.results()["suites"]] == ["other", "demo"]


def test_deselected_suites_are_not_evaluated(project):
    project.pytester.makepyfile(test_other=(
        "from ftevals import Suite\n"
        "other = Suite(name='other', task='classification', dataset='data.jsonl', labels='labels.json',\n"
        "              models=['base', 'tuned'], gates=['accuracy >= 0.5'])\n"))

    result = project.run("-k", "other")

    result.assert_outcomes(passed=2)
    assert [s["name"] for s in project.results()["suites"]] == ["other"]


def test_collect_only_validates_but_generates_nothing(project):
    result = project.run("--co", "-q")

    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([
        "test_suite.py::demo::gate[[]tuned: accuracy >= base - 0.05[]]",
        "test_suite.py::demo::baseline",
    ])
    assert project.written_files() == []


def test_fixtures_give_hand_written_tests_the_results(project):
    project.write_suite(body=(
        "import pytest\n"
        "from ftevals import Suite\n"
        "demo = Suite(name='demo', task='classification', dataset='data.jsonl', labels='labels.json',\n"
        "             models=['base', 'tuned'], gates=['accuracy >= base - 0.05'])\n"
        "extra = Suite(name='extra', task='classification', dataset='data.jsonl', labels='labels.json',\n"
        "              models=['base', 'tuned'], metrics=['accuracy'])\n"
        "\n"
        "@pytest.mark.ftevals_suite('demo')\n"
        "def test_tuned_fixes_more_than_it_breaks(ftevals_suite, ftevals_models, ftevals_results, ftevals_suites):\n"
        "    assert ftevals_suite.name == 'demo'\n"
        "    assert ftevals_suite.models == ['base', 'tuned']\n"
        "    assert ftevals_suite.score('tuned', 'accuracy') == pytest.approx(0.8)\n"
        "    low, high = ftevals_suite.ci('tuned', 'accuracy')\n"
        "    assert low <= 0.8 <= high\n"
        "    comp = ftevals_suite.comparison('tuned', 'accuracy')\n"
        "    assert comp.delta == pytest.approx(0.2) and len(comp.fixes) == 4\n"
        "    outputs = ftevals_suite.outputs('tuned')\n"
        "    assert len(outputs) == 20 and all(isinstance(t, str) for t in outputs.values())\n"
        "    assert sum(ftevals_suite.per_example('base', 'accuracy').values()) == 12\n"
        "    assert ftevals_models['tuned'].adapter.endswith('adapters/tuned')\n"
        "    assert sorted(ftevals_suites) == ['demo', 'extra']\n"
        "    assert ftevals_results.schema == 'ftevals.results' and ftevals_results.suite('demo').name == 'demo'\n"
        "    with pytest.raises(KeyError, match='did not run model'):\n"
        "        ftevals_suite.score('nobody', 'accuracy')\n"
        "\n"
        "def test_needs_a_marker_with_two_suites(ftevals_suite):\n"
        "    pass\n"))

    # Selecting only the hand-written test still evaluates the module's suites.
    result = project.run("-k", "fixes_more", "--strict-markers")
    result.assert_outcomes(passed=1, deselected=5)

    result = project.run("-k", "needs_a_marker")
    result.assert_outcomes(errors=1, deselected=5)
    result.stdout.fnmatch_lines(["*ftevals_suite: test_suite defines 2 suites (demo, extra); name one with "
                                 "@pytest.mark.ftevals_suite(\"NAME\")*"])


def test_junit_xml_has_one_readable_testcase_per_gate(project):
    project.write_predictions({"base": 12, "tuned": 6})
    project.write_suite(gates=["accuracy >= base - 0.05", "macro_f1 >= 0.1"])

    result = project.run("--junitxml=junit.xml")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    cases = ET.parse(project.path / "junit.xml").getroot().iter("testcase")
    by_name = {c.get("name"): c for c in cases}
    assert list(by_name) == ["gate[tuned: accuracy >= base - 0.05]", "gate[tuned: macro_f1 >= 0.1]", "baseline"]
    assert {c.get("classname") for c in by_name.values()} == {"test_suite.demo"}
    failure = by_name["gate[tuned: accuracy >= base - 0.05]"].find("failure")
    assert failure is not None
    assert failure.get("message", "").startswith("accuracy regressed: tuned 0.300 vs base 0.600 (-0.300, 95% CI")
    assert by_name["gate[tuned: macro_f1 >= 0.1]"].find("failure") is None
    # Every gate's message is recorded as a property, passing or not.
    prop = by_name["gate[tuned: macro_f1 >= 0.1]"].find("properties/property")
    assert prop is not None and prop.get("name") == "ftevals_gate"
    assert prop.get("value", "").startswith("macro_f1 0.")


def test_options_ini_keys_and_markers_share_the_ftevals_prefix(pytester):
    help_text = pytester.runpytest("--help").stdout.str()
    section = help_text.split("ftevals: evaluate base models and LoRA adapters side by side:")[1].split("\n\n")[0]
    options = [line.split()[0] for line in section.splitlines() if line.lstrip().startswith("-")]
    assert len(options) >= 12
    assert all(o.startswith("--ftevals-") for o in options), options
    ini_keys = [line.split()[0] for line in help_text.splitlines() if line.strip().startswith("ftevals")]
    assert {"ftevals_models", "ftevals_backend", "ftevals_results", "ftevals_cache_dir"} <= set(ini_keys)
    # No ftevals option outside its group.
    assert help_text.count("--ftevals-") == section.count("--ftevals-")

    markers = pytester.runpytest("--markers").stdout.str()
    for name in ("ftevals_suite(name)", "ftevals_gate", "ftevals_baseline"):
        assert f"@pytest.mark.{name}:" in markers


def test_plugin_is_an_entry_point_and_keeps_its_state_in_the_stash(pytester):
    (entry,) = [e for e in metadata.entry_points(group="pytest11") if e.name == "ftevals"]
    assert entry.value == "ftevals.plugin"

    config = pytester.parseconfigure()
    assert config.pluginmanager.has_plugin("ftevals")
    session = config.stash[SESSION_KEY]
    assert isinstance(session, FtevalsSession)
    assert config.pluginmanager.get_plugin("ftevals-session") is session
    # State is per config: a second config gets its own session object.
    assert pytester.parseconfigure().stash[SESSION_KEY] is not session
