"""Broken model and adapter folders for the bad-input tests, built in a temporary folder.

Each starts from something real: the committed banking77 LoRA adapter (rank 16 on q/k/v/o of
SmolLM2-135M-Instruct) or the embedded model folder, and breaks exactly one thing.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

ROOT = Path(__file__).resolve().parents[2]
GOOD_ADAPTER = ROOT / "adapters" / "banking77"
#: SmolLM2-135M: hidden size 576; q_proj is 576 -> 576.
HIDDEN = 576


def copy_adapter(dest: Path) -> Path:
    shutil.copytree(GOOD_ADAPTER, dest)
    return dest


def edit_config(folder: Path, **changes: Any) -> Path:
    path = folder / "adapter_config.json"
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps(cfg, indent=2))
    return folder


def lora_adapter(dest: Path, *, rank: int, in_features: int = HIDDEN, out_features: int = HIDDEN,
                 module: str = "q_proj") -> Path:
    """A one-module LoRA adapter (layer 0 only) with the given shapes, config from the good adapter."""
    copy_adapter(dest)
    prefix = f"base_model.model.model.layers.0.self_attn.{module}"
    tensors = {
        f"{prefix}.lora_A.weight": np.zeros((rank, in_features), dtype=np.float16),
        f"{prefix}.lora_B.weight": np.zeros((out_features, rank), dtype=np.float16),
    }
    save_file(tensors, str(dest / "adapter_model.safetensors"), metadata={"format": "pt"})
    return edit_config(dest, r=rank, lora_alpha=rank, target_modules=[module])


def truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def model_without_chat_template(default_model: Path, dest: Path) -> Path:
    """The embedded model's small files copied, its weights linked, and its chat template removed."""
    dest.mkdir()
    for f in default_model.iterdir():
        if f.name in ("chat_template.jinja", "ftevals-model.json"):
            continue
        if f.suffix == ".safetensors":
            (dest / f.name).symlink_to(f)
        else:
            shutil.copy(f, dest / f.name)
    cfg_path = dest / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("chat_template", None)
    cfg_path.write_text(json.dumps(cfg))
    return dest
