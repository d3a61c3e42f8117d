"""Render benchmarks/results.json as BENCHMARKS.md: ratios first (the goals), absolute times as context."""

from __future__ import annotations

from typing import Any


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f} s"


def _r(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def render_markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, no GPU; Python {m['python']}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".",
        f"Date: {m['date']}. Last command: `{res['command']}` (total {res.get('total_s', 0):.0f} s). "
        "Raw numbers: `benchmarks/results.json`.",
        "",
        "Which run measured each section (results.json keeps sections from earlier runs): "
        + "; ".join(f"{key} `{v['measured_by']['command']}` {v['measured_by']['date']} ({v['measured_by']['seconds']:.0f} s)"
                    for key, v in res.items() if isinstance(v, dict) and "measured_by" in v) + ".",
        "",
        "Each goal is judged on a ratio of runs made back to back in one invocation on one machine; absolute",
        "times are context. Every run is a fresh process (engine start-up included); memory is the peak RSS",
        "of its whole process tree (engine processes included).",
        "",
        "## Goals",
        "",
        "| # | goal | measured | result |",
        "|---|---|---|---|",
    ]
    rows: list[str] = []
    eng = res.get("engines")
    peer = res.get("peer")
    if peer:
        for name, row in peer["rows"].items():
            lm, ft = row["lmeval"], row["ftevals"]
            what = ("equal engine settings (" + ", ".join(f"{k}={v}" for k, v in lm["settings"].items()) + ")"
                    if name == "equal" else "each at its own defaults")
            goal = " at most 0.3x" if name == "equal" else ""
            verdict = _met(row["ratio"] <= 0.3) if name == "equal" else "context"
            rows.append(f"| 14.3 | ftevals vs lm-evaluation-harness {lm['version']} (base + 3 adapters, {peer['n']} BANKING77 "
                        f"prompts), {what}:{goal} | {_r(row['ratio'])} ({_s(ft['wall_s'])} vs {_s(lm['wall_s'])}); greedy "
                        f"answers equal {row['answers_equal']}/{row['answers']} | {verdict} |")
    workloads = [wl for wl in (eng or {}) if wl != "measured_by"]
    if eng:
        worst = 0.0
        parts = []
        for wl in workloads:
            runs = eng[wl]["runs"]
            best = min(runs["multi-lora"]["process_wall_s"], runs["merged"]["process_wall_s"])
            slower = runs["auto"]["process_wall_s"] / best - 1
            worst = max(worst, slower)
            parts.append(f"{wl}: auto {_s(runs['auto']['process_wall_s'])} vs best {_s(best)} ({100 * slower:+.1f}%)")
        rows.append(f"| 14.4 | strategy `auto` within 5% of the better of multi-lora and merged | "
                    f"{'; '.join(parts)} | {_met(worst <= 0.05)} |")
    mj = res.get("mainjob")
    if mj:
        cold, warm = mj["cold"], mj["warm"]
        rows.append(f"| 15.1 | main job (`pytest suites/`) cold: at most 7 minutes | {_s(cold['wall_s'])} "
                    f"({cold['outcome']}) | {_met(cold['wall_s'] <= 420)} |")
        rows.append(f"| 15.1 | main job warm (every generation cached): at most 1% of cold | {_pct(warm['wall_s'] / cold['wall_s'])} "
                    f"({_s(warm['wall_s'])}; {warm['outcome']}) | {_met(warm['wall_s'] <= 0.01 * cold['wall_s'])} |")
    ba = res.get("base_alone")
    if ba:
        rows.append(f"| 15.1 | main job cold: at most 1.3x the base model alone generating the same requests in one "
                    f"engine (`--only base-alone`) | {_r(ba['ratio'])} ({_s(ba['cold']['wall_s'])} vs "
                    f"{_s(ba['base_alone']['wall_s'])}) | {_met(ba['ratio'] <= 1.3)} |")
    ov = res.get("overhead")
    if ov:
        if "wall_to_wall_s" in ov:
            rows.append(f"| 15.2 | harness overhead at {ov['n']} examples: under 5% of generate time | {_pct(ov['ratio'])} "
                        f"(ftevals {_s(ov['wall_s'] - ov['engine_start_s'])} vs vLLM alone "
                        f"{_s(ov['bare_wall_s'] - ov['bare_engine_start_s'])} on the same requests, each without its "
                        f"engine start-up, mean of {ov['repeats']} pairs: {_s(ov['overhead_s'])} over "
                        f"{_s(ov['bare_generate_s'])} of generation) | {_met(ov['ratio'] < 0.05)} |")
        elif "bare_wall_s" in ov:
            rows.append(f"| 15.2 | harness overhead at {ov['n']} examples: under 5% of generate time | {_pct(ov['ratio'])} "
                        f"(ftevals {_s(ov['wall_s'])} vs vLLM alone {_s(ov['bare_wall_s'])} on the same requests: "
                        f"{_s(ov['overhead_s'])} over {_s(ov['bare_generate_s'])} of generation) | {_met(ov['ratio'] < 0.05)} |")
        else:
            rows.append(f"| 15.2 | harness overhead at {ov['n']} examples: under 5% of generate time | {_pct(ov['ratio'])} "
                        f"({_s(ov['overhead_s'])} over {_s(ov['generate_s'])} of generation) | {_met(ov['ratio'] < 0.05)} |")
    imp = res.get("import")
    if imp:
        rows.append(f"| 15.2 | `import ftevals.plugin`: under 0.3 s | {imp['median_s']:.3f} s (median of {imp['repeats']} fresh "
                    f"interpreters; {imp['min_s']:.3f}-{imp['max_s']:.3f} s) | {_met(imp['median_s'] < 0.3)} |")
    rf = res.get("roofline")
    if rf:
        base = rf["base"]
        rows.append(f"| 15.3 | against the hardware's limit (reported, no threshold) | base decode "
                    f"{_pct(base['decode_gflops'] / rf['peak']['gflops'])}, prefill {_pct(base['prefill_gflops'] / rf['peak']['gflops'])} "
                    f"of a {rf['peak']['gflops']:.0f} GFLOP/s {rf['peak']['dtype']} matmul peak | reported |")
    sc = res.get("scoring")
    if sc:
        rows.append(f"| 15.5 | ROUGE-1/2/L on {sc['pairs']:,} pairs: at least 20x a plain rouge-score loop, identical scores | "
                    f"{_r(sc['speedup'])} ({_s(sc['fast_s'])} vs {_s(sc['plain_s'])}), identical: {sc['identical']} | "
                    f"{_met(sc['speedup'] >= 20 and sc['identical'])} |")
    rep = {k: v for k, v in (res.get("report") or {}).items() if k != "measured_by"}
    if rep:
        biggest = max(r["bytes"] for r in rep.values())
        slowest = max(r["first_frame_ms"] for r in rep.values())
        rows.append(f"| 6a | HTML report, 1,000 examples x 4 models: under 5 MB, opens in Chromium in under 2 s | "
                    f"largest {biggest / 1e6:.2f} MB, slowest first frame {slowest / 1000:.2f} s | "
                    f"{_met(biggest < 5e6 and slowest < 2000)} |")
    run = res.get("default_run")
    if run:
        rows.append(f"| 15 | one `python -m benchmarks` run (the default sections): under 15 minutes | "
                    f"{run['seconds']:.0f} s ({run['date']}) | {_met(run['seconds'] < 900)} |")
    lines += rows
    if eng:
        lines += ["", "## Engines and strategies", ""]
        for wl in workloads:
            e = eng[wl]
            what = (f"{e['n']} BANKING77 prompts for the base and 3 adapters, {max(1, e['n'] // 2)} DialogSum prompts for "
                    "the base and its adapter, in one run" if wl == "mixed" else f"{e['n']} prompts per model")
            lines += [f"### {wl} workload ({what})", "",
                      "| run | wall | engine start | generate | merge | peak memory | outputs equal to multi-lora |",
                      "|---|---|---|---|---|---|---|"]
            for name, r in e["runs"].items():
                t = r.get("timings", {})
                start = t.get("engine_start_s")
                gen = t.get("backend_generate_s")
                lines.append(f"| {name} | {_s(r['process_wall_s'])} | {_s(start)} | {_s(gen)} | {_s(t.get('merge_s'))} | "
                             f"{r['peak_rss_gb']:.2f} GiB | {e['agreement'].get(name, '-')} |")
            auto = e["runs"]["auto"].get("timings", {}).get("strategy_choices", {})
            if auto:
                lines.append("")
                lines.append("`auto` chose: " + "; ".join(f"{k}: {v['strategy']} ({v['reason']})" for k, v in auto.items()))
            usage = e["runs"]["multi-lora"].get("usage", {})
            for suite, ml in (usage.items() if wl == "mixed" else [(wl, usage)]):
                base = ml.get("base")
                if base and base.get("tokens_per_s"):
                    per_adapter = [f"{k} {base['tokens_per_s'] / v['tokens_per_s']:.1f}x" for k, v in ml.items()
                                   if k != "base" and v.get("tokens_per_s")]
                    lines += ["", f"Adapter vs base in the same engine (multi-lora), time per generated token, {suite}: "
                              + ", ".join(per_adapter) + f" (base {base['tokens_per_s']:.0f} tokens/s)."]
            lines.append("")
    if eng and worst > 0.05:
        lines += ["Why `auto` misses its goal here: a run that may serve LoRA requests needs an engine started with "
                  "LoRA enabled, and on a CPU such an engine starts slower and serves requests without a LoRA more "
                  "slowly than the merged strategy's engine; and `auto` first measures both ways on 4 requests cut to "
                  "8 tokens per adapter, whose prefill through the CPU LoRA path is slow on long prompts. On a workload "
                  "this small those fixed costs are a large share of the run. On a CPU, use `merged` (the default); "
                  "`auto` is for machines where LoRA requests are cheap and swaps are not.", ""]
    if peer:
        lines += ["## The real lm-evaluation-harness beside ftevals", "",
                  f"`python -m benchmarks --only peer`: lm-eval installed into its own venv (benchmarks/peer.py), "
                  f"{peer['n']} BANKING77 test prompts, the same system prompt and chat template, greedy, "
                  f"{peer['max_tokens']} tokens; lm-eval run once per model (an adapter as `lora_local_path`), "
                  "ftevals once for all four.", "",
                  "| row | lm-eval settings | lm-eval wall (base, adapters) | ftevals settings | ftevals wall | ratio | answers equal |",
                  "|---|---|---|---|---|---|---|"]
        for name, row in peer["rows"].items():
            lm, ft = row["lmeval"], row["ftevals"]
            per = ", ".join(f"{v:.0f}" for v in lm["per_model_wall_s"].values())
            resolved = ft["settings"].get("resolved", {})
            ft_settings = ", ".join(f"{k}={resolved.get(k)}" for k in ("dtype", "enforce_eager", "strategy") if k in resolved)
            lines.append(f"| {name} | {lm['settings']} | {_s(lm['wall_s'])} ({per} s) | {ft_settings} | "
                         f"{_s(ft['wall_s'])} | {_r(row['ratio'])} | {row['answers_equal']}/{row['answers']} |")
        env = next(iter(peer["rows"].values()))["lmeval"].get("environment")
        if env:
            lines += ["", "Both tools ran with the same CPU engine environment (ftevals sets it for itself and the "
                      "benchmark passes it to lm-eval, which does not start without a KV-cache size on a shared "
                      "machine): " + ", ".join(f"`{k}={v}`" for k, v in env.items()) + ". lm-eval stops at its "
                      "default `until` (a blank line) and at the end-of-turn token; ftevals at the end-of-turn token."]
        lines.append("")
    if mj:
        t = mj["timings"]
        lines += ["## The main job", "",
                  f"`pytest suites/` in a fresh process with an empty generation cache (cold), then again (warm); "
                  f"{mj.get('hardware')}, backend settings {mj.get('backend_settings')}. Cold: {_s(mj['cold']['wall_s'])} "
                  f"({mj['cold']['outcome']}), of which engine start {_s(t.get('engine_start_s'))}, generation "
                  f"{_s(t.get('backend_generate_s'))}, merging {_s(t.get('merge_s'))}. Warm: {_s(mj['warm']['wall_s'])} "
                  f"({mj['warm']['outcome']}).", ""]
        if "memo" in mj:
            lines += [f"Memos of rendered prompts, validated datasets, contamination checks and stems (memo.py), {mj['memo']}; "
                      f"pytest arguments `{mj['pytest_args']}`; PYTHONDONTWRITEBYTECODE={mj['PYTHONDONTWRITEBYTECODE'] or 'unset'} "
                      "(set: no bytecode is cached, every module is compiled in every run).", ""]
    if ba:
        lines += ["## The main job against the base model alone", "",
                  f"`python -m benchmarks --only base-alone`: the main job cold ({_s(ba['cold']['wall_s'])}, "
                  f"{ba['cold']['outcome']}), then the same suites with every request, the adapters' included, served by the "
                  f"base model in one engine (`benchmarks/base_alone.py`; {_s(ba['base_alone']['wall_s'])}, "
                  f"{ba['base_alone']['outcome']}: its gates fail by design, the \"adapters\" answering like the base; "
                  "its wall time includes scoring them). Same requests, same "
                  "deduplication and sampling; the base writes its own answers, which for the adapters' requests are "
                  "often longer than the adapters' short labels, so the base alone can take longer than the real job.", ""]
    if rf:
        lines += ["## Against the hardware's limit", "",
                  f"{rf['hardware']}, {rf['dtype']}, eager; {rf['prompts']} DialogSum prompts ({rf['prompt_tokens']} prompt "
                  f"tokens), {rf['decode_tokens_per_prompt']} decoded tokens each; {rf['parameters'] / 1e6:.0f}M parameters, "
                  f"so {rf['flops_per_token'] / 1e9:.2f} GFLOP per decoded token and "
                  f"{rf.get('flops_per_prefill_token', rf['flops_per_token']) / 1e9:.2f} per prompt token (no output "
                  f"projection: logits are computed for a prompt's last position only; attention not counted). Matmul peak: {rf['peak']['gflops']:.0f} GFLOP/s "
                  f"({rf['peak']['size']}x{rf['peak']['size']} {rf['peak']['dtype']}, {rf['peak']['threads']} threads).", "",
                  "| path | prefill tok/s | prefill GFLOP/s | of peak | decode tok/s | decode GFLOP/s | of peak |",
                  "|---|---|---|---|---|---|---|"]
        for name in ("base", "adapter as a LoRA request"):
            x = rf[name]
            lines.append(f"| {name} | {x['prefill_tokens_per_s']:.0f} | {x['prefill_gflops']:.1f} | "
                         f"{_pct(x['prefill_gflops'] / rf['peak']['gflops'])} | {x['decode_tokens_per_s']:.0f} | "
                         f"{x['decode_gflops']:.1f} | {_pct(x['decode_gflops'] / rf['peak']['gflops'])} |")
        lines += ["", "An adapter served merged (the default) runs on the base's weights: its figures are the base's.",
                  "Why the rest is lost: a 135M-parameter model's matrices are small (576 wide), so each decode step is "
                  "a few small matrix-vector products per request; at this batch the step is dominated by vLLM's "
                  "per-step scheduling and Python overhead and by memory traffic, not by arithmetic. Prefill batches "
                  "whole prompts and comes closer to the matmul limit.", ""]
    if ov and "wall_to_wall_s" in ov:
        lines += ["## Harness overhead", "",
                  f"{ov['n']} BANKING77 examples, base model, 4 tokens each, every memo empty; {ov['repeats']} pairs of "
                  "fresh processes run alternately (means below). ftevals (`run_ftevals`): "
                  f"{_s(ov['wall_s'])}, of which engine start {_s(ov['engine_start_s'])} and generate "
                  f"{_s(ov['generate_s'])} in {ov.get('backend_calls')} engine calls. vLLM alone on the same requests "
                  f"(`bare_vllm`: import vLLM, start the engine, render with its tokenizer, one `generate` call, exit): "
                  f"{_s(ov['bare_wall_s'])}, of which engine start {_s(ov['bare_engine_start_s'])} and generate "
                  f"{_s(ov['bare_generate_s'])}; greedy outputs equal {ov['outputs_equal']} (vLLM on a CPU is not "
                  "batch invariant, and the two send the requests in different batches: ftevals a model's first 128, "
                  "then the rest, vLLM alone all at once; a few near-ties then round the other way).", "",
                  "| pair | ftevals wall | its engine start | its generate | vLLM alone wall | its engine start | its generate | overhead |",
                  "|---|---|---|---|---|---|---|---|"]
        for i, p in enumerate(ov.get("pairs", []), start=1):
            lines.append(f"| {i} | {_s(p['wall_s'])} | {_s(p['engine_start_s'])} | {_s(p['generate_s'])} | {_s(p['bare_wall_s'])} | "
                         f"{_s(p['bare_engine_start_s'])} | {_s(p['bare_generate_s'])} | {_s(p['overhead_s'])} |")
        lines += ["",
                  f"What ftevals adds: {_s(ov['overhead_s'])} ({_pct(ov['ratio'])} of generation), judged with each "
                  "side's engine start-up (importing vLLM and `LLM(...)`, the same code on both sides) left out, since "
                  "it varies by seconds from run to run; both sides import transformers outside it (ftevals to load "
                  "the tokenizer it renders with, vLLM alone just before its engine). Wall to wall, start-ups included: "
                  f"{_s(ov['wall_to_wall_s'])}. What ftevals does that vLLM alone does not: validating the dataset, "
                  "loading a tokenizer of its own before the engine exists (to build cache keys; vLLM then loads its "
                  "own), the generation cache, scoring with bootstrap confidence intervals (this scenario writes no "
                  f"results file or report). Peak memory {ov['peak_rss_gb']:.2f} GiB.", ""]
    elif ov and "bare_wall_s" in ov:
        lines += ["## Harness overhead", "",
                  f"{ov['n']} BANKING77 examples, base model, 4 tokens each, every memo empty. ftevals (`run_ftevals`, a "
                  f"fresh process): {_s(ov['wall_s'])}, of which engine start {_s(ov['engine_start_s'])} and generate "
                  f"{_s(ov['generate_s'])}. vLLM alone on the same requests (`bare_vllm`: import vLLM, start the engine, "
                  f"render with its tokenizer, one `generate` call, exit): {_s(ov['bare_wall_s'])}, of which engine start "
                  f"{_s(ov['bare_engine_start_s'])} and generate {_s(ov['bare_generate_s'])}; greedy outputs equal "
                  f"{ov['outputs_equal']}. What ftevals adds: {_s(ov['overhead_s'])} ({_pct(ov['ratio'])} of generation): "
                  "dataset validation, rendering and caching, scoring with bootstrap CIs, the results file, report. "
                  f"Counted inside the ftevals run alone (wall minus its engine start and generate), the rest is "
                  f"{_s(ov['within_run_overhead_s'])} ({_pct(ov['within_run_ratio'])}): that split also charges ftevals "
                  f"with importing transformers and shutting the engine down, which vLLM alone pays too. Peak memory "
                  f"{ov['peak_rss_gb']:.2f} GiB. What remains (not split further): validating the dataset, loading "
                  "the tokenizer before the engine exists (to build cache keys; vLLM then loads its own), "
                  "rendering and caching, the bootstrap confidence intervals, the results file and report.", ""]
    elif ov:
        lines += ["## Harness overhead", "",
                  f"{ov['n']} examples, base model: wall {_s(ov['wall_s'])} = engine start {_s(ov['engine_start_s'])} "
                  f"+ generate {_s(ov['generate_s'])} + everything else {_s(ov['overhead_s'])} (dataset loading and "
                  f"validation, prompt rendering, cache, scoring with bootstrap CIs, results); peak memory "
                  f"{ov['peak_rss_gb']:.2f} GiB.", ""]
    if rep:
        lines += ["## HTML report size and opening time", "",
                  "| suite (1,000 examples x 4 models) | size | render | Chromium load | first frame |",
                  "|---|---|---|---|---|"]
        for task, r in rep.items():
            lines.append(f"| {task} | {r['bytes'] / 1e6:.2f} MB | {_s(r['render_s'])} | {r['load_ms']:.0f} ms | "
                         f"{r['first_frame_ms']:.0f} ms |")
        lines.append("")
    if sc:
        lines += ["## Scoring", "",
                  f"ROUGE-1/2/L F-measure with stemming on {sc['pairs']:,} DialogSum pairs: ftevals "
                  f"{_s(sc['fast_s'])}, plain `rouge_score.RougeScorer` loop {_s(sc['plain_s'])}; "
                  f"`evaluate.load('rouge')`: {sc['evaluate']}.", "",
                  "Why not 20x: the goal asked for it only if the code stayed simple. A profile of the 10,000 pairs "
                  "puts ftevals at about 40-55 microseconds a pair, spread over tokenising both texts (lower-casing, "
                  "one regular expression, a dict lookup per word), counting uni- and bigrams with `Counter` and the "
                  "bit-parallel LCS; each is already a few calls into C. 20x needs about 21 microseconds a pair, so "
                  "every part would have to halve: in pure Python that means batching n-gram counting across pairs "
                  "with numpy (composite keys, sorts and segment sums) for perhaps a third off, and the rest only a "
                  "compiled extension gives (the Rust peer's 29x). Neither is simple; the scores stay exactly "
                  "rouge-score's.", ""]
    return "\n".join(lines) + "\n"


__all__ = ["render_markdown"]
