"""The committed demo adapters are what scripts/train_demo_adapters.py produces from the committed data.

README command 1 retrains an adapter whose recorded fingerprint (base weights + training rows +
recipe) no longer matches: these tests keep that from happening silently on a user's machine
(a stale adapter would cost minutes of training, or evaluate something other than it claims).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.scripts import load_script

from ftevals.data import load_dataset
from ftevals.models import inspect_adapter
from ftevals.training import read_provenance, training_fingerprint

ROOT = Path(__file__).resolve().parents[2]
DEMOS = load_script("train_demo_adapters").DEMO_ADAPTERS


@pytest.mark.parametrize("demo", DEMOS, ids=[d.name for d in DEMOS])
def test_committed_adapter_matches_its_recipe_and_data(demo, default_model):
    folder = ROOT / "adapters" / demo.name
    provenance = read_provenance(folder)
    assert provenance is not None, f"{folder} has no ftevals-adapter.json; run scripts/train_demo_adapters.py"
    examples = load_dataset(ROOT / demo.train_file).sample(demo.n_train, seed=demo.recipe.seed).examples
    assert provenance["base_fingerprint"] == default_model.fingerprint, (
        "the embedded model converted on this machine differs from the one the adapter was trained on"
    )
    assert provenance["fingerprint"] == training_fingerprint(default_model, examples, demo.recipe), (
        f"adapters/{demo.name} is stale: its data or recipe changed; run scripts/train_demo_adapters.py --only {demo.name}"
    )


@pytest.mark.parametrize("demo", DEMOS, ids=[d.name for d in DEMOS])
def test_committed_adapter_fits_the_embedded_model(demo, default_model):
    info = inspect_adapter(ROOT / "adapters" / demo.name, default_model)
    cfg = json.loads((ROOT / "adapters" / demo.name / "adapter_config.json").read_text())
    assert info.rank == demo.recipe.rank == cfg["r"]
    assert set(info.target_modules) == set(demo.recipe.target_modules)
    # Training reduced the loss on the task (what the adapter does to outputs is checked by the
    # suites and by tests/integration).
    provenance = read_provenance(ROOT / "adapters" / demo.name)
    assert provenance["final_loss"] < provenance["first_loss"], provenance
