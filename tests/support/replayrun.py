"""A real BANKING77 evaluation on saved predictions: the committed test file, two models (base and
the banking77 adapter), the replay backend (no model), a small chunk size when asked.

In-process, `write_predictions` and `run` serve the generation and fault tests. As a script, the
same run happens in its own process, for the tests that kill it or start two at once:

    python replayrun.py PREDICTIONS CACHE_DIR OUT.json [--limit N] [--chunk N] [--delay S] [--go FILE]

It prints `ready` once imports are done, waits for FILE to exist when --go is given (so that two
runs can be started at the same moment), prints `start <unix time>`, runs, writes the results to
OUT.json and prints `end <unix time>`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from ftevals.backends.replay import ReplayBackend
from ftevals.cache import CacheMode
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
            text = ex.reference if u < p_right else "card_arrival"
            rows.append({"model": model, "id": ex.id, "text": text, "tokens_in": 60, "tokens_out": 4})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def suite(limit: int) -> Suite:
    return Suite(name="banking77", task="classification", dataset=str(DATASET), labels=str(LABELS),
                 models=tuple(MODELS), limit=limit, gates=("accuracy > base",))


def run(predictions: Path, cache_dir: Path, *, limit: int, chunk_size: int = 128, mode: CacheMode = "use",
        delay_s: float = 0.0, backend: ReplayBackend | None = None) -> dict[str, Any]:
    """The first `limit` examples; the replay backend waits `delay_s` per request (a slow model)."""
    config = RunConfig(models=MODELS, backend="replay", backend_options={"path": str(predictions), "delay_s": delay_s},
                       cache_dir=cache_dir, cache_mode=mode, chunk_size=chunk_size, resamples=200)
    return execute(prepare([suite(limit)], config), backend=backend).to_dict()


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
    results = run(args.predictions, args.cache_dir, limit=args.limit, chunk_size=args.chunk, delay_s=args.delay)
    atomic_write_text(args.out, json.dumps(results))
    print(f"end {time.time()}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
