"""Shared fixtures. Real model, real adapters, real data; nothing from a hub (HF_HUB_OFFLINE=1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
ADAPTERS = ROOT / "adapters"


@pytest.fixture(autouse=True)
def _pytester_keeps_installed_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    """An in-process pytester run keeps the installed packages it imported (torch, mlflow, ...): a
    package with a C extension cannot be imported twice in one process, and the half-imported copy
    crashed the process when collected (support/pytester_modules.py). In every test folder, so that
    the order tests run in, across xdist workers too, cannot matter."""
    import _pytest.pytester
    from support.pytester_modules import KeepInstalled

    monkeypatch.setattr(_pytest.pytester, "SysModulesSnapshot", KeepInstalled)


@pytest.fixture(autouse=True)
def _no_github_step_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs made by tests must not append their summaries to a CI job's real step summary."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def default_model():
    """The embedded SmolLM2-135M-Instruct, converted once into the ftevals cache (about 30 s)."""
    from ftevals.models import pull_default_model

    return pull_default_model()


@pytest.fixture(scope="session")
def banking77_labels() -> list[str]:
    return json.loads((DATA / "banking77" / "labels.json").read_text())


@pytest.fixture(scope="session")
def banking77_examples():
    from ftevals.data import load_dataset

    return list(load_dataset(DATA / "banking77" / "test.jsonl").sample(16, seed=0).examples)


@pytest.fixture(scope="session")
def banking77_models(default_model):
    """base + the committed banking77 demo adapter, validated against the base."""
    from ftevals.models import resolve_models
    from ftevals.specs import ModelSpec

    specs = [ModelSpec("base"), ModelSpec("banking77", adapter=str(ADAPTERS / "banking77"))]
    return resolve_models(specs)


@pytest.fixture(scope="session")
def vllm_backend(banking77_models):
    """One real vLLM CPU engine for the whole test session (start-up is 30-40 s). Adapters as LoRA
    requests: the merged default is checked on five architectures (tests/backends/test_architectures.py)
    and end to end (tests/integration/test_flagship_e2e.py); this keeps vLLM's Llama LoRA path checked."""
    from ftevals.backends.vllm import VLLMBackend, VLLMSettings

    backend = VLLMBackend(banking77_models, VLLMSettings(strategy="multi-lora"))
    yield backend
    backend.close()
