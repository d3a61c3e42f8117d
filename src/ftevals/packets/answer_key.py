"""The answer key: the one place that undoes blinding.

This is the only module that knows which letter is which model (and which item code is which
suite and example) once a packet exists. build.py deals the shuffled letter orders and hands
them here to be written to key/answer_key.json; sheets.py checks returned rows against the key it
loads through here, and turns a checked row into model names only through `unblind`. Rater
folders and the manifest never hold anything this module writes.
"""

from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, Problem, RatingsError
from ..fsutil import atomic_write_text, safe_join
from ..results import Results
from ._common import FORMAT_VERSION, PACKET_FORMAT, STRATA, Rating, _dumps, _Item, _Part, sheet_columns
from .rubrics import Rubric, _parse_rubric

KEY_FORMAT = "ftevals.packet-key"


# -- writing -------------------------------------------------------------------------------------


def _answer_key(
    results: Results,
    parts: Sequence[_Part],
    items: Sequence[_Item],
    raters: Sequence[str],
    seed: int,
    n_per_suite: int,
    raters_per_item: int,
    models: Sequence[str] | None,
) -> dict[str, Any]:
    """The whole key: part -> suite, models and rubric; item code -> suite, example, letter -> model, raters.

    Its `packet_id` is a hash of everything else in it, so the same inputs and seed give the same id.
    """
    key = {
        "source": {"run_id": results.run.id, "schema_version": results.schema_version},
        "seed": seed,
        "settings": {
            "n_per_suite": n_per_suite,
            "raters": list(raters),
            "raters_per_item": raters_per_item,
            "models": list(models) if models is not None else None,
        },
        "parts": {
            p.part: {
                "suite": p.suite.name,
                "task": p.suite.task,
                "reference": p.models[0],
                "models": list(p.models),
                "letters": list(p.letters),
                "rubric": p.rubric.to_dict(),
                "selection": {
                    "n_candidates": p.n_candidates,
                    "n_selected": len(p.selected),
                    "strata": {s: sum(1 for _, st in p.selected if st == s) for s in STRATA},
                },
            }
            for p in parts
        },
        "items": {
            it.code: {
                "part": it.part,
                "suite": it.suite,
                "example": it.example,
                "stratum": it.stratum,
                "letters": dict(zip(string.ascii_uppercase, it.order)),
                "raters": list(it.raters),
            }
            for it in items
        },
    }
    packet_id = hashlib.sha256(_dumps(key).encode()).hexdigest()[:16]
    return {"format": KEY_FORMAT, "version": FORMAT_VERSION, "packet_id": packet_id, **key}


def write_answer_key(out: Path, key: Mapping[str, Any]) -> Path:
    """Write `key` to out/key/answer_key.json (NOT for raters) and return the path."""
    key_path = safe_join(out, "key", "answer_key.json")
    atomic_write_text(key_path, _dumps(key, indent=2))
    return key_path


# -- reading -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PacketInfo:
    """A packet folder as importing needs it: the manifest and the key, checked, with rubrics parsed."""

    packet_dir: Path
    packet_id: str
    seed: int
    source_run: str | None
    raters: tuple[str, ...]
    parts: Mapping[str, Mapping[str, Any]]  # from the key, with "rubric" parsed below
    rubrics: Mapping[str, Rubric]
    columns: Mapping[str, tuple[str, ...]]
    items: Mapping[str, Mapping[str, Any]]
    assigned: Mapping[tuple[str, str], tuple[str, ...]]  # (rater, part) -> item codes


def _load_packet(packet_dir: Path) -> _PacketInfo:
    def load(rel: str) -> dict[str, Any]:
        path = packet_dir / rel
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RatingsError(Problem(str(path), None, "not found; pass the folder that build_packets wrote")) from None
        except (OSError, ValueError) as exc:
            raise RatingsError(Problem(str(path), None, f"cannot be read as JSON ({exc})")) from None
        if not isinstance(data, dict):
            raise RatingsError(Problem(str(path), None, "must hold a JSON object"))
        return data

    manifest = load("manifest.json")
    key = load("key/answer_key.json")
    try:
        return _packet_info(packet_dir, manifest, key)
    except RatingsError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, ConfigError) as exc:
        raise RatingsError(Problem(str(packet_dir), None, f"the manifest or key is damaged ({exc!r}); rebuild the packet "
                                                          "or restore the files build_packets wrote")) from None


def _packet_info(packet_dir: Path, manifest: Mapping[str, Any], key: Mapping[str, Any]) -> _PacketInfo:
    if manifest.get("format") != PACKET_FORMAT or key.get("format") != KEY_FORMAT:
        raise RatingsError(Problem(str(packet_dir), None, "is not an ftevals packet folder (manifest or key has another format)"))
    if manifest.get("version") != FORMAT_VERSION or key.get("version") != FORMAT_VERSION:
        raise RatingsError(Problem(str(packet_dir), None, f"packet format version is not {FORMAT_VERSION}; rebuild it"))
    if manifest.get("packet_id") != key.get("packet_id"):
        raise RatingsError(Problem(str(packet_dir / "key" / "answer_key.json"), None,
                                   "belongs to another packet than manifest.json (packet ids differ)"))
    rubrics = {name: _parse_rubric(p["rubric"], f"key part {name}") for name, p in key["parts"].items()}
    columns = {name: sheet_columns(p["letters"], rubrics[name]) for name, p in key["parts"].items()}
    assigned = {(entry["rater"], part): tuple(codes) for entry in manifest["raters"] for part, codes in entry["items"].items()}
    return _PacketInfo(
        packet_dir=packet_dir,
        packet_id=str(key["packet_id"]),
        seed=int(key.get("seed", 0)),
        source_run=(key.get("source") or {}).get("run_id"),
        raters=tuple(entry["rater"] for entry in manifest["raters"]),
        parts=key["parts"],
        rubrics=rubrics,
        columns=columns,
        items=key["items"],
        assigned=assigned,
    )


def unblind(
    entry: Mapping[str, Any],
    *,
    rater: str,
    part: str,
    item: str,
    letters: Sequence[str],
    scores: Mapping[str, dict[str, int]],
    ranking: Sequence[Sequence[str]],
    comment: str,
    source: str,
) -> Rating:
    """A checked sheet row (scores per letter, a ranking of letters) as a `Rating` in model names.

    `entry` is the key's entry for the row's item: it names the suite, the example and which model
    each letter showed.
    """
    to_model = entry["letters"]
    return Rating(
        rater=rater,
        part=part,
        suite=entry["suite"],
        item=item,
        example=entry["example"],
        scores={to_model[letter]: scores[letter] for letter in letters},
        ranking=tuple(tuple(to_model[x] for x in group) for group in ranking),
        comment=comment,
        source=source,
    )
