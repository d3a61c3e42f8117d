"""One benchmark scenario per process: `python -m benchmarks.scenarios NAME [ARGS] > result.json`.

Each scenario runs in a fresh process so that engine start-up, memory and caches are measured the
way a user meets them, and so that the parent can sample the whole process tree's memory.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ADAPTERS = ("banking77", "dialogsum", "restaurant8k")
RESULT_MARK = "FTEVALS-BENCHMARK-RESULT "


def parse_result(stdout: str) -> dict[str, Any]:
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT_MARK)]
    if not lines:
        raise SystemExit(f"no benchmark result in the scenario's output:\n{stdout[-2000:]}")
    return json.loads(lines[-1][len(RESULT_MARK):])


def _env() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def workload_suites(name: str, n: int) -> list[Any]:
    from ftevals import SamplingSpec, Suite

    # Short answers (BANKING77 labels): generation is cheap, engine start-up dominates.
    labels = Suite(name="bench-labels", task="classification", dataset=str(ROOT / "data/banking77/test.jsonl"),
                   labels=str(ROOT / "data/banking77/labels.json"), limit=n, seed=1,
                   models=["base", *ADAPTERS], sampling=SamplingSpec(max_tokens=8))
    if name == "labels":
        return [labels]
    # Long answers (DialogSum summaries): the per-token cost of the LoRA path dominates.
    summaries = Suite(name="bench-summaries", task="generation", dataset=str(ROOT / "data/dialogsum/test.jsonl"),
                      limit=n if name == "summaries" else max(1, n // 2), seed=1, models=["base", "dialogsum"],
                      metrics=["rougeL"], sampling=SamplingSpec(max_tokens=48))
    if name == "summaries":
        return [summaries]
    if name == "mixed":
        # Both in one run, as the main job mixes them: n label prompts per model, n/2 summaries.
        return [labels, summaries]
    if name == "overhead":
        return [Suite(name="bench-overhead", task="classification", dataset=str(ROOT / "data/banking77/test.jsonl"),
                      labels=str(ROOT / "data/banking77/labels.json"), limit=n, seed=2,
                      models=["base"], sampling=SamplingSpec(max_tokens=4))]
    raise SystemExit(f"unknown workload {name}")


def model_table() -> dict[str, Any]:
    from ftevals import ModelSpec

    table = {"base": ModelSpec("base")}
    for a in ADAPTERS:
        table[a] = ModelSpec(a, adapter=str(ROOT / "adapters" / a))
    return table


def run_ftevals(workload: str, n: int, strategy: str, cache_dir: str) -> dict[str, Any]:
    """ftevals in one run: prepare + execute, one vLLM engine per base (or per merged adapter)."""
    from ftevals.pipeline import RunConfig, execute, prepare

    started = time.monotonic()
    # STRATEGY is a strategy name or a JSON object of backend options ("{}": every default).
    options = json.loads(strategy) if strategy.startswith("{") else {"strategy": strategy}
    config = RunConfig(models=model_table(), backend="vllm", backend_options=options,
                       cache_dir=Path(cache_dir), resamples=1000)
    results = execute(prepare(workload_suites(workload, n), config), progress=lambda m: print(m, file=sys.stderr))
    wall = time.monotonic() - started
    return {
        "wall_s": wall,
        "timings": dict(results.run.timings),
        "backend_settings": dict(results.run.backend.settings) if results.run.backend else {},
        "usage": {suite.name: {m: u.to_dict() for m, u in suite.usage.items()} for suite in results.suites},
        # Keyed "suite/example id": the same request in every scenario (bare_vllm included).
        "outputs": {f"{suite.name}/{ex.id}": {m: o.text for m, o in ex.outputs.items()}
                    for suite in results.suites for ex in suite.examples},
        "scores": {suite.name: {m: {k: s.to_dict() for k, s in by.items()} for m, by in suite.scores.items()}
                   for suite in results.suites},
    }


def bare_vllm(workload: str, n: int) -> dict[str, Any]:
    """The same requests with vLLM alone, as a minimal script would send them: the engine's own
    tokenizer renders the chat template, one `generate` call, greedy, the suite's sampling.

    The messages come from ftevals' own preparation so that the requests are identical; that part
    is timed (`prep_s`) and left out of the comparison, which counts what a script using vLLM
    directly would pay: importing vLLM, starting the engine, rendering, generating, exiting."""
    started = time.monotonic()
    from ftevals.backends.vllm import VLLMSettings, _sampling_params, configure_cpu_environment, resolve_dtype
    from ftevals.generate import build_messages
    from ftevals.models import pull_default_model
    from ftevals.pipeline import RunConfig, prepare

    prepared = prepare(workload_suites(workload, n), RunConfig(models=model_table(), backend="vllm"))
    suite = prepared.suites[0]
    examples = suite.dataset.examples
    messages = [[m.to_dict() for m in build_messages(ex, suite.shots)] for ex in examples]
    base = pull_default_model()
    settings = VLLMSettings()
    configure_cpu_environment(settings)
    prep_s = time.monotonic() - started

    # Imported here, outside the engine's start-up, as ftevals imports it to load the tokenizer before
    # its engine starts; vLLM would import it in its start-up otherwise. Both runs' engine start-ups
    # then cover the same work, so the overhead can be judged without them (their noise is seconds).
    import importlib

    importlib.import_module("transformers.models.auto.tokenization_auto")  # what `from transformers import AutoTokenizer` loads

    t0 = time.monotonic()
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    llm = LLM(model=str(base.path), dtype=resolve_dtype(settings), max_model_len=settings.max_model_len,
              enforce_eager=True, seed=0)
    engine_start_s = time.monotonic() - t0
    t0 = time.monotonic()
    tok = llm.get_tokenizer()
    ids = [tok.encode(tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True), add_special_tokens=False)
           for m in messages]
    outputs = llm.generate([TokensPrompt(prompt_token_ids=i) for i in ids], _sampling_params(SamplingParams, suite.suite.sampling),
                           use_tqdm=False)
    generate_s = time.monotonic() - t0
    # As ftevals closes its engines (1 s to exit before the kill; vLLM's own default waits 5 s for
    # an engine core that does not exit in time here): the same exit on both sides.
    from ftevals.backends.vllm import ENGINE_SHUTDOWN_GRACE_S

    llm.llm_engine.engine_core.shutdown(timeout=ENGINE_SHUTDOWN_GRACE_S)
    return {"prep_s": prep_s, "engine_start_s": engine_start_s, "generate_s": generate_s,
            "outputs": {f"{suite.suite.name}/{ex.id}": {"base": out.outputs[0].text} for ex, out in zip(examples, outputs)}}


def run_engine_per_model(workload: str, n: int) -> dict[str, Any]:
    """The lm-evaluation-harness way: a fresh vLLM engine per model, with vLLM's default settings.

    lm-eval's vllm backend builds `vllm.LLM(model, ...)` once per invocation and passes an adapter
    as `lora_local_path` (enable_lora, one LoRARequest); it does not set enforce_eager, so an engine
    without LoRA compiles with torch inductor. Each model here runs in its own process, as
    separate lm-eval invocations do.
    """
    import subprocess

    suite = workload_suites(workload, n)[0]
    models = list(suite.models)
    per_model: dict[str, Any] = {}
    started = time.monotonic()
    for m in models:
        out = subprocess.run([sys.executable, "-m", "benchmarks.scenarios", "one-engine-model", workload, str(n), m],
                             capture_output=True, text=True, cwd=ROOT)
        if out.returncode != 0:
            raise SystemExit(f"engine-per-model run for {m} failed:\n{out.stderr[-3000:]}")
        per_model[m] = parse_result(out.stdout)
    return {"wall_s": time.monotonic() - started, "per_model": per_model}


def one_engine_model(workload: str, n: int, model: str) -> dict[str, Any]:
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt
    from vllm.lora.request import LoRARequest

    from ftevals.backends.vllm import configure_cpu_environment, load_tokenizer, render_chat, VLLMSettings
    from ftevals.data import load_dataset
    from ftevals.models import pull_default_model

    started = time.monotonic()
    configure_cpu_environment(VLLMSettings())
    suite = workload_suites(workload, n)[0]
    base = pull_default_model()
    tok = load_tokenizer(base.path)
    examples = load_dataset(suite.path(suite.dataset)).sample(n, seed=suite.seed).examples
    prompts = [TokensPrompt(prompt_token_ids=tok.encode(render_chat(tok, e.messages), add_special_tokens=False))
               for e in examples]
    lora = model != "base"
    kwargs: dict[str, Any] = {"model": str(base.path), "dtype": "float32", "max_model_len": 2048, "seed": 0}
    if lora:
        kwargs.update(enable_lora=True, max_loras=1, max_lora_rank=16)
    t0 = time.monotonic()
    llm = LLM(**kwargs)
    start_s = time.monotonic() - t0
    req = LoRARequest(model, 1, str(ROOT / "adapters" / model)) if lora else None
    t1 = time.monotonic()
    outs = llm.generate(prompts, SamplingParams(max_tokens=suite.sampling.max_tokens, temperature=0.0),
                        lora_request=req, use_tqdm=False)
    gen_s = time.monotonic() - t1
    return {"engine_start_s": start_s, "generate_s": gen_s, "wall_s": time.monotonic() - started,
            "tokens_out": sum(len(o.outputs[0].token_ids) for o in outs),
            "outputs": {e.id: o.outputs[0].text for e, o in zip(examples, outs)}}


def adapter_load() -> dict[str, Any]:
    """Time to load each adapter into a running LoRA engine: its first request minus a repeat."""
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt
    from vllm.lora.request import LoRARequest

    from ftevals.backends.vllm import VLLMSettings, configure_cpu_environment, load_tokenizer, render_chat
    from ftevals.data import load_dataset
    from ftevals.models import pull_default_model

    configure_cpu_environment(VLLMSettings())
    base = pull_default_model()
    tok = load_tokenizer(base.path)
    ex = load_dataset(ROOT / "data/banking77/test.jsonl").examples[0]
    prompt = TokensPrompt(prompt_token_ids=tok.encode(render_chat(tok, ex.messages), add_special_tokens=False))
    llm = LLM(model=str(base.path), dtype="float32", max_model_len=2048, enforce_eager=True, enable_lora=True,
              max_loras=len(ADAPTERS), max_lora_rank=16, seed=0)
    params = SamplingParams(max_tokens=1, temperature=0.0)
    llm.generate([prompt], params, use_tqdm=False)
    loads = {}
    for i, name in enumerate(ADAPTERS, start=1):
        req = LoRARequest(name, i, str(ROOT / "adapters" / name))
        t0 = time.monotonic()
        llm.generate([prompt], params, lora_request=req, use_tqdm=False)
        first = time.monotonic() - t0
        t0 = time.monotonic()
        llm.generate([prompt], params, lora_request=req, use_tqdm=False)
        again = time.monotonic() - t0
        loads[name] = {"first_s": first, "repeat_s": again, "load_s": first - again}
    return {"adapters": loads}


def matmul_peak(dtype: str, size: int = 2048, repeats: int = 5) -> dict[str, Any]:
    """The machine's measured matmul limit in `dtype`: best of `repeats` square products on every core."""
    import torch

    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    a = torch.randn(size, size).to(torch_dtype)
    b = torch.randn(size, size).to(torch_dtype)
    torch.matmul(a, b)  # warm-up: thread pool and kernel choice
    best = min(_timed(lambda: torch.matmul(a, b)) for _ in range(repeats))
    return {"dtype": dtype, "size": size, "threads": torch.get_num_threads(), "seconds": best,
            "gflops": 2 * size**3 / best / 1e9}


