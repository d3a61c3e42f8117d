"""An adapter matches its base by what it was trained on: a hub id, a local path or a folder name.

The base here is laid out as a Hugging Face download leaves it (blobs, `refs/main` holding a
commit, `snapshots/<commit>/` of links into the blobs) and holds no ftevals manifest: a tiny random
Llama-shaped model written with numpy, and an adapter written by hand as PEFT saves one. No torch,
no hub.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from ftevals.cli import main
from ftevals.errors import ModelSpecError
from ftevals.hubcache import snapshot_of
from ftevals.models import inspect_adapter, resolve_base

REPO = "acme/smol-135m"
MAIN = "a" * 40
OLDER = "b" * 40
H, VOCAB, LAYERS = 16, 64, 2


def _base_tensors(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (VOCAB, H), "lm_head.weight": (VOCAB, H)}
    for i in range(LAYERS):
        shapes |= {f"model.layers.{i}.self_attn.q_proj.weight": (H, H),
                   f"model.layers.{i}.self_attn.v_proj.weight": (H, H)}
    return {k: rng.normal(0.0, 0.2, v).astype(np.float32) for k, v in shapes.items()}


def write_model(folder: Path, seed: int = 0) -> Path:
    """A tiny random Llama-shaped model folder: config.json + model.safetensors."""
    folder.mkdir(parents=True)
    # A downloaded config often records the uploader's own path: nothing to match an adapter by.
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": VOCAB,
              "hidden_size": H, "num_hidden_layers": LAYERS, "_name_or_path": "/home/uploader/ckpt-900"}
    (folder / "config.json").write_text(json.dumps(config))
    save_file(_base_tensors(seed), str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def download(cache: Path, repo_id: str, source: Path, *, commit: str, ref: str | None = "main") -> Path:
    """Lay out `source` as huggingface_hub does: blobs named by hash, a snapshot of links, a ref."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for f in sorted(source.iterdir()):
        blob = repo / "blobs" / hashlib.sha256(f.read_bytes()).hexdigest()
        blob.write_bytes(f.read_bytes())
        os.symlink(os.path.relpath(blob, snapshot), snapshot / f.name)
    if ref is not None:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snapshot


