"""How the vLLM backend serves an adapter: merged weights swapped into the running engine, a LoRA
request, or (when neither fits) merged weights in an engine of their own.

- **merged** (the default): the adapter's target matrices are merged into the base weights inside
  the running engine (vllm_swap_worker.py) and swapped back afterwards. No engine start per adapter,
  and generation at the base model's speed. Measured on a 2-core CPU (banking77 adapter, 32 prompts,
  float32): 0.5 s to swap, then 3.9 s to generate, against 21 s through vLLM's CPU LoRA path in the
  same engine; outputs equal to the LoRA path's on 32 of 32. An adapter the swap cannot apply
  (DoRA, saved full modules, embedding targets, a base without safetensors, a target the base's
  safetensors do not hold by that name and shape) is merged by PEFT into a model folder and served
  by an engine of its own. Before an engine that swaps generates anything, it checks that each
  adapter's merged weights map onto its served layers (vllm_swap_worker.ftevals_check_weights);
  one that does not is served as LoRA requests, or where vLLM has no LoRA for it, by an engine of
  its own (VLLMBackend._settle).
- **multi-lora**: every adapter a `LoRARequest` in the base model's engine.
- **auto**: decides per adapter from measurements of this run: when an adapter's turn comes, a
  few of its own requests, cut short, are generated both ways in one engine that can do both, and
  all its requests go the cheaper way (`decide_from_probe`). The decision and its inputs are recorded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelSpecError
from ..models import ResolvedModel
from ..offline import hub_offline

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: How many of an adapter's requests "auto" generates both ways before deciding, cut to how many
#: tokens: the per-token cost of each way is what differs, and a probe at full length through the
#: CPU LoRA path would cost more than the decision can save on a small suite.
PROBE_REQUESTS = 4
PROBE_TOKENS = 8
@dataclass(frozen=True)
class StrategyChoice:
    """How an adapter was served, and for "auto" the measurements behind the choice."""

    model: str
    strategy: str  # "multi-lora" | "merged"
    requests: int
    #: "swap" (merged weights swapped into the running engine), "engine" (an engine of its own)
    #: or "lora" (a LoRA request).
    served_by: str
    #: Why, in words: the setting, or the measured costs.
    reason: str
    #: "auto" only: seconds per request measured on the probe, each way, the swap's own cost,
    #: and the estimated cost of the whole workload each way.
    probe_requests: int = 0
    lora_s_per_request: float | None = None
    merged_s_per_request: float | None = None
    swap_s: float | None = None
    lora_cost_s: float | None = None
    merged_cost_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def decide_from_probe(model: str, requests: int, probed: int, *, lora_s: float, merged_s: float, swap_s: float,
                      request_s: float | None = None, swap_measured: bool = True) -> StrategyChoice:
    """Pick the cheaper way for all of an adapter's requests, from a probe of `probed` of them (cut to
    PROBE_TOKENS) generated in one engine call each way: as LoRA requests (`lora_s`) and on plain
    weights of the base's shapes (`merged_s`: merged weights run at that speed). `request_s` is what
    a full request costs on the plain weights (the base model's measured seconds per request in
    this run; without it, the probe's own plain time per request).

    The difference of the two calls is what LoRA adds per request; a call's fixed cost (scheduling,
    a few hundred milliseconds on a CPU, more than a short request) cancels out of it, where a
    ratio of two tiny calls would hide LoRA's cost. LoRA: requests x (request_s + added). Merged:
    two swaps (in, and out again before the next model) + requests x request_s. Ties go to
    multi-lora, which touches no weights.
    """
    per_request = request_s if request_s else merged_s / probed
    added = max(0.0, (lora_s - merged_s) / probed)
    lora_cost = requests * (per_request + added)
    merged_cost = 2 * swap_s + requests * per_request
    strategy = "merged" if merged_cost < lora_cost else "multi-lora"
    source = "the base's measured time per request" if request_s else "the probe's time per request"
    swap = f"a swap {swap_s:.2f} s" + ("" if swap_measured else " (estimated from the adapter's size)")
    reason = (f"measured on {probed} of its requests cut to {PROBE_TOKENS} tokens: LoRA {lora_s:.2f} s, plain "
              f"weights {merged_s:.2f} s, so LoRA adds {added:.3f} s a request; {swap}; with {source} "
              f"({per_request:.3f} s), estimated {lora_cost:.1f} s as LoRA vs {merged_cost:.1f} s merged for its "
              f"{requests} requests")
    return StrategyChoice(model, strategy, requests, "swap" if strategy == "merged" else "lora", reason, probed,
                          round(lora_s / probed, 4), round(merged_s / probed, 4), round(swap_s, 3), round(lora_cost, 2),
                          round(merged_cost, 2))


def swap_refusal(model: ResolvedModel) -> str | None:
    """Why this adapter's merged weights cannot be swapped into a running engine (None: they can).

    The swap computes W + scale * B @ A for plain LoRA matrices; anything else an adapter may hold
    needs PEFT's own merge (an engine of its own)."""
    a = model.adapter
    if a is None:
        return "not an adapter"
    try:
        config = json.loads((a.path / "adapter_config.json").read_text())
    except (OSError, ValueError) as exc:
        return f"its adapter_config.json cannot be read ({exc})"
    if str(config.get("peft_type", "LORA")).upper() != "LORA":
        return f"it is a {config.get('peft_type')} adapter, not LoRA"
    for key, what in (("use_dora", "DoRA"), ("modules_to_save", "saved full modules"), ("rank_pattern", "per-module ranks"),
                      ("alpha_pattern", "per-module alphas"), ("layer_replication", "layer replication")):
        if config.get(key):
            return f"it uses {what} ({key})"
    if str(config.get("bias", "none")) != "none" or config.get("lora_bias"):
        return "it trains biases"
    if not (a.path / "adapter_model.safetensors").is_file():
        return "its weights are not in adapter_model.safetensors"
    base = model.base.path
    if not ((base / "model.safetensors").is_file() or (base / "model.safetensors.index.json").is_file()):
        return f"the base model {base} has no safetensors weights"
    try:
        names = safetensors_names(a.path / "adapter_model.safetensors")
    except (OSError, ValueError) as exc:
        return f"its adapter_model.safetensors cannot be read ({exc})"
    odd = [k for k in names if not (k.endswith(".lora_A.weight") or k.endswith(".lora_B.weight"))]
    if odd:
        return f"it holds weights other than LoRA matrices ({odd[0]})"
    # The swap reads each target's base matrix by its name in the checkpoint: a checkpoint saved
    # under other names than the model's modules (transformers renames some on load) has no such
    # matrix, and PEFT's own merge works on the loaded modules instead.
    try:
        targets = adapter_target_shapes(a.path)
        shapes = tensor_shapes(base)
    except (OSError, ValueError, KeyError) as exc:
        return f"its target matrices cannot be matched with the base's safetensors ({exc})"
    for name, shape in sorted(targets.items()):
        if name not in shapes:
            return f"the base's safetensors hold no {name} for its LoRA on it"
        if tuple(shapes[name]) != shape:
            return f"its LoRA on {name} is {shape[0]}x{shape[1]}, the base's matrix {'x'.join(map(str, shapes[name]))}"
    return None


