"""PEFT LoRA adapter folders: read, and checked against the base model's own weights.

What each LoRA matrix must look like is derived from the base model itself, not from a table of
module names: the safetensors headers of the base folder (JSON only, no tensor is loaded; a sharded
checkpoint is found through `model.safetensors.index.json`) give every weight's name and shape, and
an adapter key `base_model.model.<module>.lora_A.weight` is matched to the base weight
`<module>.weight`. So Llama's `q_proj`, Phi-3's fused `qkv_proj`/`gate_up_proj`, GPT-2's `c_attn`
(a Conv1D, stored (in, out)), NeoX/Falcon's `query_key_value`, `lm_head` and embedding LoRA, and
`modules_to_save` copies are all checked the same way:

    Linear      base weight (out, in)            lora_A (r, in)     lora_B (out, r)
    Conv1D      base weight (in, out)            lora_A (r, in)     lora_B (out, r)   fan_in_fan_out
    Embedding   base weight (vocab, dim)         lora_embedding_A (r, vocab), lora_embedding_B (dim, r)
    saved copy  base weight, any shape           <module>.weight of the same shape (modules_to_save)

What a particular engine cannot serve (vLLM has no modules_to_save for causal LMs, for instance) is
the backend's business (see backends/vllm.py), so that an adapter the hf backend can run is not
refused for every backend.

Nothing here imports torch.
"""

from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ModelSpecError
from .hubcache import looks_like_repo_id, resolve_repo_id, snapshot_of

if TYPE_CHECKING:  # models.py imports this module; the type is only needed for annotations
    from .models import ModelFolder

#: PEFT prefixes every key of a saved adapter with this (the PeftModel -> base model path).
PEFT_PREFIX = "base_model.model."
#: init_lora_weights values that change the base weights when PEFT loads the adapter.
_BASE_CHANGING_INITS = ("pissa", "olora", "loftq", "corda")


@dataclass(frozen=True)
class AdapterInfo:
    path: Path
    rank: int
    alpha: float
    target_modules: tuple[str, ...]
    base_model_name_or_path: str
    fingerprint: str
    #: target_modules exactly as adapter_config.json gives it (a list, or a PEFT regex string).
    raw_target_modules: Any = field(default=None, compare=False, repr=False)
    #: Modules the adapter replaces with full trained copies (adapter_config.json modules_to_save).
    modules_to_save: tuple[str, ...] = ()
    #: PEFT features beyond plain LoRA that some engines cannot serve ("DoRA", "lora_bias", ...).
    features: tuple[str, ...] = ()
    #: Module paths that carry embedding LoRA (lora_embedding_A/B) or a LoRA on the output head.
    embedding_modules: tuple[str, ...] = ()


@dataclass(frozen=True)
class _LoraPair:
    """The LoRA matrices the adapter holds for one module, by key and shape."""

    module: str
    embedding: bool
    a_key: str | None = None
    a_shape: tuple[int, ...] | None = None
    b_key: str | None = None
    b_shape: tuple[int, ...] | None = None


def read_safetensors_shapes(path: Path, *, what: str = "adapter") -> dict[str, list[int]]:
    """Tensor name -> shape from a safetensors header, without loading tensors (or torch).

    Also checks that the file holds exactly the tensor bytes its header describes: a truncated copy
    (an interrupted download or sync) otherwise passes every check here and fails only when an
    engine loads it, after a minute of start-up.
    """
    fix = "re-save or re-train the adapter" if what == "adapter" else f"re-save or re-download the {what}"
    try:
        with open(path, "rb") as fh:
            (length,) = struct.unpack("<Q", fh.read(8))
            if length > 100_000_000:
                raise ValueError("header length is implausible")
            header = json.loads(fh.read(length))
            size = os.fstat(fh.fileno()).st_size
        tensors = {k: v for k, v in header.items() if k != "__metadata__"}
        shapes = {k: [int(d) for d in v["shape"]] for k, v in tensors.items()}
        data_end = max((int(v["data_offsets"][1]) for v in tensors.values()), default=0)
    except (OSError, ValueError, struct.error, KeyError, TypeError, AttributeError, IndexError) as exc:
        why = f"{type(exc).__name__}: {exc}" if isinstance(exc, (KeyError, TypeError, AttributeError, IndexError)) else exc
        raise ModelSpecError(f"{path} is not a readable safetensors file ({why}); {fix}") from None
    if 8 + length + data_end != size:
        raise ModelSpecError(
            f"{path} is damaged: its header describes {8 + length + data_end:,} bytes but the file has {size:,} "
            f"(a truncated copy or download?); copy or re-save the {what} again"
        )
    return shapes


