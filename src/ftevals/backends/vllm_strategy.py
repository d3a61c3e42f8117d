"""How the vLLM backend serves an adapter: merged weights swapped into the running engine, a LoRA
request, or (when neither fits) merged weights in an engine of their own.

- **merged** (the default): the adapter's target matrices are merged into the base weights inside
  the running engine (vllm_swap_worker.py) and swapped back afterwards. No engine start per adapter,
  and generation at the base model's speed. Measured on a 2-core CPU (banking77 adapter, 32 prompts,
  float32): 0.5 s to swap, then 3.9 s to generate, against 21 s through vLLM's CPU LoRA path in the
  same engine; outputs equal to the LoRA path's on 32 of 32. An adapter the swap cannot apply
  (DoRA, saved full modules, embedding targets, a base without safetensors) is merged by PEFT into
  a model folder and served by an engine of its own.
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

from ..models import ResolvedModel
from ..offline import hub_offline

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: How many of an adapter's requests "auto" generates both ways before deciding, cut to how many
#: tokens: the per-token cost of each way is what differs, and a probe at full length through the
#: CPU LoRA path would cost more than the decision can save on a small suite.
PROBE_REQUESTS = 4
PROBE_TOKENS = 8
#: After one request each way, the decision stands when one way's estimated cost is at least this
#: many times the other's (a single request's timing is noisy; a clear verdict is not): the probe's
#: own cost (the LoRA path is several times slower on a CPU) is most of what "auto" costs.
PROBE_CLEAR_RATIO = 2.0


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
                      request_s: float | None = None) -> StrategyChoice:
    """Pick the cheaper way for all of an adapter's requests, from a probe of `probed` of them (cut to
    PROBE_TOKENS) generated both ways in one engine, and what a full request costs on the plain
    weights (`request_s`: the base model's measured seconds per request in this run; without it,
    the probe's own merged time per request, a lower bound that favours LoRA).

    LoRA: requests x request_s x (lora_s / merged_s). Merged: two swaps (in, and out again before
    the next model) + requests x request_s. Ties go to multi-lora, which touches no weights.
    """
    per_request = request_s if request_s else merged_s / probed
    ratio = lora_s / merged_s if merged_s > 0 else 1.0
    lora_cost = requests * per_request * ratio
    merged_cost = 2 * swap_s + requests * per_request
    strategy = "merged" if merged_cost < lora_cost else "multi-lora"
    source = "the base's measured time per request" if request_s else "the probe's time per request"
    reason = (f"measured on {probed} of its requests cut to {PROBE_TOKENS} tokens: LoRA {lora_s:.2f} s, merged "
              f"{merged_s:.2f} s ({ratio:.1f}x), swap {swap_s:.2f} s; with {source} ({per_request:.3f} s), "
              f"estimated {lora_cost:.1f} s as LoRA vs {merged_cost:.1f} s merged for its {requests} requests")
    return StrategyChoice(model, strategy, requests, "swap" if strategy == "merged" else "lora", reason, probed,
                          round(lora_s / probed, 4), round(merged_s / probed, 4), round(swap_s, 3), round(lora_cost, 2),
                          round(merged_cost, 2))


def probe_is_clear(choice: StrategyChoice) -> bool:
    """Whether one way's estimated cost is at least PROBE_CLEAR_RATIO times the other's."""
    low, high = sorted((choice.lora_cost_s or 0.0, choice.merged_cost_s or 0.0))
    return high >= PROBE_CLEAR_RATIO * low if low > 0 else high > 0


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
    return None


def tensor_files(folder: Path) -> dict[str, Path]:
    """Tensor name -> the safetensors file holding it (one file, or a sharded index)."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return {name: folder / file for name, file in json.loads(index.read_text())["weight_map"].items()}
    single = folder / "model.safetensors"
    return {name: single for name in safetensors_names(single)}


def safetensors_names(path: Path) -> list[str]:
    """The tensor names in a safetensors file, read from its header alone.

    The format starts with the header's length (8 bytes, little-endian) and the header, a JSON
    object of tensor name -> dtype, shape, offsets (plus "__metadata__"). Reading it directly
    keeps torch out of a run that only needs to know which tensors exist (a warm re-run)."""
    with open(path, "rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        if not 2 <= size <= 100_000_000:
            raise ValueError(f"{path} is not a safetensors file (header length {size})")
        header = json.loads(fh.read(size))
    if not isinstance(header, dict):
        raise ValueError(f"{path} is not a safetensors file (header is not a JSON object)")
    return [name for name in header if name != "__metadata__"]


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


__all__ = ["PROBE_CLEAR_RATIO", "PROBE_REQUESTS", "PROBE_TOKENS", "StrategyChoice", "adapter_deltas", "decide_from_probe", "merge_adapter", "merged_model_dir", "probe_is_clear", "read_tensors", "safetensors_names", "swap_refusal", "tensor_files"]
