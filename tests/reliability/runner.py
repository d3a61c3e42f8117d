"""One evaluation run in its own process, for the fault tests: BANKING77 from data/, two models, the
replay backend slowed by `delay_s` per request, a small chunk size.

    python runner.py PREDICTIONS CACHE_DIR OUT.json [--limit N] [--chunk N] [--delay S] [--go FILE]

It prints `ready` once imports are done, waits for FILE to exist when --go is given (so that two
runs can be started at the same moment), prints `start <unix time>`, runs, writes the results to
OUT.json and prints `end <unix time>`. Also importable: `write_predictions` and `run` serve the
tests' in-process runs, so every run here is the same run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from ftevals.data import load_dataset
from ftevals.fsutil import atomic_write_text
from ftevals.pipeline import RunConfig, execute, prepare
from ftevals.specs import ModelSpec
from ftevals.suite import Suite

ROOT = Path(__file__).resolve().parents[2]
DATASET = ROOT / "data" / "banking77" / "test.jsonl"
LABELS = ROOT / "data" / "banking77" / "labels.json"
MODELS = {"base": ModelSpec("base"), "banking77": ModelSpec("banking77", adapter="adapters/banking77")}


def write_predictions(path: Path) -> Path:
    """A prediction for every model and row: the adapter mostly right, the base mostly wrong."""
    rows = []
    for ex in load_dataset(DATASET):
        for model, p_right in (("base", 0.2), ("banking77", 0.8)):
            u = int(hashlib.sha256(f"{model}:{ex.id}".encode()).hexdigest()[:8], 16) / 16**8
            rows.append({"model": model, "id": ex.id, "text": ex.reference if u < p_right else "card_arrival",
                         "tokens_in": 60, "tokens_out": 4})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def run(predictions: Path, cache_dir: Path, *, limit: int, chunk: int, delay: float = 0.0) -> dict[str, Any]:
    suite = Suite(name="banking77", task="classification", dataset=str(DATASET), labels=str(LABELS),
                  models=tuple(MODELS), limit=limit, gates=("accuracy > base",))
    config = RunConfig(models=MODELS, backend="replay", backend_options={"path": str(predictions), "delay_s": delay},
                       cache_dir=cache_dir, chunk_size=chunk, resamples=200)
    return execute(prepare([suite], config))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("predictions", type=Path)
    parser.add_argument("cache_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--limit", type=int, default=60)
    parser.add_argument("--chunk", type=int, default=10)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--go", type=Path)
    args = parser.parse_args()
    print("ready", flush=True)
    while args.go is not None and not args.go.exists():
        time.sleep(0.01)
    print(f"start {time.time()}", flush=True)
    results = run(args.predictions, args.cache_dir, limit=args.limit, chunk=args.chunk, delay=args.delay)
    atomic_write_text(args.out, json.dumps(results))
    print(f"end {time.time()}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
