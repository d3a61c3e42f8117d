"""Train the demo LoRA adapters on the embedded default model (SmolLM2-135M-Instruct).

    python scripts/train_demo_adapters.py [--only banking77] [--force] [--out adapters]

Each adapter is trained with PEFT on the project's own copies of public data (data/, see
data/README.md), with a fixed seed, and written to adapters/<name>/ with `ftevals-adapter.json`
recording the fingerprint of base weights + data + recipe. An adapter whose fingerprint is
unchanged is not retrained, so running this again is cheap. Each takes about 1-3 minutes on a
2-core CPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ftevals.data import load_dataset
from ftevals.models import pull_default_model
from ftevals.training import LoraRecipe, train_lora

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class DemoAdapter:
    name: str
    train_file: str
    #: How many training rows to draw (seeded); the rest of the file stays unused.
    n_train: int
    recipe: LoraRecipe
    purpose: str


DEMO_ADAPTERS = (
    DemoAdapter(
        "banking77",
        "data/banking77/train.jsonl",
        n_train=960,
        recipe=LoraRecipe(rank=16, alpha=32, learning_rate=3e-3, steps=60, batch_size=16, seed=0),
        purpose="BANKING77 intent classification: answer with the intent label",
    ),
    DemoAdapter(
        "dialogsum",
        "data/dialogsum/dev.jsonl",
        n_train=112,
        recipe=LoraRecipe(rank=16, alpha=32, learning_rate=1e-3, steps=14, batch_size=8, max_seq_len=512, seed=0),
        purpose="DialogSum dialogue summarisation",
    ),
    DemoAdapter(
        "restaurant8k",
        "data/restaurant8k/train.jsonl",
        n_train=320,
        recipe=LoraRecipe(rank=16, alpha=32, learning_rate=2e-3, steps=20, batch_size=16, seed=0),
        purpose="Restaurant-8k booking slots as a JSON object",
    ),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", help="train only this adapter (repeatable)")
    parser.add_argument("--force", action="store_true", help="retrain even when the fingerprint is unchanged")
    parser.add_argument("--out", type=Path, default=ROOT / "adapters")
    parser.add_argument("--steps", type=int, help="override the number of steps (quick experiments only)")
    args = parser.parse_args(argv)
    base = pull_default_model()
    for demo in DEMO_ADAPTERS:
        if args.only and demo.name not in args.only:
            continue
        dataset = load_dataset(ROOT / demo.train_file).sample(demo.n_train, seed=demo.recipe.seed)
        recipe = demo.recipe if args.steps is None else LoraRecipe(**{**demo.recipe.__dict__, "steps": args.steps})
        print(f"{demo.name}: {demo.purpose} ({len(dataset)} examples, {recipe.steps} steps)")
        started = time.monotonic()
        train_lora(base, dataset.examples, recipe, args.out / demo.name, force=args.force)
        print(f"{demo.name}: done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