def adapter_target_shapes(adapter_dir: Path) -> dict[str, tuple[int, int]]:
    """HF weight name -> the (out, in) shape of the base matrix each LoRA pair changes, from the
    adapter's safetensors header and config alone (no tensor is read): B is (out, r), A (r, in);
    a fan_in_fan_out adapter (GPT-2's Conv1D) changes a matrix stored (in, out)."""
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    header = safetensors_header(adapter_dir / "adapter_model.safetensors")
    shapes: dict[str, tuple[int, int]] = {}
    for key, entry in header.items():
        if not key.endswith(".lora_A.weight"):
            continue
        b = header[key.replace(".lora_A.weight", ".lora_B.weight")]
        out, inp = int(b["shape"][0]), int(entry["shape"][-1])
        name = key.removeprefix("base_model.model.").replace(".lora_A.weight", ".weight")
        shapes[name] = (inp, out) if config.get("fan_in_fan_out") else (out, inp)
    return shapes


def tensor_shapes(folder: Path) -> dict[str, list[int]]:
    """Tensor name -> shape, for a model folder's safetensors (one file or shards), from the headers."""
    out: dict[str, list[int]] = {}
    for file in sorted(set(tensor_files(folder).values())):
        out.update({name: list(entry["shape"]) for name, entry in safetensors_header(file).items()})
    return out


