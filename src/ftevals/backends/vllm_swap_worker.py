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

Which served layers a weight lands in is what vLLM's loader says it wrote (`load_weights` returns
the served parameter names), never a guess from the HF name: vLLM packs q/k/v into qkv_proj,
re-orders Falcon's and Bloom's fused query_key_value, serves GPT-NeoX (through its Transformers
backend) as model.layers.N rather than gpt_neox.layers.N, and wraps each layer of a LoRA engine.
`ftevals_check_weights` runs that mapping as a dry check right after the engine starts, before it
generates, loading the base's own values: an adapter whose weights do not map is served another
way (vllm.py) instead of failing mid-run.

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

from .vllm_strategy import adapter_deltas, adapter_target_shapes, read_tensors, tensor_files


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


#: The layer types whose weights a swap can replace (and plain torch Linear layers): vLLM uses
#: their weight as loaded (on the CPU, after the GEMM dispatch the swap re-runs). Other methods
#: (quantized ones) transform the loaded weight after loading, which a swap does not redo.
_PLAIN_METHODS = ("UnquantizedLinearMethod", "UnquantizedEmbeddingMethod")


class WeightSwap:
    """Mixed into vLLM's worker class; every method is reachable through `collective_rpc`."""

    _ftevals_swapped: set[str] | None = None
    #: HF weight name -> the served layers vLLM's loader put it into, learnt from the loader itself
    #: (its served names differ from HF's: q/k/v packed into one qkv_proj, GPT-NeoX's
    #: gpt_neox.layers.N served as model.layers.N, a LoRA engine's `.base_layer`).
    _ftevals_layers: dict[str, list[str]] | None = None
    #: The served model's parameters and modules by name.
    _ftevals_index: tuple[dict[str, torch.nn.Parameter], dict[str, torch.nn.Module]] | None = None

    def ftevals_check_weights(self, base_dir: str, adapters: dict[str, str]) -> dict[str, dict[str, Any]]:
        """A dry run of the swap's mapping, before the engine generates: adapter name ->
        {"problem": why its merged weights cannot be swapped in, or None; "unplaced": the weights
        it targets that this worker's loader put nowhere}.

        Every weight an adapter targets is loaded through the loader the swap uses, with the base's
        own values, which the engine already holds (so nothing changes); each must land in a served
        parameter of a plain linear layer with the matrix's input or output width, and vLLM's
        loader reorders and packs it there exactly as when the engine loaded the checkpoint (q/k/v
        into qkv_proj at their offsets, Falcon's and Bloom's head-interleaved query_key_value).
        A weight placed nowhere may live on another pipeline stage: the caller decides over all
        workers."""
        model = self.model_runner.get_model()  # type: ignore[attr-defined]
        files = tensor_files(Path(base_dir))
        method = _quantization(self)
        targets = {name: adapter_target_shapes(Path(folder)) for name, folder in adapters.items()}
        names = sorted({w for shapes in targets.values() for w in shapes if w in files})
        weights = read_tensors(files, names) if method is None else {}
        found: dict[str, str | None] = {}
        for name in names:
            if method is not None:
                found[name] = f"the served model is quantized ({method}), so its weights are not the checkpoint's"
                continue
            try:
                found[name] = self._ftevals_place(model, name, weights[name])
            except Exception as exc:  # vLLM's loaders raise KeyError, ValueError, AssertionError...
                found[name] = f"vLLM's loader rejects {name} ({type(exc).__name__}: {_short(exc)})"
        out: dict[str, dict[str, Any]] = {}
        for adapter, shapes in targets.items():
            missing = sorted(set(shapes) - set(files))
            problem = f"the base's safetensors hold no {missing[0]}" if missing else None
            problem = problem or next((found[w] for w in sorted(shapes) if found.get(w)), None)
            unplaced = sorted(w for w in shapes if w in files and not (self._ftevals_layers or {}).get(w))
            out[adapter] = {"problem": problem, "unplaced": unplaced}
        return out

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
        layers: set[str] = set()
        for name, tensor in weights.items():
            problem = self._ftevals_place(model, name, tensor)
            if problem:  # ftevals_check_weights refused such an adapter before the engine generated
                raise ValueError(problem)
            layers.update((self._ftevals_layers or {}).get(name, ()))
        _repack(model, sorted(layers))
        self._ftevals_swapped = set(deltas)
        reset = getattr(self, "reset_prefix_cache", None)
        if callable(reset):
            reset()
        return {"tensors": len(names), "layers": len(layers), "seconds": round(time.monotonic() - started, 3)}

    def _ftevals_place(self, model: torch.nn.Module, name: str, tensor: torch.Tensor) -> str | None:
        """Load one HF weight through vLLM's loader and remember the served layers it went into;
        returns why those layers cannot take a swapped weight (None: they can, or it went nowhere
        on this worker)."""
        served = self._ftevals_load(model, name, tensor)
        if served is None:
            return f"vLLM's loader for {type(model).__name__} does not say where it put {name}"
        if self._ftevals_index is None:  # the served layers are fixed once the engine has loaded
            self._ftevals_index = (dict(model.named_parameters(remove_duplicate=False)),
                                   dict(model.named_modules(remove_duplicate=False)))
        params, modules = self._ftevals_index
        layers: list[str] = []
        for param_name in sorted(served):
            path, leaf = param_name.rsplit(".", 1)
            layer = modules.get(path)
            if layer is not None and isinstance(getattr(layer, "base_layer", None), torch.nn.Module):
                # A LoRA engine's wrapper loads into the layer it wraps, and answers with its own name.
                path, layer = f"{path}.base_layer", layer.base_layer
            param = params.get(f"{path}.{leaf}")
            if param is None or layer is None:
                return f"{name} loads into {param_name}, which is no layer's parameter in the served model"
            # The served matrix keeps the input or the output width (the other may be packed with
            # more, or split across tensor-parallel ranks), or both transposed (GPT-2's Conv1D).
            shape, served_shape = tuple(tensor.shape), tuple(param.shape)
            if param.dim() != 2 or len(shape) != 2 or not (
                    served_shape[0] == shape[0] or served_shape[1] == shape[1]
                    or served_shape[0] == shape[1] or served_shape[1] == shape[0]):
                return (f"{name} ({'x'.join(map(str, shape))}) loads into {param_name} "
                        f"({'x'.join(map(str, param.shape))}), of neither its input nor its output width")
            method = type(getattr(layer, "quant_method", None)).__name__
            if method not in _PLAIN_METHODS and type(layer) is not torch.nn.Linear:
                return f"{name} loads into {path}, which vLLM computes with {method}, not with the weight as loaded"
            layers.append(path)
        layers_of = self._ftevals_layers = self._ftevals_layers or {}
        layers_of[name] = layers
        return None

    @staticmethod
    def _ftevals_load(model: torch.nn.Module, name: str, tensor: torch.Tensor) -> set[str] | None:
        """The served parameters vLLM's loader wrote `tensor` into (None: the loader does not say).

        vLLM's model loader requires `load_weights` to return them (it checks that every
        parameter was loaded), and maps the HF name to served ones exactly as at engine start."""
        try:
            loaded = model.load_weights([(name, tensor)])  # type: ignore[operator]
        except (KeyError, ValueError) as first:
            # A LoRA-enabled engine wraps each linear layer, and some models' loaders (Llama's)
            # look the weight up by name: it lives at `<layer>.base_layer` there.
            try:
                wrapped = name.replace(".weight", ".base_layer.weight")
                loaded = model.load_weights([(wrapped, tensor)])  # type: ignore[operator]
            except (KeyError, ValueError):
                raise first from None  # the error about the weight's own name says what is wrong
        return None if loaded is None else set(loaded)


def _quantization(worker: Any) -> str | None:
    """The engine's quantization method, or None for plain weights."""
    config = getattr(worker, "vllm_config", None)
    quant = getattr(config, "quant_config", None)
    if quant is None:
        return None
    name = getattr(quant, "get_name", None)
    return str(name()) if callable(name) else type(quant).__name__


def _short(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _repack(model: torch.nn.Module, layers: list[str]) -> None:
    """Re-run the CPU GEMM dispatch (weight prepacking) of every served layer whose weights changed."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    from vllm.model_executor.layers import utils

    modules = dict(model.named_modules(remove_duplicate=False))
    for path in layers:
        layer = modules[path]
        # Only layers vLLM dispatched at load compute from a packed copy; a plain torch Linear
        # reads its weight directly.
        if hasattr(layer, "cpu_linear"):
            utils.dispatch_cpu_unquantized_gemm(layer, remove_weight=False)