def write_adapter(folder: Path, recorded: str, r: int = 4) -> Path:
    """What PEFT saves for a LoRA on q_proj and v_proj, trained on `recorded`."""
    folder.mkdir(parents=True)
    cfg = {"peft_type": "LORA", "r": r, "lora_alpha": 2 * r, "target_modules": ["q_proj", "v_proj"],
           "base_model_name_or_path": recorded}
    (folder / "adapter_config.json").write_text(json.dumps(cfg))
    tensors = {}
    for i in range(LAYERS):
        for m in ("q_proj", "v_proj"):
            key = f"base_model.model.model.layers.{i}.self_attn.{m}"
            tensors |= {f"{key}.lora_A.weight": np.zeros((r, H), np.float32),
                        f"{key}.lora_B.weight": np.zeros((H, r), np.float32)}
    save_file(tensors, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
    return folder


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A hub cache holding two revisions of REPO (main and an older commit), no ftevals manifest."""
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("FTEVALS_CACHE_DIR", str(tmp_path / "ftevals-cache"))  # fingerprint memos
    cache = tmp_path / "hf" / "hub"
    source = write_model(tmp_path / "weights")
    download(cache, REPO, source, commit=MAIN)
    download(cache, REPO, source, commit=OLDER, ref=None)
    return cache


def test_a_snapshot_folder_tells_its_repo_and_commit(hub: Path, tmp_path: Path) -> None:
    snapshot = hub / "models--acme--smol-135m" / "snapshots" / MAIN
    assert snapshot_of(snapshot) == (REPO, MAIN)
    link = tmp_path / "my-base"
    link.symlink_to(snapshot)  # a link to a snapshot is that snapshot
    assert snapshot_of(link) == (REPO, MAIN)
    assert snapshot_of(tmp_path / "weights") is None
    assert snapshot_of(hub / "models--gpt2" / "snapshots" / MAIN) == ("gpt2", MAIN)
    assert snapshot_of(hub / "models--acme--smol-135m" / "refs" / "main") is None


def test_an_adapter_trained_from_the_hub_id_fits_the_cached_base(hub: Path, tmp_path: Path) -> None:
    adapter = write_adapter(tmp_path / "adapter", REPO)
    base = resolve_base(REPO)
    assert base.path == hub / "models--acme--smol-135m" / "snapshots" / MAIN
    info = inspect_adapter(adapter, base)
    assert (info.rank, info.base_model_name_or_path) == (4, REPO)


@pytest.mark.parametrize("recorded", [REPO, f"{REPO}@{OLDER}", f"{REPO}@v1.0", "ACME/Smol-135M"])
def test_any_revision_of_the_repository_is_its_base(hub: Path, tmp_path: Path, recorded: str) -> None:
    adapter = write_adapter(tmp_path / "adapter", recorded)
    for base in (f"{REPO}@{OLDER}", REPO):
        inspect_adapter(adapter, resolve_base(base))


def test_another_repository_is_refused_naming_both_sides(hub: Path, tmp_path: Path) -> None:
    snapshot = hub / "models--acme--smol-135m" / "snapshots" / MAIN
    for recorded in ("org/other", "other-org/smol-135m"):  # same name under another org: another model
        adapter = write_adapter(tmp_path / recorded.replace("/", "_"), recorded)
        with pytest.raises(ModelSpecError) as err:
            inspect_adapter(adapter, resolve_base(REPO))
        assert str(err.value) == (
            f"adapter {adapter} was trained on {recorded!r}, but the base model is {snapshot} (the Hugging Face "
            f"cache's {REPO}@{MAIN}; /home/uploader/ckpt-900); use the adapter with its own base model")


def test_shapes_are_still_checked_against_the_cached_weights(hub: Path, tmp_path: Path) -> None:
    adapter = write_adapter(tmp_path / "adapter", REPO)
    key = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    tensors = {f"base_model.model.model.layers.{i}.self_attn.{m}.lora_{ab}.weight": (
        np.zeros((4, 2 * H), np.float32) if ab == "A" else np.zeros((H, 4), np.float32))
        for i in range(LAYERS) for m in ("q_proj", "v_proj") for ab in "AB"}
    save_file(tensors, str(adapter / "adapter_model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ModelSpecError, match=re.escape(f"{key} has shape [4, {2 * H}], but on this base model "
                                                       f"it must be [4, {H}]")):
        inspect_adapter(adapter, resolve_base(REPO))


def test_a_recorded_local_path_matches_that_folder(hub: Path, tmp_path: Path) -> None:
    local = write_model(tmp_path / "models" / "checkpoint")
    link = tmp_path / "latest"
    link.symlink_to(local)
    # Recorded through a link, used by its real path: the same folder.
    inspect_adapter(write_adapter(tmp_path / "by-link", str(link)), resolve_base(str(local)))
    # Trained on another machine: only the folder name is left to agree on (today's lenient rule).
    inspect_adapter(write_adapter(tmp_path / "elsewhere", "/mnt/other-host/checkpoint"), resolve_base(str(local)))
    # A snapshot path recorded on another machine names the repository, at any commit.
    elsewhere = f"/home/bob/.cache/huggingface/hub/models--acme--smol-135m/snapshots/{OLDER}"
    inspect_adapter(write_adapter(tmp_path / "bob", elsewhere), resolve_base(REPO))
    other = write_model(tmp_path / "models" / "another")
    with pytest.raises(ModelSpecError, match=re.escape(f"was trained on {str(link)!r}, but the base model is {other} "
                                                       "(/home/uploader/ckpt-900); use the adapter with its own base model")):
        inspect_adapter(tmp_path / "by-link", resolve_base(str(other)))


def test_models_inspect_shows_the_hub_id_and_commit(hub: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    adapter = write_adapter(tmp_path / "adapter", REPO)
    assert main(["models", "inspect", str(adapter), "--base", REPO]) == 0
    out = capsys.readouterr().out
    assert f"trained on {REPO}; fits {hub / 'models--acme--smol-135m' / 'snapshots' / MAIN} ({REPO}@{MAIN});" in out
    assert main(["models", "inspect", str(write_adapter(tmp_path / "other", "org/other")), "--base", REPO]) != 0
    assert "was trained on 'org/other', but the base model is" in capsys.readouterr().err
