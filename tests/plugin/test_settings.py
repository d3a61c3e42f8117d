"""settings.py on plain values: no pytest config, just `Values.from_dicts` (what the plugin builds from
`config.getoption` / `config.getini`). The same rules through real pytest runs are in
test_plugin_errors.py and tests/reliability/test_bad_config.py."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from ftevals.backends.registry import backend_names
from ftevals.cli import main
from ftevals.errors import ConfigError
from ftevals.settings import INI_KEYS, RUN_FLAGS, Values, declared_options, int_at_least, option, read_settings
from ftevals.specs import DEFAULT_BASE, ModelSpec


@pytest.fixture
def folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(the ini file's folder, the folder the run started in), with the cache root pinned."""
    monkeypatch.setenv("FTEVALS_CACHE_DIR", str(tmp_path / "cache-root"))
    ini_dir, cwd = tmp_path / "project", tmp_path / "project" / "sub"
    return ini_dir, cwd


def settings(folders: tuple[Path, Path], options: dict | None = None, ini: dict | None = None):
    ini_dir, cwd = folders
    return read_settings(Values.from_dicts(options, ini, ini_dir=ini_dir, cwd=cwd))


def test_defaults(folders):
    ini_dir, _ = folders
    s = settings(folders)

    assert s.backend == "vllm"
    assert s.models == {"base": ModelSpec("base", DEFAULT_BASE)}
    assert s.backend_options == {}
    assert s.results == ini_dir / "reports" / "results.json"
    assert s.report == ini_dir / "reports" / "report.html"
    assert s.cache_dir == ini_dir.parent / "cache-root" / "generations"
    assert (s.limit, s.seed, s.resamples, s.cache_mode) == (None, 0, 2000, "use")
    assert (s.update_baseline, s.baseline_dir) == (False, "baselines")


def test_options_win_over_ini_and_paths_follow_where_they_were_written(folders):
    ini_dir, cwd = folders
    s = settings(
        folders,
        options={"--ftevals-backend": "replay", "--ftevals-results": "mine.json", "--ftevals-limit": 5,
                 "--ftevals-seed": 3, "--ftevals-resamples": 400, "--ftevals-cache": "off",
                 "--ftevals-update-baseline": True},
        ini={"ftevals_backend": "hf", "ftevals_results": "ini.json", "ftevals_report": "out/r.html",
             "ftevals_cache_dir": "/abs/cache", "ftevals_baseline_dir": "golden"},
    )

    assert s.backend == "replay"
    assert s.results == cwd / "mine.json"
    assert s.report == ini_dir / "out" / "r.html"
    assert s.cache_dir == Path("/abs/cache")
    assert (s.limit, s.seed, s.resamples, s.cache_mode) == (5, 3, 400, "off")
    assert (s.update_baseline, s.baseline_dir) == (True, "golden")
    assert settings(folders, options={"--ftevals-no-report": True}).report is None


def test_model_table_from_ini_then_options_later_entries_winning(folders):
    ini_dir, cwd = folders
    # Relative folders that exist are anchored where they were written; `org/name` that is no
    # folder there stays a Hugging Face id (resolved from the local hub cache, test_hub_cache.py).
    (cwd / "adapters" / "v2").mkdir(parents=True)
    (ini_dir / "models" / "x").mkdir(parents=True)
    s = settings(
        folders,
        options={"--ftevals-model": ["tuned=base+adapters/v2", "big=/models/llama@fewshot=5"]},
        ini={"ftevals_models": ["base = default", "tuned = base+adapters/v1", "other = models/x+ad"]},
    )

    assert s.models == {
        "base": ModelSpec("base", DEFAULT_BASE),
        "tuned": ModelSpec("tuned", DEFAULT_BASE, str(cwd / "adapters/v2")),
        "other": ModelSpec("other", str(ini_dir / "models/x"), str(ini_dir / "ad")),
        "big": ModelSpec("big", "/models/llama", None, 5),
    }
    ids = settings(folders, options={"--ftevals-model": ["hub=meta-llama/Llama-3.1-8B-Instruct+acme/lora@v1"]})
    assert ids.models["hub"] == ModelSpec("hub", "meta-llama/Llama-3.1-8B-Instruct", "acme/lora@v1")


