"""vLLM's log lines go to a file, not the user's terminal, unless the user chose otherwise."""

from __future__ import annotations

import json
import subprocess
import sys

CODE = """
import json, os, sys
from ftevals.backends.vllm import route_engine_logs
log = route_engine_logs()
print(json.dumps({"log": str(log) if log else None, "config": os.environ.get("VLLM_LOGGING_CONFIG_PATH")}))
"""


def run(env: dict[str, str]) -> dict[str, str | None]:
    out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_logs_are_routed_to_a_file_in_the_cache(tmp_path) -> None:
    env = {"PATH": "/usr/bin:/bin", "FTEVALS_CACHE_DIR": str(tmp_path), "HOME": str(tmp_path)}
    got = run(env)
    assert got["log"] == str(tmp_path / "logs" / "vllm.log")
    config = json.loads((tmp_path / "logs" / "vllm-logging.json").read_text())
    assert got["config"] == str(tmp_path / "logs" / "vllm-logging.json")
    assert config["loggers"]["vllm"] == {"handlers": ["file"], "level": "INFO", "propagate": False}
    assert config["handlers"]["file"]["filename"] == got["log"]


def test_the_users_own_choice_wins(tmp_path) -> None:
    base = {"PATH": "/usr/bin:/bin", "FTEVALS_CACHE_DIR": str(tmp_path), "HOME": str(tmp_path)}
    assert run({**base, "VLLM_LOGGING_LEVEL": "INFO"}) == {"log": None, "config": None}
    assert run({**base, "VLLM_LOGGING_CONFIG_PATH": "/etc/mine.json"}) == {"log": None, "config": "/etc/mine.json"}


def test_a_run_started_by_an_ftevals_run_keeps_routing(tmp_path) -> None:
    # A child process inherits ftevals' own config path: that is not the user's choice.
    base = {"PATH": "/usr/bin:/bin", "FTEVALS_CACHE_DIR": str(tmp_path), "HOME": str(tmp_path)}
    first = run(base)
    assert run({**base, "VLLM_LOGGING_CONFIG_PATH": str(first["config"])}) == first


def test_a_config_another_ftevals_cache_set_is_rerouted_not_taken_for_the_users(tmp_path) -> None:
    # A test (or a run with another FTEVALS_CACHE_DIR) routed the logs and its child inherits that.
    base = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    other = run({**base, "FTEVALS_CACHE_DIR": str(tmp_path / "other")})
    inherited = {"VLLM_LOGGING_CONFIG_PATH": other["config"], "FTEVALS_VLLM_LOGGING_CONFIG": other["config"]}
    got = run({**base, "FTEVALS_CACHE_DIR": str(tmp_path / "mine"), **inherited})
    assert got == {"log": str(tmp_path / "mine" / "logs" / "vllm.log"),
                   "config": str(tmp_path / "mine" / "logs" / "vllm-logging.json")}
    # The user's own path, even when ftevals routed before, still wins.
    mine = {"VLLM_LOGGING_CONFIG_PATH": "/etc/mine.json", "FTEVALS_VLLM_LOGGING_CONFIG": other["config"]}
    assert run({**base, "FTEVALS_CACHE_DIR": str(tmp_path / "mine"), **mine})["log"] is None