def tensor_files(folder: Path) -> dict[str, Path]:
    """Tensor name -> the safetensors file holding it (one file, or a sharded index)."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return {name: folder / file for name, file in json.loads(index.read_text())["weight_map"].items()}
    single = folder / "model.safetensors"
    return {name: single for name in safetensors_names(single)}


def safetensors_header(path: Path) -> dict[str, Any]:
    """Tensor name -> {"dtype", "shape", "data_offsets"} of a safetensors file, from its header alone.

    The format starts with the header's length (8 bytes, little-endian) and the header, a JSON
    object of those entries (plus "__metadata__"). Reading it directly keeps torch out of a run
    that only needs to know which tensors exist (a warm re-run)."""
    with open(path, "rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        if not 2 <= size <= 100_000_000:
            raise ModelSpecError(f"{path} is not a safetensors file (header length {size}); re-save or re-download it")
        header = json.loads(fh.read(size))
    if not isinstance(header, dict):
        raise ModelSpecError(f"{path} is not a safetensors file (header is not a JSON object); re-save or "
                             "re-download it")
    return {name: entry for name, entry in header.items() if name != "__metadata__"}


def safetensors_names(path: Path) -> list[str]:
    """The tensor names in a safetensors file (its header)."""
    return list(safetensors_header(path))


#: Bytes of target weights a swap moves per second, for an estimate before the first swap of a run:
#: read from the checkpoint, B @ A added, loaded and re-packed. Measured 0.3-0.5 s for the 0.4 GB
#: the demo adapters target in the float32 SmolLM2-135M on 2 CPU cores; taken as a round 1 GB/s.
SWAP_BYTES_PER_S = 1e9
_DTYPE_BYTES = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "F8_E4M3": 1, "F8_E5M2": 1}


def estimate_swap_seconds(model: ResolvedModel) -> float:
    """A swap's cost before any was measured: the bytes of the base matrices the adapter targets
    (in x out per LoRA pair, at the checkpoint's dtype), at SWAP_BYTES_PER_S."""
    assert model.adapter is not None
    header = safetensors_header(model.adapter.path / "adapter_model.safetensors")
    elements = 0
    for key, entry in header.items():
        if key.endswith(".lora_A.weight"):
            b = header.get(key.replace(".lora_A.weight", ".lora_B.weight"))
            if b is not None:
                elements += int(entry["shape"][-1]) * int(b["shape"][0])
    files = tensor_files(model.base.path)
    first = next(iter(files.values()), None)
    dtype = next(iter(safetensors_header(first).values()))["dtype"] if first else "F32"
    return elements * _DTYPE_BYTES.get(str(dtype), 4) / SWAP_BYTES_PER_S


def read_tensors(files: dict[str, Path], names: list[str]) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    by_file: dict[Path, list[str]] = {}
    for name in names:
        by_file.setdefault(files[name], []).append(name)
    out: dict[str, torch.Tensor] = {}
    for file, wanted in by_file.items():
        with safe_open(str(file), framework="pt") as f:
            for name in wanted:
                out[name] = f.get_tensor(name)
    return out


def adapter_deltas(adapter_dir: Path) -> dict[str, torch.Tensor]:
    """HF weight name -> scale * B @ A (float32) for every matrix the adapter targets."""
    from safetensors.torch import load_file

    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    rank = int(config["r"])
    alpha = float(config.get("lora_alpha") or rank)
    scale = alpha / (rank ** 0.5) if config.get("use_rslora") else alpha / rank
    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
    deltas: dict[str, torch.Tensor] = {}
    for key, a in tensors.items():
        if not key.endswith(".lora_A.weight"):
            continue
        b = tensors[key.replace(".lora_A.weight", ".lora_B.weight")]
        name = key.removeprefix("base_model.model.").replace(".lora_A.weight", ".weight")
        delta = (b.float() @ a.float()) * scale
        deltas[name] = delta.T if config.get("fan_in_fan_out") else delta
    return deltas


def merged_model_dir(model: ResolvedModel) -> Path:
    from ..models import cache_dir

    assert model.adapter is not None
    key = hashlib.sha256(f"{model.base.fingerprint}\0{model.adapter.fingerprint}".encode()).hexdigest()[:24]
    return cache_dir() / "merged" / key


def merge_adapter(model: ResolvedModel) -> Path:
    """Merge a LoRA adapter into a copy of its base weights (PEFT merge_and_unload), cached on disk.

    Built in a temporary folder and renamed into place under a file lock, like the default model.
    """
    from filelock import FileLock

    from .templates import load_tokenizer

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


__all__ = ["PROBE_REQUESTS", "PROBE_TOKENS", "StrategyChoice", "adapter_deltas", "adapter_target_shapes",
           "decide_from_probe", "estimate_swap_seconds", "merge_adapter", "merged_model_dir", "read_tensors",
           "safetensors_header", "safetensors_names", "swap_refusal", "tensor_files", "tensor_shapes"]
