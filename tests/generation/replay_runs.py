"""Small real runs for the generation tests: a BANKING77 sample from data/, two models, the replay
backend (saved predictions, no model) with a counter on its real `generate`. The data, models and
predictions are tests/support/replayrun.py's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from support.replayrun import DATASET, LABELS, MODELS, write_predictions

from ftevals.backends.replay import ReplayBackend, ReplaySettings
from ftevals.backends.base import Generation, GenerationRequest
from ftevals.cache import CacheMode
from ftevals.models import unverified_models
from ftevals.pipeline import RunConfig, execute, prepare
from ftevals.suite import Suite

LIMIT = 30
N_REQUESTS = LIMIT * len(MODELS)


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


__all__ = ["DATASET", "LABELS", "LIMIT", "MODELS", "N_REQUESTS", "CountingReplay", "run", "suite", "write_predictions"]