def _timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def roofline(n: int = 8, decode_tokens: int = 32) -> dict[str, Any]:
    """Prefill and decode tokens/s of the base model and of an adapter as a LoRA request, in the
    dtype ftevals picks here, and the FLOP/s they imply (2 x parameters per token) against the
    matmul peak measured in the same process. Merged adapters run on the base's weights: base figures."""
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt
    from vllm.lora.request import LoRARequest

    from ftevals.backends.vllm import VLLMSettings, configure_cpu_environment, load_tokenizer, render_chat, resolve_dtype
    from ftevals.data import load_dataset
    from ftevals.hardware import hardware_class
    from ftevals.models import pull_default_model

    settings = VLLMSettings()
    configure_cpu_environment(settings)
    dtype = resolve_dtype(settings)
    base = pull_default_model()
    tok = load_tokenizer(base.path)
    examples = load_dataset(ROOT / "data/dialogsum/test.jsonl").sample(n, seed=3).examples
    ids = [tok.encode(render_chat(tok, e.messages), add_special_tokens=False) for e in examples]
    prompts = [TokensPrompt(prompt_token_ids=i) for i in ids]
    # No prefix caching: each timed call must prefill its prompts itself, or the decode time (the full
    # call minus the prefill-only call) would lose the prefill the cache saved.
    llm = LLM(model=str(base.path), dtype=dtype, max_model_len=2048, enforce_eager=True, seed=0,
              enable_lora=True, max_loras=1, max_lora_rank=16, enable_prefix_caching=False)
    params_count, embedding_count = _parameter_count(base.path)
    out: dict[str, Any] = {"dtype": dtype, "hardware": hardware_class(), "prompts": n,
                           "prompt_tokens": sum(map(len, ids)), "decode_tokens_per_prompt": decode_tokens,
                           "parameters": params_count, "flops_per_token": 2 * params_count,
                           # vLLM computes logits for the last position of a prompt only: a prefill
                           # token passes every layer but not the (tied) output projection.
                           "flops_per_prefill_token": 2 * (params_count - embedding_count)}
    lora = LoRARequest("dialogsum", 1, str(ROOT / "adapters" / "dialogsum"))
    for name, req in (("base", None), ("adapter as a LoRA request", lora)):
        llm.generate(prompts[:2], SamplingParams(max_tokens=2, temperature=0.0), lora_request=req, use_tqdm=False)
        prefill = _timed(lambda: llm.generate(prompts, SamplingParams(max_tokens=1, temperature=0.0),
                                              lora_request=req, use_tqdm=False))
        full = _timed(lambda: llm.generate(prompts, SamplingParams(max_tokens=decode_tokens, temperature=0.0,
                                                                   ignore_eos=True), lora_request=req, use_tqdm=False))
        decode = full - prefill
        if decode <= 0:
            raise SystemExit(f"roofline: {name}: the full run ({full:.2f} s) took no longer than prefill alone "
                             f"({prefill:.2f} s); the decode time cannot be told apart")
        prefill_tps = out["prompt_tokens"] / prefill
        decode_tps = n * (decode_tokens - 1) / decode
        out[name] = {"prefill_s": prefill, "decode_s": decode, "prefill_tokens_per_s": prefill_tps,
                     "decode_tokens_per_s": decode_tps, "prefill_gflops": prefill_tps * out["flops_per_prefill_token"] / 1e9,
                     "decode_gflops": decode_tps * out["flops_per_token"] / 1e9}
    out["peak"] = matmul_peak(dtype if dtype in ("float32", "bfloat16") else "float32")
    return out


def _parameter_count(folder: Path) -> tuple[int, int]:
    """(parameters, of which the token embedding) in the weights file; a tied lm_head is stored once."""
    import math

    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        sizes = {k: math.prod(f.get_slice(k).get_shape()) for k in f.keys()}
    return sum(sizes.values()), sum(v for k, v in sizes.items() if "embed_tokens" in k)


def main() -> None:
    _env()
    name, *args = sys.argv[1:]
    if name == "ftevals":
        workload, n, strategy = args[0], int(args[1]), args[2]
        cache = args[3] if len(args) > 3 else tempfile.mkdtemp(prefix="ftevals-bench-cache-")
        result = run_ftevals(workload, n, strategy, cache)
    elif name == "bare-vllm":
        result = bare_vllm(args[0], int(args[1]))
    elif name == "engine-per-model":
        result = run_engine_per_model(args[0], int(args[1]))
    elif name == "adapter-load":
        result = adapter_load()
    elif name == "roofline":
        result = roofline()
    elif name == "one-engine-model":
        result = one_engine_model(args[0], int(args[1]), args[2])
    else:
        raise SystemExit(f"unknown scenario {name}")
    # vLLM may print after us (engine shutdown): mark our line so the parent can find it.
    print(RESULT_MARK + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
