"""The backend extension contract: one registry, one protocol, lazy imports.

A new backend is one module plus one `register_backend(...)` line; these tests hold the project to
that, and check that every built-in backend has every member generic code uses.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from ftevals.backends import BACKENDS, make_backend
from ftevals.backends.base import Backend, protocol_members
from ftevals.backends.registry import (
    REGISTRY,
    BackendEntry,
    backend_entry,
    backend_names,
    loads_local_weights,
    register_backend,
)
from ftevals.errors import ConfigError, MissingDependencyError
from ftevals.pipeline import RunConfig, execute, prepare
from ftevals.specs import ModelSpec
from ftevals.suite import Suite

ROOT = Path(__file__).resolve().parents[2]
BUILT_INS = ("vllm", "hf", "openai", "replay")

#: The whole of a third-party backend: a settings record and a class; the defaults come from
#: BackendDefaults. It answers each prompt with its last user message, upper-cased.
SHOUT_BACKEND = '''
from __future__ import annotations

from dataclasses import dataclass

from ftevals.backends.base import BackendDefaults, Generation


@dataclass(frozen=True)
class ShoutSettings:
    suffix: str = ""


class ShoutBackend(BackendDefaults):
    name = "shout"
    settings_type = ShoutSettings

    def __init__(self, models, settings):
        self.settings = settings or ShoutSettings()

    def identity(self):
        return {"backend": self.name, "suffix": self.settings.suffix}

    def render(self, model, messages):
        return messages[-1].content

    def generate(self, requests):
        return [Generation(r.prompt.upper() + self.settings.suffix, len(r.prompt), 1) for r in requests]
'''


@pytest.fixture
def registry() -> Iterator[dict[str, BackendEntry]]:
    """The live registry, restored after the test so registrations do not leak into other tests."""
    saved = dict(REGISTRY)
    yield REGISTRY
    REGISTRY.clear()
    REGISTRY.update(saved)


def test_a_backend_is_one_file_plus_one_registry_line(tmp_path, monkeypatch, registry):
    (tmp_path / "shout_backend.py").write_text(SHOUT_BACKEND, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    register_backend(BackendEntry("shout", "shout_backend", "ShoutBackend", loads_local_weights=False, extra=None))

    assert "shout" in backend_names()
    models = {"base": ModelSpec("base"), "tuned": ModelSpec("tuned", adapter="adapters/tuned")}
    suite = Suite(name="banking77", task="classification", dataset=str(ROOT / "data/banking77/test.jsonl"),
                  labels=str(ROOT / "data/banking77/labels.json"), models=tuple(models), limit=4)
    config = RunConfig(models=models, backend="shout", backend_options={"suffix": "!"},
                       cache_dir=tmp_path / "cache", resamples=50)
    results = execute(prepare([suite], config), progress=None)

    examples = results.suites[0].examples
    assert len(examples) == 4
    for ex in examples:
        for model in models:
            assert ex.outputs[model].text.endswith("!")
            assert ex.outputs[model].text == ex.outputs[model].text.upper()
    timings = results.run.timings
    assert timings["engine_start_s"] == 0.0 and timings["strategy_choices"] == {}
    json.dumps(results.to_dict())  # the record is plain JSON underneath


def test_register_backend_makes_it_buildable_and_checks_settings(tmp_path, monkeypatch, registry):
    (tmp_path / "shout_backend.py").write_text(SHOUT_BACKEND, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    register_backend(BackendEntry("shout", "shout_backend", "ShoutBackend", loads_local_weights=False, extra=None))

    backend = make_backend("shout", {}, {"suffix": "?"})
    assert isinstance(backend, Backend) and backend.identity() == {"backend": "shout", "suffix": "?"}
    with pytest.raises(ConfigError, match="backend 'shout' has no setting 'volume'; its settings are: suffix"):
        make_backend("shout", {}, {"volume": 11})


def test_unknown_backend_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown backend 'nope'; expected one of vllm, hf, openai, replay"):
        backend_entry("nope")
    with pytest.raises(ConfigError, match="unknown backend 'nope'"):
        make_backend("nope", {})
    with pytest.raises(ConfigError, match="unknown backend 'nope'"):
        loads_local_weights("nope")


def test_registered_names_are_listed_in_errors(registry):
    register_backend(BackendEntry("mine", "nowhere.mine", "Mine", loads_local_weights=False, extra=None))
    with pytest.raises(ConfigError, match="expected one of vllm, hf, openai, replay, mine"):
        backend_entry("nope")


def test_entries_that_cannot_be_loaded_say_why(registry):
    register_backend(BackendEntry("ghost", "ftevals_no_such_module", "Ghost", loads_local_weights=False, extra=None))
    with pytest.raises(ConfigError, match="backend 'ghost': cannot import module 'ftevals_no_such_module'"):
        make_backend("ghost", {})
    register_backend(BackendEntry("typo", "ftevals.backends.replay", "ReplayBakend", loads_local_weights=False, extra=None))
    with pytest.raises(ConfigError, match="module 'ftevals.backends.replay' has no class 'ReplayBakend'"):
        make_backend("typo", {})


def test_a_missing_dependency_names_the_extra(tmp_path, monkeypatch, registry):
    (tmp_path / "needs_dep.py").write_text("import ftevals_absent_dependency\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    register_backend(BackendEntry("dep", "needs_dep", "Dep", loads_local_weights=False, extra="dep"))
    with pytest.raises(MissingDependencyError, match=r"'ftevals_absent_dependency' .* pip install 'ftevals\[dep\]'"):
        make_backend("dep", {})


@pytest.mark.parametrize("name", ["", "two words", "a/b"])
def test_bad_names_are_refused(name, registry):
    with pytest.raises(ConfigError, match="backend name"):
        register_backend(BackendEntry(name, "m", "C", loads_local_weights=False, extra=None))


def test_the_built_ins_and_the_compatibility_tuple():
    assert backend_names()[: len(BUILT_INS)] == BUILT_INS
    assert BACKENDS == BUILT_INS
    assert [n for n in BUILT_INS if loads_local_weights(n)] == ["vllm", "hf"]
    assert backend_entry("vllm").extra == "vllm"


@pytest.mark.parametrize("name", BUILT_INS)
def test_every_built_in_backend_class_has_every_protocol_member(name):
    # Importing the modules is cheap: vllm, torch and transformers load only when an engine starts.
    entry = backend_entry(name)
    cls = getattr(importlib.import_module(entry.module), entry.class_name)
    missing = [m for m in protocol_members() if not hasattr(cls, m)]
    assert not missing, f"{entry.class_name} lacks {missing}"
    assert cls.name == name
    assert cls.settings_type is not None


def test_protocol_covers_what_generic_code_uses():
    # Members that generate.py and pipeline.py read; each must be declared, not reached with getattr.
    assert {"prepare", "model_order", "answers_by_example", "engine_start_seconds", "generate_seconds",
            "merge_seconds", "choices", "settings_type"} <= set(protocol_members())
    sources = [ROOT / "src/ftevals/generate.py", ROOT / "src/ftevals/pipeline.py", ROOT / "src/ftevals/backends/__init__.py"]
    for path in sources:
        text = path.read_text(encoding="utf-8")
        assert "getattr(backend" not in text and "hasattr(backend" not in text, path


def _imported_after(statement: str) -> set[str]:
    code = textwrap.dedent(f"""
        import json, sys
        {statement}
        print(json.dumps(sorted(sys.modules)))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return set(json.loads(out.stdout))


def test_openai_backend_does_not_import_the_vllm_backend():
    loaded = _imported_after("import ftevals.backends.openai_http")
    assert "ftevals.backends.openai_http" in loaded
    assert "ftevals.backends.vllm" not in loaded


def test_hf_backend_does_not_import_the_vllm_backend():
    loaded = _imported_after("import ftevals.backends.hf")
    assert "ftevals.backends.vllm" not in loaded


def test_the_registry_imports_no_implementation():
    loaded = _imported_after("from ftevals.backends.registry import backend_names, backend_entry, loads_local_weights")
    heavy = {"torch", "vllm", "httpx", "transformers"} | {f"ftevals.backends.{m}" for m in ("vllm", "hf", "openai_http", "replay")}
    assert not heavy & loaded