def base_weight_shapes(folder: Path) -> dict[str, list[int]] | None:
    """Every weight of a base model folder with its shape, from safetensors headers alone.

    A sharded checkpoint names its shards in model.safetensors.index.json; otherwise every
    *.safetensors file in the folder is read. None when the folder has no safetensors weights
    (a .bin checkpoint cannot be inspected without unpickling it, which we do not do).
    """
    fix = "re-save or re-download the base model"
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
            shards = sorted({str(v) for v in weight_map.values()})
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ModelSpecError(f"{index} cannot be read ({type(exc).__name__}: {exc}); {fix}") from None
        files = [folder / s for s in shards]
        missing = [f for f in files if not f.is_file()]
        if missing:
            raise ModelSpecError(f"{index} names the shard {missing[0].name}, which is not in {folder}; {fix}")
    else:
        files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    shapes: dict[str, list[int]] = {}
    for f in files:
        shapes.update(read_safetensors_shapes(f, what="base model"))
    return shapes


# ---------------------------------------------------------------------------------------------
# Reading an adapter folder


def inspect_adapter(path: str | Path, base: ModelFolder | None = None) -> AdapterInfo:
    """Read and validate a PEFT LoRA adapter folder, optionally against the base it will run on.

    Checks: the folder and `adapter_config.json` exist and parse, it is a LoRA adapter, the weights
    file exists and is a readable safetensors file, and (given a base) the
    adapter's recorded base model names the same model and every LoRA matrix fits the base's weights.
    """
    from .models import folder_fingerprint

    folder = Path(path).expanduser()
    if not folder.is_dir() and looks_like_repo_id(str(path)):
        folder = resolve_repo_id(str(path))  # an adapter repository in the local Hugging Face cache
    if not folder.is_dir():
        raise ModelSpecError(f"adapter folder {folder} does not exist; check the path in the model spec")
    cfg_path = folder / "adapter_config.json"
    if not cfg_path.is_file():
        raise ModelSpecError(f"{folder} has no adapter_config.json; expected a PEFT adapter folder (save_pretrained)")
    try:
        cfg = json.loads(cfg_path.read_text())
    except ValueError as exc:
        raise ModelSpecError(f"{cfg_path}: not valid JSON ({exc}); re-save the adapter") from None
    if str(cfg.get("peft_type", "LORA")).upper() != "LORA":
        raise ModelSpecError(f"{cfg_path}: peft_type is {cfg.get('peft_type')!r}; only LoRA adapters are served")
    rank = cfg.get("r")
    if not isinstance(rank, int) or rank < 1:
        raise ModelSpecError(f"{cfg_path}: 'r' (the LoRA rank) must be a positive integer, got {rank!r}")
    targets = cfg.get("target_modules") or []
    if isinstance(targets, str):
        targets = [targets]
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise ModelSpecError(f"{cfg_path}: target_modules must be a list of module names or a regex string, got {targets!r}")
    saved = cfg.get("modules_to_save") or []
    if not isinstance(saved, list) or not all(isinstance(t, str) for t in saved):
        raise ModelSpecError(f"{cfg_path}: modules_to_save must be a list of module names, got {saved!r}")
    weights = folder / "adapter_model.safetensors"
    if not weights.is_file():
        raise ModelSpecError(f"{folder} has no adapter_model.safetensors; save the adapter with safe_serialization=True")
    shapes = read_safetensors_shapes(weights)
    pairs, _ = _split_adapter_keys(shapes)
    info = AdapterInfo(
        path=folder,
        rank=rank,
        alpha=float(cfg.get("lora_alpha", rank)),
        target_modules=tuple(sorted(targets)),
        base_model_name_or_path=str(cfg.get("base_model_name_or_path") or ""),
        fingerprint=folder_fingerprint(folder),
        raw_target_modules=cfg.get("target_modules"),
        modules_to_save=tuple(saved),
        features=_features(cfg, shapes),
        embedding_modules=tuple(sorted(m for m, p in pairs.items() if p.embedding or m.rsplit(".", 1)[-1] == "lm_head")),
    )
    if base is not None:
        check_adapter_fits_base(info, shapes, base, cfg=cfg)
    return info


