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
        f"Date: {m['date']}. Command: `{res['command']}` (total {res.get('total_s', 0):.0f} s). "
        "Raw numbers: `benchmarks/results.json`.",
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
    if eng:
        lab = eng["labels"]["runs"]
        one, per, warm = lab["auto"], lab["engine-per-model"], lab["auto-warm"]
        ratio = one["process_wall_s"] / per["process_wall_s"]
        rows.append(f"| 1 | one ftevals run (base + 3 adapters) vs a fresh engine per model: at most 0.5x | "
                    f"{_r(ratio)} ({_s(one['process_wall_s'])} vs {_s(per['process_wall_s'])}) | {_met(ratio <= 0.5)} |")
        wratio = warm["process_wall_s"] / one["process_wall_s"]
        calls = warm["timings"]["backend_calls"]
        rows.append(f"| 2 | warm re-run from the cache: under 5% of the cold run, zero generation calls | "
                    f"{_pct(wratio)} ({_s(warm['process_wall_s'])} vs {_s(one['process_wall_s'])}), "
                    f"{calls} generation calls, engine start {_s(warm['timings']['engine_start_s'])} | "
                    f"{_met(wratio < 0.05 and calls == 0)} |")
    ov = res.get("overhead")
    if ov:
        rows.append(f"| 3 | harness overhead at {ov['n']} examples: under 5% of generate time | {_pct(ov['ratio'])} "
                    f"({_s(ov['overhead_s'])} over {_s(ov['generate_s'])} of generation) | {_met(ov['ratio'] < 0.05)} |")
    sc = res.get("scoring")
    if sc:
        rows.append(f"| 4 | ROUGE-1/2/L on {sc['pairs']:,} pairs: at least 5x a plain rouge-score loop, identical scores | "
                    f"{_r(sc['speedup'])} ({_s(sc['fast_s'])} vs {_s(sc['plain_s'])}), identical: {sc['identical']} | "
                    f"{_met(sc['speedup'] >= 5 and sc['identical'])} |")
    rep = res.get("report")
    if rep:
        biggest = max(r["bytes"] for r in rep.values())
        slowest = max(r["first_frame_ms"] for r in rep.values())
        rows.append(f"| 6a | HTML report, 1,000 examples x 4 models: under 5 MB, opens in Chromium in under 2 s | "
                    f"largest {biggest / 1e6:.2f} MB, slowest first frame {slowest / 1000:.2f} s | "
                    f"{_met(biggest < 5e6 and slowest < 2000)} |")
    if eng:
        worst = 0.0
        parts = []
        for wl in ("labels", "summaries"):
            runs = eng[wl]["runs"]
            best = min(runs["multi-lora"]["process_wall_s"], runs["merged"]["process_wall_s"])
            slower = runs["auto"]["process_wall_s"] / best - 1
            worst = max(worst, slower)
            parts.append(f"{wl}: auto {_s(runs['auto']['process_wall_s'])} vs best {_s(best)} ({100 * slower:+.1f}%)")
        rows.append(f"| 5 | strategy `auto` never more than 10% slower than the better of multi-lora and merged | "
                    f"{'; '.join(parts)} | {_met(worst <= 0.10)} |")
    lines += rows
    if eng:
        lines += ["", "## Engines and strategies", ""]
        for wl in ("labels", "summaries"):
            e = eng[wl]
            lines += [f"### {wl} workload ({e['n']} prompts per model)", "",
                      "| run | wall | engine start | generate | merge | peak memory | outputs equal to multi-lora |",
                      "|---|---|---|---|---|---|---|"]
            for name, r in e["runs"].items():
                t = r.get("timings", {})
                start = t.get("engine_start_s")
                gen = t.get("backend_generate_s")
                if name == "engine-per-model":
                    start = sum(x["engine_start_s"] for x in r["per_model"].values())
                    gen = sum(x["generate_s"] for x in r["per_model"].values())
                lines.append(f"| {name} | {_s(r['process_wall_s'])} | {_s(start)} | {_s(gen)} | {_s(t.get('merge_s'))} | "
                             f"{r['peak_rss_gb']:.2f} GiB | {e['agreement'].get(name, '-')} |")
            auto = e["runs"]["auto"].get("timings", {}).get("strategy_choices", {})
            if auto:
                lines.append("")
                lines.append("`auto` chose: " + "; ".join(f"{k}: {v['strategy']} ({v['reason']})" for k, v in auto.items()))
            ml = e["runs"]["multi-lora"].get("usage", {})
            base = ml.get("base")
            if base and base.get("tokens_per_s"):
                per_adapter = [f"{k} {base['tokens_per_s'] / v['tokens_per_s']:.1f}x" for k, v in ml.items()
                               if k != "base" and v.get("tokens_per_s")]
                lines += ["", f"Adapter vs base in the same engine (multi-lora), time per generated token: "
                          + ", ".join(per_adapter) + f" (base {base['tokens_per_s']:.0f} tokens/s)."]
            lines.append("")
        load = eng.get("adapter_load", {}).get("adapters", {})
        if load:
            lines += ["Adapter load time in a running engine (first request minus a repeat of it): "
                      + ", ".join(f"{k} {1000 * v['load_s']:.0f} ms" for k, v in load.items()) + ".", ""]
    if ov:
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
                  f"`evaluate.load('rouge')`: {sc['evaluate']}.", ""]
    return "\n".join(lines) + "\n"


__all__ = ["render_markdown"]
