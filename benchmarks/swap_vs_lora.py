"""Merged weights swapped into a running engine against LoRA requests in it (BENCHMARKS.md, 2026-12-03).

    python benchmarks/swap_vs_lora.py plain|lora N_PROMPTS DTYPE

plain: an engine without LoRA (base, then banking77 swapped in, then swapped out); lora: LoRA enabled,
banking77 also as a LoRA request. Prints each timing and how many outputs agree.
"""
import json, os, sys, time
os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0"); os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "0-1"); os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
from pathlib import Path
BASE = str(Path.home()/".cache/ftevals/models/SmolLM2-135M-Instruct")
def main():
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(BASE)
    rows = [json.loads(l) for l in open("data/banking77/test.jsonl")][:int(sys.argv[2])]
    prompts = [tok.apply_chat_template(r["messages"][:-1], tokenize=False, add_generation_prompt=True) for r in rows]
    sp = SamplingParams(max_tokens=16, temperature=0)
    lora = sys.argv[1] == "lora"
    kw = dict(enable_lora=True, max_loras=3, max_lora_rank=16) if lora else {}
    t = time.monotonic()
    llm = LLM(model=BASE, dtype=sys.argv[3], enforce_eager=True, seed=0, max_model_len=2048,
              worker_extension_cls="ftevals.backends.vllm_swap_worker.WeightSwap", **kw)
    print("start", time.monotonic()-t, flush=True)
    def gen(**k):
        t = time.monotonic(); o = llm.generate(prompts, sp, use_tqdm=False, **k); dt = time.monotonic()-t
        return [x.outputs[0].text for x in o], dt
    base, dt = gen(); print("base", round(dt,2))
    if lora:
        lo, dt = gen(lora_request=LoRARequest("b", 1, "adapters/banking77")); print("lora", round(dt,2), "differs from base", sum(a!=b for a,b in zip(lo,base)))
    r = llm.collective_rpc("ftevals_swap_weights", args=(BASE, "adapters/banking77")); print("swap", r)
    mg, dt = gen(); print("merged", round(dt,2), "differs from base", sum(a!=b for a,b in zip(mg,base)))
    if lora: print("merged==lora", sum(a==b for a,b in zip(mg,lo)), "of", len(lo))
    r = llm.collective_rpc("ftevals_swap_weights", args=(BASE, None)); print("restore", r)
    b2, dt = gen(); print("base again", round(dt,2), "equal", sum(a==b for a,b in zip(b2,base)), "of", len(base))
    
if __name__ == "__main__":
    main()