def _features(cfg: dict[str, Any], shapes: dict[str, list[int]]) -> tuple[str, ...]:
    """PEFT options that make this more than a plain LoRA (named for error messages)."""
    out = []
    if cfg.get("use_dora"):
        out.append("DoRA (use_dora)")
    if cfg.get("lora_bias") or any(k.endswith(".lora_B.bias") for k in shapes):
        out.append("LoRA bias (lora_bias)")
    init = cfg.get("init_lora_weights")
    if isinstance(init, str) and init.lower().startswith(_BASE_CHANGING_INITS):
        out.append(f"init_lora_weights={init!r}")
    if cfg.get("layer_replication"):
        out.append("layer_replication")
    return tuple(out)


def _split_adapter_keys(shapes: dict[str, list[int]]) -> tuple[dict[str, _LoraPair], dict[str, list[int]]]:
    """LoRA pairs by module path, and full module copies (modules_to_save) by weight name."""
    pairs: dict[str, _LoraPair] = {}
    copies: dict[str, list[int]] = {}
    for key, shape in shapes.items():
        name = key.removeprefix(PEFT_PREFIX)
        m = re.fullmatch(r"(?P<module>.+)\.(?P<which>lora_A|lora_B)\.weight", name) or re.fullmatch(
            r"(?P<module>.+)\.(?P<which>lora_embedding_A|lora_embedding_B)", name
        )
        if m is None:
            if not re.search(r"\.lora_[A-Za-z_]+(\.|$)", name):  # lora_B.bias, DoRA magnitudes: not shapes we check
                copies[name] = shape
            continue
        module, which = m["module"], m["which"]
        old = pairs.get(module, _LoraPair(module, embedding=which.startswith("lora_embedding")))
        if which.endswith("A"):
            pairs[module] = _LoraPair(module, old.embedding, key, tuple(shape), old.b_key, old.b_shape)
        else:
            pairs[module] = _LoraPair(module, old.embedding, old.a_key, old.a_shape, key, tuple(shape))
    return pairs, copies


# ---------------------------------------------------------------------------------------------
# Checking an adapter against its base


