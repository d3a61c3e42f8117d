"""Small real runs for the generation tests: a BANKING77 sample from data/, two models, the replay
backend (saved predictions, no model) with a counter on its real `generate`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ftevals.backends.replay import ReplayBackend, ReplaySettings
from ftevals.backends.base import Generation, GenerationRequest
from ftevals.cache import CacheMode
from ftevals.data import load_dataset
from ftevals.models import unverified_models
from ftevals.pipeline import RunConfig, execute, prepare
from ftevals.specs import ModelSpec
from ftevals.suite import Suite

ROOT = Path(__file__).resolve().parents[2]
DATASET = ROOT / "data" / "banking77" / "test.jsonl"
LABELS = ROOT / "data" / "banking77" / "labels.json"
MODELS = {"base": ModelSpec("base"), "banking77": ModelSpec("banking77", adapter="adapters/banking77")}
LIMIT = 30
N_REQUESTS = LIMIT * len(MODELS)


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


class CountingReplay(ReplayBackend):
    """The replay backend, counting what it is asked to generate."""

    def __init__(self, predictions: Path) -> None:
        super().__init__(unverified_models(MODELS.values()), ReplaySettings(path=str(predictions)))
        self.calls = 0
        self.requests = 0

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:  # type: ignore[override]
        self.calls += 1
        self.requests += len(requests)
        return super().generate(requests)


def suite() -> Suite:
    return Suite(name="banking77", task="classification", dataset=str(DATASET), labels=str(LABELS),
                 models=tuple(MODELS), limit=LIMIT, gates=("accuracy > base",))


def run(predictions: Path, cache_dir: Path, *, mode: CacheMode = "use", chunk_size: int = 128,
        backend: ReplayBackend | None = None) -> dict[str, Any]:
    config = RunConfig(models=MODELS, backend="replay", backend_options={"path": str(predictions)},
                       cache_dir=cache_dir, cache_mode=mode, chunk_size=chunk_size, resamples=200)
    return execute(prepare([suite()], config), backend=backend).to_dict()
