"""Runs inside vLLM's worker process: swap a LoRA adapter's merged weights into the running engine.

vLLM imports this module in its worker (the engine's `worker_extension_cls`) and ftevals calls
`ftevals_swap_weights` through `LLM.collective_rpc`. Serving an adapter merged this way costs a
merge of its target matrices (milliseconds to seconds) instead of a new engine (25-40 s on a CPU,
minutes for a large model on a GPU), and generates at the base model's speed, where vLLM's CPU LoRA
path costs 4-12x per token. The RL trainers that reload policy weights into vLLM do the same.

Only the matrices an adapter targets change: W' = W + scale * B @ A, read from the base model's
safetensors and the adapter's own file, computed in float32 and cast by vLLM's own weight loaders
(which also know how q/k/v land in a fused qkv_proj). Swapping back to the base reloads those
matrices from the base checkpoint, so the engine returns to bit-identical base weights.

Why this module patches vLLM at import: on the CPU, vLLM repacks each linear layer's weight for
oneDNN after loading and then drops the plain weight, so there is nothing left to load into. In an
engine started with this extension the plain weight is kept (memory: one more copy of the linear
weights) and the layer is repacked after each swap. On GPUs nothing is repacked.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from .vllm_strategy import adapter_deltas, read_tensors, tensor_files


def _keep_plain_cpu_weights() -> None:
    from vllm.model_executor.layers import utils

    original = utils.dispatch_cpu_unquantized_gemm
    if getattr(original, "_ftevals_keeps_weight", False):
        return

    def dispatch_keeping_weight(layer: torch.nn.Module, remove_weight: bool) -> None:
        original(layer, remove_weight=False)

    dispatch_keeping_weight._ftevals_keeps_weight = True  # type: ignore[attr-defined]
    utils.dispatch_cpu_unquantized_gemm = dispatch_keeping_weight


_keep_plain_cpu_weights()


class WeightSwap:
    """Mixed into vLLM's worker class; every method is reachable through `collective_rpc`."""

    _ftevals_swapped: set[str] | None = None

    def ftevals_swap_weights(self, base_dir: str, adapter_dir: str | None) -> dict[str, Any]:
        """Serve `adapter_dir` merged into the base weights (None: the base weights again)."""
        started = time.monotonic()
        base = Path(base_dir)
        files = tensor_files(base)
        previous = set(self._ftevals_swapped or ())
        deltas = adapter_deltas(Path(adapter_dir)) if adapter_dir else {}
        missing = sorted(set(deltas) - set(files))
        if missing:
            raise ValueError(f"the adapter targets weights the base model does not have: {missing[:3]}")
        names = sorted(previous | set(deltas))
        weights = read_tensors(files, names)
        for name, delta in deltas.items():
            weights[name] = weights[name].float() + delta  # vLLM's loader casts to the engine's dtype
        model = self.model_runner.get_model()  # type: ignore[attr-defined]
        for name, tensor in weights.items():
            self._ftevals_load(model, name, tensor)
        _repack(model, names)
        self._ftevals_swapped = set(deltas)
        reset = getattr(self, "reset_prefix_cache", None)
        if callable(reset):
            reset()
        return {"tensors": len(names), "seconds": round(time.monotonic() - started, 3)}

    @staticmethod
    def _ftevals_load(model: torch.nn.Module, name: str, tensor: torch.Tensor) -> None:
        try:
            model.load_weights([(name, tensor)])  # type: ignore[operator]
        except KeyError:
            # A LoRA-enabled engine wraps each linear layer: its weight lives at `<layer>.base_layer`.
            model.load_weights([(name.replace(".weight", ".base_layer.weight"), tensor)])  # type: ignore[operator]


def _repack(model: torch.nn.Module, hf_names: list[str]) -> None:
    """Re-run the CPU GEMM dispatch (weight prepacking) of every layer whose weights changed."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    from vllm.model_executor.layers import utils

    packed = getattr(model, "packed_modules_mapping", {}) or {}
    part_of = {part: fused for fused, parts in packed.items() for part in parts}
    modules = dict(model.named_modules())
    for name in hf_names:
        path, leaf = name.removesuffix(".weight").rsplit(".", 1)
        target = f"{path}.{part_of.get(leaf, leaf)}"
        layer = modules.get(target)
        if layer is None:
            raise ValueError(f"no layer {target} in the served model for weight {name}")
        layer = getattr(layer, "base_layer", layer)
        utils.dispatch_cpu_unquantized_gemm(layer, remove_weight=False)