class _BaseModules:
    """The base model's weight matrices by module path, found even when prefixes differ.

    An adapter's module path is the path inside the model PEFT wrapped (`model.layers.0.mlp.up_proj`
    for a Llama CausalLM). The base checkpoint usually names the weight `<path>.weight`, but some
    checkpoints drop or add a leading part (old GPT-2 folders store `h.0.attn.c_attn.weight`, not
    `transformer.h.0...`), so a path that is not found as is, is looked up by its tail.
    """

    def __init__(self, shapes: dict[str, list[int]], cfg: dict[str, Any]) -> None:
        self.shapes = {k.removesuffix(".weight"): tuple(v) for k, v in shapes.items() if k.endswith(".weight")}
        self.cfg = cfg

    def find(self, module: str) -> tuple[str, tuple[int, ...]] | None:
        if module in self.shapes:
            return module, self.shapes[module]
        tails = [m for m in self.shapes if m.endswith("." + module)]
        if len(tails) == 1:
            return tails[0], self.shapes[tails[0]]
        parts = module.split(".")
        for i in range(1, len(parts) - 1):
            shorter = ".".join(parts[i:])
            if shorter in self.shapes:
                return shorter, self.shapes[shorter]
        if parts[-1] == "lm_head":
            return self._tied_head()
        return None

    def _tied_head(self) -> tuple[str, tuple[int, ...]] | None:
        """With tied embeddings the checkpoint has no lm_head weight: the head is the input embedding."""
        if self.cfg.get("tie_word_embeddings", True) is False:
            return None
        vocab = self.cfg.get("vocab_size")
        for name, shape in self.shapes.items():
            leaf = name.rsplit(".", 1)[-1]
            if len(shape) == 2 and leaf in ("embed_tokens", "wte", "embed_in", "word_embeddings") and (
                    vocab is None or shape[0] == vocab):
                return name, shape
        return None

    def matches(self, target: str) -> bool:
        """Does a target_modules / modules_to_save entry name at least one module (PEFT's suffix rule)?"""
        return any(m == target or m.endswith("." + target) for m in self.shapes) or (
            target == "lm_head" and self._tied_head() is not None)

    def leaf_names(self) -> list[str]:
        """Names of the base's matrices (2-D weights): what a LoRA could target."""
        return sorted({m.rsplit(".", 1)[-1] for m, s in self.shapes.items() if len(s) == 2})

    def layer_range(self, module: str) -> str | None:
        """If `module` exists in the base under another layer number, the base's layer numbers."""
        escaped = re.escape(module)
        pattern = re.sub(r"\\\.\d+\\\.", lambda _: r"\.(\d+)\.", escaped, count=1)
        if pattern == escaped:
            return None
        found = sorted({int(m[1]) for name in self.shapes if (m := re.fullmatch(pattern, name))})
        return f"{found[0]}..{found[-1]}" if found else None


def _rank_for(module: str, rank: int, cfg: dict[str, Any]) -> int:
    """The rank PEFT gives a module: the first matching rank_pattern entry, else r."""
    for pattern, r in (cfg.get("rank_pattern") or {}).items():
        if re.fullmatch(rf"(.*\.)?({pattern})", module):
            return int(r)
    return rank


def check_adapter_fits_base(info: AdapterInfo, shapes: dict[str, list[int]], base: ModelFolder,
                            cfg: dict[str, Any] | None = None) -> None:
    base_cfg = _base_config(base.path)
    _check_recorded_base(info, base.path, base_cfg)
    if cfg is None:
        cfg = json.loads((info.path / "adapter_config.json").read_text())
    pairs, copies = _split_adapter_keys(shapes)
    for pair in pairs.values():
        _check_pair_rank(info, pair, _rank_for(pair.module, info.rank, cfg))
    weights = base_weight_shapes(base.path)
    if weights is None:
        return  # no safetensors in the base: nothing to compare shapes with (the engine will check)
    modules = _BaseModules(weights, base_cfg)
    model_type = base_cfg.get("model_type", "?")
    _check_target_modules(info, modules, model_type)
    for pair in pairs.values():
        _check_pair_fits(info, pair, modules, bool(cfg.get("fan_in_fan_out")), base.path)
    for name, shape in copies.items():
        found = modules.find(name.removesuffix(".weight").removesuffix(".bias"))
        if name.endswith(".weight") and found is not None and tuple(shape) != found[1]:
            raise ModelSpecError(
                f"adapter {info.path}: {PEFT_PREFIX}{name} (a full copy of {found[0]!r}, modules_to_save) has shape "
                f"{list(shape)}, but the base model's {found[0]}.weight is {list(found[1])}; the adapter was trained "
                "for a different base model"
            )


def _check_recorded_base(info: AdapterInfo, base: Path, base_cfg: dict[str, Any]) -> None:
    """The adapter's `base_model_name_or_path` must name this base: by hub id, path or folder name."""
    recorded = info.base_model_name_or_path
    names = _base_names(base, base_cfg)
    if not recorded or _recorded_base_matches(recorded, base, names):
        return
    snapshot = snapshot_of(base)
    # The folder's own path and name (and a snapshot's repo id) are shown already.
    others = sorted(names - {str(base), base.name, snapshot[0] if snapshot else ""})
    known = ([f"the Hugging Face cache's {snapshot[0]}@{snapshot[1]}"] if snapshot else []) + others
    aka = f" ({'; '.join(known)})" if known else ""
    raise ModelSpecError(
        f"adapter {info.path} was trained on {recorded!r}, but the base model is {base}{aka}; "
        "use the adapter with its own base model"
    )