def test_backend_options_are_json_or_strings_and_path_is_anchored(folders):
    ini_dir, cwd = folders
    s = settings(folders, options={"--ftevals-backend-option": ["concurrency=4", "path=preds.jsonl"]},
                 ini={"ftevals_backend_options": ["base_urls=[\"http://127.0.0.1:8000\"]", "strategy = merged",
                                                  "path=ini.jsonl"]})

    assert s.backend_options == {"base_urls": ["http://127.0.0.1:8000"], "strategy": "merged", "concurrency": 4,
                                 "path": str(cwd / "preds.jsonl")}
    ini_only = settings(folders, ini={"ftevals_backend_options": ["path=ini.jsonl"]})
    assert ini_only.backend_options == {"path": str(ini_dir / "ini.jsonl")}


@pytest.mark.parametrize(("options", "ini", "message"), [
    pytest.param({}, {"ftevals_backend": "nope"},
                 f"ini ftevals_backend: unknown backend 'nope'; expected one of {', '.join(backend_names())}",
                 id="backend"),
    pytest.param({"--ftevals-model": ["broken"]}, {},
                 "--ftevals-model: 'broken' is not 'NAME = SPEC' (e.g. 'tuned = base+adapters/v2')", id="model-line"),
    pytest.param({}, {"ftevals_models": ["x = base@shots=3"]}, "ini ftevals_models: model 'x': bad option '@shots=3'",
                 id="model-spec"),
    pytest.param({"--ftevals-backend-option": ["=1"]}, {},
                 "--ftevals-backend-option: '=1' is not KEY=VALUE (e.g. path=preds.jsonl)", id="backend-option"),
    pytest.param({"--ftevals-no-report": True, "--ftevals-report": "r.html"}, {},
                 "--ftevals-no-report and --ftevals-report r.html contradict each other; drop one of them",
                 id="no-report-and-report"),
    pytest.param({"--ftevals-report": "/tmp/same.json", "--ftevals-results": "/tmp/same.json"}, {},
                 "the results file and the HTML report would both be written to /tmp/same.json", id="same-path"),
])
def test_bad_values_are_config_errors_naming_the_value(folders, options, ini, message):
    with pytest.raises(ConfigError) as info:
        settings(folders, options, ini)

    assert str(info.value).startswith(message)


def test_values_refuse_an_undeclared_name(tmp_path):
    with pytest.raises(KeyError, match="--ftevals-limt"):
        Values.from_dicts({"--ftevals-limt": 5}, ini_dir=tmp_path)


def test_int_at_least_names_the_bound_and_the_value():
    parse = int_at_least(100, " for a meaningful 95% CI")

    assert parse("400") == 400
    with pytest.raises(argparse.ArgumentTypeError, match=r"^must be >= 100 for a meaningful 95% CI, got 10$"):
        parse("10")
    with pytest.raises(argparse.ArgumentTypeError, match=r"^expected a whole number, got 'ten'$"):
        parse("ten")


def test_one_declaration_serves_pytest_and_the_cli(capsys):
    flags = [o.flag for o in declared_options()]
    assert all(f.startswith("--ftevals-") for f in flags) and len(set(flags)) == len(flags)
    assert all(k.name.startswith("ftevals_") for k in INI_KEYS)
    assert option("--ftevals-backend").kwargs["choices"] == backend_names()
    assert set(RUN_FLAGS.values()) <= set(flags)

    # `ftevals run` takes the same choices and checks as the options it passes on.
    for args, message in ((["--backend", "nope"], "argument --backend: invalid choice: 'nope'"),
                          (["--limit", "0"], "argument --limit: must be >= 1, got 0")):
        with pytest.raises(SystemExit) as info:
            main(["run", *args])
        assert info.value.code == 2
        assert message in capsys.readouterr().err
