"""Offline by default: no hub, telemetry or other network call unless a server URL is configured, and
`trust_remote_code` off unless asked.

- A whole run through the plugin (replay backend: data, scoring, gates, results, report) under a
  guard that refuses any name lookup or TCP connection outside 127.0.0.1.
- The model libraries in a fresh interpreter whose environment says nothing about offline mode and
  which imported huggingface_hub before ftevals (so the variable alone would come too late):
  resolving models, loading the tokenizer and generating with transformers + peft, under the guard.
- vLLM under the guard, with its usage statistics off: tests/reliability/test_engine_death.py.
- A server backend talks to its configured URL and nowhere else: test_server_faults.py and
  test_secrets.py run against 127.0.0.1 under no proxy.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from brokenmodels import GOOD_ADAPTER
from netguard import NetworkGuard
from support.miniproject import MiniProject

from ftevals.backends.hf import HFSettings
from ftevals.backends.vllm import VLLMSettings, _Engine
from ftevals.offline import OFFLINE_DEFAULTS

SRC = Path(__file__).resolve().parents[2] / "src" / "ftevals"
HERE = Path(__file__).resolve().parent


def test_a_whole_plugin_run_makes_no_network_call(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    project = MiniProject.create(pytester)
    guard = NetworkGuard(refuse=True).install(monkeypatch)
    result = project.run()
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    assert (project.path / "out" / "results.json").is_file() and (project.path / "out" / "report.html").is_file()
    assert guard.attempts == []


def test_the_guard_sees_an_outside_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: what the guard is for is caught (before any packet leaves)."""
    import socket

    guard = NetworkGuard(refuse=True).install(monkeypatch)
    with pytest.raises(OSError, match="network access outside 127.0.0.1"):
        socket.create_connection(("huggingface.co", 443), timeout=1)
    with socket.socket() as s, pytest.raises(OSError, match="network access outside 127.0.0.1"):
        s.connect(("192.0.2.1", 443))
    assert guard.attempts == ["name lookup of 'huggingface.co'", "TCP connection to ('192.0.2.1', 443)"]


#: Runs in a fresh interpreter: huggingface_hub first (as a user's conftest might), then ftevals'
#: local-model paths under the guard; prints what it saw as JSON.
FRESH = r"""
import json, os, sys
import pytest
import huggingface_hub.constants as hub
before = hub.HF_HUB_OFFLINE
sys.path.insert(0, sys.argv[1])
from netguard import NetworkGuard
guard = NetworkGuard(refuse=True).install(pytest.MonkeyPatch())

from ftevals.backends import make_backend
from ftevals.backends.base import GenerationRequest
from ftevals.data import Message
from ftevals.models import resolve_models
from ftevals.specs import ModelSpec, SamplingSpec

models = resolve_models([ModelSpec("base"), ModelSpec("b77", adapter=sys.argv[2])])
backend = make_backend("hf", models, {"batch_size": 2})
msgs = (Message("user", "Where is my card?"),)
reqs = [GenerationRequest(f"k{i}", models[m].spec, msgs, backend.render(models[m].spec, msgs), SamplingSpec(max_tokens=3))
        for i, m in enumerate(["base", "b77"])]
outs = backend.generate(reqs)
print(json.dumps({"hub_offline_before": before, "hub_offline_after": hub.HF_HUB_OFFLINE,
                  "env": {k: os.environ.get(k) for k in sys.argv[3].split(",")},
                  "generated": len(outs), "attempts": guard.attempts}))
"""


def fresh_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in OFFLINE_DEFAULTS and k not in ("TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")}
    env.update(extra)
    return env


@pytest.mark.slow
def test_model_libraries_stay_offline_even_when_the_hub_was_imported_first(default_model: Any) -> None:
    done = subprocess.run(
        [sys.executable, "-c", FRESH, str(HERE), str(GOOD_ADAPTER), ",".join(OFFLINE_DEFAULTS)],
        env=fresh_env(), capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["hub_offline_before"] is False  # nothing in the environment asked for offline mode
    assert seen["hub_offline_after"] is True
    assert seen["env"] == OFFLINE_DEFAULTS
    assert seen["generated"] == 2
    assert seen["attempts"] == []


def test_a_user_who_asks_for_the_hub_gets_it() -> None:
    code = ("import huggingface_hub.constants as hub\nfrom ftevals.offline import hub_offline\nhub_offline()\n"
            "import os\nprint(hub.HF_HUB_OFFLINE, os.environ['HF_HUB_OFFLINE'], os.environ['VLLM_NO_USAGE_STATS'])")
    done = subprocess.run([sys.executable, "-c", code], env=fresh_env(HF_HUB_OFFLINE="0"),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "0", "1"]


# ---------------------------------------------------------------------------------------------
# trust_remote_code


def test_trust_remote_code_defaults_to_false_everywhere() -> None:
    assert VLLMSettings().trust_remote_code is False
    assert HFSettings().trust_remote_code is False
    # No call in the package turns it on by itself: every `trust_remote_code=` passes a setting
    # through (or a parameter defaulting to False), never the literal True.
    offenders = []
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "trust_remote_code":
                if isinstance(node.value, ast.Constant) and node.value.value is not False:
                    offenders.append(f"{path.name}:{node.value.lineno}")
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args
                defaults = dict(zip(reversed([a.arg for a in args.args]), reversed(args.defaults)))
                defaults.update({a.arg: d for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None})
                if "trust_remote_code" in [a.arg for a in args.args + args.kwonlyargs]:
                    default = defaults.get("trust_remote_code")
                    if not (isinstance(default, ast.Constant) and default.value is False):
                        offenders.append(f"{path.name}:{node.lineno} {node.name}()")
    assert offenders == []


@pytest.mark.parametrize("asked", [False, True])
def test_vllm_engine_gets_trust_remote_code_only_when_asked(asked: bool, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    class FakeLLM:
        def __init__(self, **kwargs: Any) -> None:
            seen.update(kwargs)

    fake = types.ModuleType("vllm")
    fake.LLM = FakeLLM  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", fake)
    for name in [*OFFLINE_DEFAULTS, "VLLM_CPU_NUM_OF_RESERVED_CPU", "VLLM_CPU_OMP_THREADS_BIND", "VLLM_CPU_KVCACHE_SPACE"]:
        monkeypatch.setenv(name, "placeholder")  # restored afterwards, whatever the engine sets
        monkeypatch.delenv(name)
    _Engine(tmp_path, [], VLLMSettings(trust_remote_code=asked)).start()
    assert seen["trust_remote_code"] is asked
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["VLLM_NO_USAGE_STATS"] == "1"