def _base_names(base: Path, base_cfg: dict[str, Any]) -> set[str]:
    """What an adapter trained on this base may record: its path and name, the id its config was
    saved under, an ftevals manifest's ids, and its hub id when it is a hub cache snapshot."""
    from .models import read_manifest

    names = {str(base), base.name, str(base_cfg.get("_name_or_path", ""))}
    manifest = read_manifest(base)
    if manifest:
        names |= {str(manifest.get("model_id", "")), str(manifest.get("name", ""))}
    snapshot = snapshot_of(base)
    if snapshot:
        names.add(snapshot[0])
    names.discard("")
    return names


def _recorded_base_matches(recorded: str, base: Path, names: set[str]) -> bool:
    if recorded in names or _same_folder(recorded, base):
        return True
    recorded_repo = _recorded_repo(recorded)
    base_snapshot = snapshot_of(base)
    if recorded_repo and base_snapshot:
        # Two hub ids are exact identities: any revision of the same repository is its base, and a
        # repository of the same name under another org is not. The hub treats ids case-insensitively.
        return recorded_repo.casefold() == base_snapshot[0].casefold()
    # An adapter trained elsewhere records that machine's path (or a hub id for a local copy):
    # accept it when the folder names agree; the shapes are still checked against the weights.
    tail = Path(recorded_repo or recorded).name
    return tail in {Path(n).name for n in names}


def _same_folder(recorded: str, base: Path) -> bool:
    """Does a recorded path lead to the base folder (through links, `~`, `..`)?"""
    try:
        return os.path.realpath(os.path.expanduser(recorded)) == os.path.realpath(base)
    except (OSError, ValueError):  # a recorded value no path can be (a NUL byte): not this folder
        return False


def _recorded_repo(recorded: str) -> str | None:
    """The hub repository a recorded base names: `org/name[@rev]`, or the path of a cache snapshot."""
    if looks_like_repo_id(recorded):
        return recorded.partition("@")[0]
    snapshot = snapshot_of(recorded)
    return snapshot[0] if snapshot else None


def _check_pair_rank(info: AdapterInfo, pair: _LoraPair, rank: int) -> None:
    a_name, b_name = ("lora_embedding_A", "lora_embedding_B") if pair.embedding else ("lora_A", "lora_B")
    if pair.a_shape is None or pair.b_shape is None:
        missing = a_name if pair.a_shape is None else b_name
        raise ModelSpecError(
            f"adapter {info.path}: module {pair.module!r} has no {missing} matrix in adapter_model.safetensors "
            "(every LoRA module needs both); re-save the adapter"
        )
    if len(pair.a_shape) != 2 or len(pair.b_shape) != 2:
        raise ModelSpecError(
            f"adapter {info.path}: module {pair.module!r} has LoRA matrices of shapes {list(pair.a_shape)} and "
            f"{list(pair.b_shape)}, not 2-D; only LoRA on linear and embedding layers is supported"
        )
    found = (pair.a_shape[0], pair.b_shape[1])
    if found != (rank, rank):
        raise ModelSpecError(
            f"adapter {info.path}: module {pair.module!r} has rank {found[0]} ({a_name} {list(pair.a_shape)}) and "
            f"{found[1]} ({b_name} {list(pair.b_shape)}), but adapter_config.json gives it rank {rank} (r or "
            "rank_pattern); fix 'r'/'rank_pattern' or re-save the adapter"
        )


