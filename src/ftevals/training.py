"""Train a LoRA adapter with PEFT on chat examples: the recipe behind the demo adapters.

Deliberately small and deterministic: a fixed seed, a seeded example order, no dropout, full-batch
steps on the CPU. The loss covers only the assistant answer (prompt tokens are masked), which is
what the evaluation asks of the model. The output folder is a normal PEFT adapter plus
`ftevals-adapter.json`, which records the fingerprint of (base weights, training data, recipe):
`train_lora` skips training when a folder with the same fingerprint already exists.

Why this ships: `ftevals models list` reads that record (`read_provenance`), and the recipe that
writes it defines what it means; `train_lora` itself runs only from scripts/train_demo_adapters.py and tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .data import Example, fingerprint_examples
from .errors import ConfigError
from .fsutil import atomic_write_text
from .models import DEFAULT_MODEL_ID, ModelFolder, read_manifest

PROVENANCE = "ftevals-adapter.json"
#: Bump when the training loop changes in a way that changes the weights it produces.
TRAINER_VERSION = 1


@dataclass(frozen=True)
class LoraRecipe:
    """Hyper-parameters of one adapter; all of them enter the adapter's fingerprint."""

    rank: int = 16
    alpha: int = 32
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    learning_rate: float = 1e-3
    steps: int = 100
    batch_size: int = 16
    max_seq_len: int = 384
    weight_decay: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rank < 1 or self.steps < 1 or self.batch_size < 1:
            raise ConfigError(f"rank, steps and batch_size must be >= 1 (got {self.rank}, {self.steps}, {self.batch_size})")
        object.__setattr__(self, "target_modules", tuple(self.target_modules))


def training_fingerprint(base: ModelFolder, examples: Sequence[Example], recipe: LoraRecipe) -> str:
    payload = {
        "base": base.fingerprint,
        "data": fingerprint_examples(examples),
        "recipe": asdict(recipe),
        "trainer_version": TRAINER_VERSION,
    }
    return "sha256:" + hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def read_provenance(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / PROVENANCE).read_text())
    except (OSError, ValueError):
        return None


def train_lora(
    base: ModelFolder,
    examples: Sequence[Example],
    recipe: LoraRecipe,
    out: Path,
    *,
    force: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train (or reuse) a LoRA adapter in `out`; return its provenance record."""
    out = Path(out)
    log = log or (lambda message: print(message, flush=True))
    fingerprint = training_fingerprint(base, examples, recipe)
    existing = read_provenance(out)
    if existing and existing.get("fingerprint") == fingerprint and not force:
        log(f"{out}: up to date (fingerprint {fingerprint[:19]}), not retrained")
        return existing

    from .offline import hub_offline

    hub_offline()
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(recipe.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    tokenizer = AutoTokenizer.from_pretrained(base.path)
    model = AutoModelForCausalLM.from_pretrained(base.path, torch_dtype=torch.float32)
    model.config.use_cache = False
    lora = LoraConfig(
        r=recipe.rank,
        lora_alpha=recipe.alpha,
        lora_dropout=0.0,
        target_modules=list(recipe.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    encoded = [_encode(tokenizer, ex, recipe.max_seq_len) for ex in examples]
    encoded = [e for e in encoded if e is not None]
    if not encoded:
        raise ConfigError("no training example fits in max_seq_len; raise it or shorten the examples")

    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=recipe.learning_rate, weight_decay=recipe.weight_decay
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / 10) * max(0.0, 1 - step / recipe.steps)
    )
    generator = torch.Generator().manual_seed(recipe.seed)
    order: list[int] = []
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model.train()
    started = time.monotonic()
    losses: list[float] = []
    for step in range(recipe.steps):
        if len(order) < recipe.batch_size:
            order += torch.randperm(len(encoded), generator=generator).tolist()
        batch = [encoded[i] for i in order[: recipe.batch_size]]
        del order[: recipe.batch_size]
        input_ids, labels, attention, keep = _collate(batch, pad_id)
        # Left padding puts every answer at the end of its row, so the LM head (a fifth of the
        # model's compute, 49k x 576) runs only on the last `keep` positions, not on the prompts.
        position_ids = (attention.cumsum(-1) - 1).clamp(min=0)
        logits = model(
            input_ids=input_ids, attention_mask=attention, position_ids=position_ids, logits_to_keep=keep
        ).logits
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, -keep + 1 :].reshape(-1), ignore_index=-100
        )
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 10 == 0 or step == recipe.steps - 1:
            log(f"  step {step + 1}/{recipe.steps} loss {loss.item():.3f} ({time.monotonic() - started:.0f} s)")

    model.peft_config["default"].base_model_name_or_path = _base_id(base)
    window = max(1, min(10, len(losses) // 4))
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent if out.parent.exists() else None))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        provenance = {
            "fingerprint": fingerprint,
            "base_fingerprint": base.fingerprint,
            "data_fingerprint": fingerprint_examples(examples),
            "n_examples": len(encoded),
            "recipe": asdict(recipe),
            "trainer_version": TRAINER_VERSION,
            "train_seconds": round(time.monotonic() - started, 1),
            # Averaged over a window a quarter of the run long (at most 10 steps), so that the
            # first and last windows do not overlap on short runs.
            "final_loss": round(sum(losses[-window:]) / window, 4),
            "first_loss": round(sum(losses[:window]) / window, 4),
        }
        atomic_write_text(tmp / PROVENANCE, json.dumps(provenance, indent=2, sort_keys=True) + "\n")
        # README.md written by PEFT is a template full of placeholders; it is not ours to ship.
        (tmp / "README.md").unlink(missing_ok=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
        os.chmod(out, 0o755)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"{out}: trained in {provenance['train_seconds']} s, loss {provenance['first_loss']} -> {provenance['final_loss']}")
    return provenance


def _base_id(base: ModelFolder) -> str:
    manifest = read_manifest(base.path)
    return str(manifest.get("model_id", DEFAULT_MODEL_ID)) if manifest else str(base.path)


def _encode(tokenizer: Any, ex: Example, max_len: int) -> tuple[list[int], list[int]] | None:
    prompt_ids = tokenizer.apply_chat_template(
        [m.to_dict() for m in ex.messages], add_generation_prompt=True, tokenize=True
    )
    if isinstance(prompt_ids, dict) or hasattr(prompt_ids, "keys"):
        prompt_ids = prompt_ids["input_ids"]
    prompt_ids = list(prompt_ids)
    answer_ids = tokenizer(ex.reference + (tokenizer.eos_token or ""), add_special_tokens=False)["input_ids"]
    ids = prompt_ids + list(answer_ids)
    if len(ids) > max_len:
        return None
    labels = [-100] * len(prompt_ids) + list(answer_ids)
    return ids, labels


def _collate(batch: Sequence[tuple[list[int], list[int]]], pad_id: int):  # type: ignore[no-untyped-def]
    import torch

    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (ids, labs) in enumerate(batch):
        input_ids[row, width - len(ids) :] = torch.tensor(ids)
        labels[row, width - len(labs) :] = torch.tensor(labs)
        attention[row, width - len(ids) :] = 1
    answer_len = max(sum(1 for t in labs if t != -100) for _, labs in batch)
    return input_ids, labels, attention, min(width, answer_len + 1)


__all__ = ["LoraRecipe", "read_provenance", "train_lora", "training_fingerprint"]
