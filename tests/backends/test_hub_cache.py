"""Models and adapters by Hugging Face id, from a local hub cache layout, offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ftevals.cli import main
from ftevals.errors import ModelSpecError
from ftevals.hubcache import looks_like_repo_id, resolve_repo_id
from ftevals.models import folder_fingerprint, inspect_adapter, resolve_base

ROOT = Path(__file__).resolve().parents[2]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def cache_repo(cache: Path, repo_id: str, source: Path, *, ref: str = "main", commit: str = COMMIT) -> Path:
    """Lay `source`'s files out as huggingface_hub does: blobs, a snapshot of symlinks, a ref file."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for f in sorted(source.iterdir()):
        if f.is_file():
            blob = repo / "blobs" / f"{f.name}.blob"
            blob.write_bytes(f.read_bytes())
            os.symlink(os.path.relpath(blob, snapshot), snapshot / f.name)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / ref).write_text(commit)
    return snapshot


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, default_model) -> Path:
    cache = tmp_path / "hf" / "hub"
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    cache_repo(cache, "acme/tiny-chat", default_model.path)
    cache_repo(cache, "acme/tiny-chat-b77", ROOT / "adapters" / "banking77", ref="v1", commit="f" * 40)
    return cache


def test_ids_are_told_from_paths() -> None:
    assert looks_like_repo_id("meta-llama/Llama-3.1-8B-Instruct") and looks_like_repo_id("acme/x@v1")
    assert not any(map(looks_like_repo_id, ["./acme/x", "/models/x", "~/x", "adapters/a/b", "default"]))


def test_a_cached_base_resolves_offline_to_the_same_weights(hub: Path, default_model) -> None:
    folder = resolve_base("acme/tiny-chat", chat=True)
    assert folder.path == hub / "models--acme--tiny-chat" / "snapshots" / COMMIT
    assert folder.fingerprint == folder_fingerprint(default_model.path)


def test_an_adapter_by_id_and_revision_fits_its_base(hub: Path, capsys: pytest.CaptureFixture[str]) -> None:
    info = inspect_adapter("acme/tiny-chat-b77@v1", resolve_base("acme/tiny-chat"))
    assert info.rank == 16
    assert main(["models", "inspect", "acme/tiny-chat-b77@v1", "--base", "acme/tiny-chat"]) == 0
    assert "fits" in capsys.readouterr().out


def test_an_id_not_in_the_cache_names_the_fetch_command(hub: Path) -> None:
    with pytest.raises(ModelSpecError, match=r"huggingface-cli download meta-llama/Llama-3.1-8B-Instruct"):
        resolve_base("meta-llama/Llama-3.1-8B-Instruct")
    with pytest.raises(ModelSpecError, match=r"revision 'v2' is not in the Hugging Face cache .* \(cached refs: v1\)"):
        resolve_repo_id("acme/tiny-chat-b77@v2")


def test_the_model_table_keeps_ids_as_ids(tmp_path: Path) -> None:
    from ftevals.settings import Values, model_table

    values = Values.from_dicts({"--ftevals-model": ["x=acme/tiny-chat+acme/tiny-chat-b77@v1"]}, ini_dir=tmp_path)
    spec = model_table(values)["x"]
    assert (spec.base, spec.adapter) == ("acme/tiny-chat", "acme/tiny-chat-b77@v1")