def _check_pair_fits(info: AdapterInfo, pair: _LoraPair, modules: _BaseModules, fan_in_fan_out: bool,
                     base_path: Path) -> None:
    assert pair.a_shape is not None and pair.b_shape is not None
    found = modules.find(pair.module)
    if found is None:
        layers = modules.layer_range(pair.module)
        where = f" (its layers are numbered {layers})" if layers else ""
        raise ModelSpecError(
            f"adapter {info.path}: {pair.a_key} is a LoRA on module {pair.module!r}, which the base model "
            f"{base_path} does not have{where}; the adapter was trained for a different base model"
        )
    weight_name, weight = found
    if len(weight) != 2:
        raise ModelSpecError(
            f"adapter {info.path}: {pair.a_key} is a LoRA on {weight_name!r}, whose base weight has shape "
            f"{list(weight)}, not a matrix; only LoRA on linear and embedding layers is supported"
        )
    # (in_features, out_features) the module may have. Linear stores (out, in); Conv1D (GPT-2) and
    # Embedding store (in, out). A fan_in_fan_out adapter may mix both: PEFT turns the flag off again
    # for the nn.Linear layers (lm_head) of a Conv1D model.
    if pair.embedding:
        options = [(weight[0], weight[1])]
    elif fan_in_fan_out:
        options = [(weight[0], weight[1]), (weight[1], weight[0])]
    else:
        options = [(weight[1], weight[0])]
    r = pair.a_shape[0]
    expected = [([r, i], [o, r]) for i, o in options]
    if (list(pair.a_shape), list(pair.b_shape)) in expected:
        return
    bad_a = all(list(pair.a_shape) != a for a, _ in expected)
    key, shape = (pair.a_key, pair.a_shape) if bad_a else (pair.b_key, pair.b_shape)
    must = " or ".join(str(a if bad_a else b) for a, b in expected)
    layout = "Conv1D, stored (in, out)" if fan_in_fan_out and not pair.embedding else (
        "embedding (vocab, dim)" if pair.embedding else "linear, stored (out, in)")
    raise ModelSpecError(
        f"adapter {info.path}: {key} has shape {list(shape)}, but on this base model it must be {must} "
        f"(module {weight_name}: weight {list(weight)}, {layout}); the adapter was trained for a different base model"
    )


def _check_target_modules(info: AdapterInfo, modules: _BaseModules, model_type: str) -> None:
    """Every module named in target_modules and modules_to_save must exist in the base model.

    PEFT refuses to load such an adapter (and vLLM may skip the module silently), so it is refused
    here, before any engine starts. A name matches a module whose path ends with it (PEFT's rule);
    a single string is a regular expression in PEFT, matched against whole module paths, or
    "all-linear".
    """
    raw = info.raw_target_modules
    if isinstance(raw, str):
        if raw != "all-linear" and not any(re.fullmatch(raw, m) for m in modules.shapes):
            raise ModelSpecError(
                f"{info.path / 'adapter_config.json'}: the target_modules pattern {raw!r} matches no module of the "
                f"{model_type} base model (its LoRA-able modules: {', '.join(modules.leaf_names())}); fix "
                "target_modules or use the adapter with its own base model"
            )
        raw = []
    for field_name, names in (("target_modules", raw or []), ("modules_to_save", info.modules_to_save)):
        unknown = sorted({str(t) for t in names if not modules.matches(str(t))})
        if unknown:
            raise ModelSpecError(
                f"{info.path / 'adapter_config.json'}: {field_name} names {', '.join(map(repr, unknown))}, which a "
                f"{model_type} base model does not have (its LoRA-able modules: {', '.join(modules.leaf_names())}); "
                f"fix {field_name} or use the adapter with its own base model"
            )


def _base_config(folder: Path) -> dict[str, Any]:
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ModelSpecError(f"{folder}/config.json cannot be read ({exc})") from None
    # Multimodal and some newer configs nest the language model's settings (vocab_size, ...).
    text = cfg.get("text_config")
    return {**text, **cfg} if isinstance(text, dict) else cfg


__all__ = ["AdapterInfo", "base_weight_shapes", "check_adapter_fits_base", "inspect_adapter",
           "read_safetensors_shapes"]
