"""Blinded human-rating packets built from a results file, and the import of the returned sheets.

Two public stages, both pure functions of their inputs (no model, no clock, no global randomness):

    build_packets(results, out_dir, ...)  -> PacketManifest   writes the packet folder
    import_ratings(packet_dir, sheets)    -> HumanResults     validates, unblinds, computes statistics
    merge_into_results(results, human)    -> results          a copy with suite["human"] filled in

A packet folder (see docs/packets.md for the full description)::

    out_dir/
      manifest.json                 blinded: raters, parts, columns, item codes per rater, file hashes
      key/answer_key.json           NOT for raters: item code -> suite, example id, letter -> model
      raters/<rater>/packet.html    printable instructions, rubrics and items
      raters/<rater>/part-<n>.csv   the sheet to fill (one row per item), and the same as .jsonl

Blinding is the point of the whole module, so everything a rater can see is built from opaque
values only: random item codes, "part-<n>" instead of suite names, response letters shuffled per
item with every model in every position equally often, items in a random order per rater, and no
metric, token count, file name, fingerprint or model name anywhere in the rater folders or the
manifest. The only place that links codes and letters back to examples and models is the key.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import itertools
import json
import math
import random
import re
import shutil
import string
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from . import agreement
from .errors import ConfigError, Problem, RatingsError, ResultsError
from .fsutil import atomic_write_text, safe_join
from .specs import check_name

PACKET_FORMAT = "ftevals.packet"
KEY_FORMAT = "ftevals.packet-key"
HUMAN_SCHEMA = "ftevals.human"
FORMAT_VERSION = 1

#: Fixed columns of every sheet; per-response score columns and the answers follow them.
ID_COLUMNS = ("rater", "part", "item")
ANSWER_COLUMNS = ("preference", "comment")

#: Selection strata, in priority order: an example that is both a regression and a metric
#: disagreement is counted as a regression, the case a reviewer most wants a human to look at.
STRATA = ("regression", "fix", "disagreement", "random")

# Item codes avoid characters that are easy to misread or mistype (0/O, 1/I, 2/Z, 5/S, 6/G, 8/B)
# and always start with a letter, so spreadsheets never turn them into numbers.
_CODE_LETTERS = "ACDEFHJKLMNPQRTUVWXY"
_CODE_ALPHABET = _CODE_LETTERS + "3479"
_CODE_LENGTH = 6

_CRITERION_ID = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_INT_TEXT = re.compile(r"^[+-]?\d+(\.0*)?$")

#: An item is flagged when two raters' scores for one response and criterion differ by this much.
SCORE_SPREAD_FLAG = 2
#: A rater is flagged when their mean quadratic-weighted kappa with the others is below this ...
KAPPA_FLAG = 0.2
#: ... or when leaving them out raises the suite's alpha by at least this much. Only with at least
#: ALPHA_GAIN_MIN_RATERS raters: with three, leaving one out leaves a single pair, whose alpha on a
#: few dozen items swings by 0.1 through noise alone.
ALPHA_GAIN_FLAG = 0.1
ALPHA_GAIN_MIN_RATERS = 4


# ------------------------------------------------------------------------------------------------
# Records
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Criterion:
    """One rubric criterion: `anchors[i]` describes scale level `scale_min + i`."""

    id: str
    label: str
    question: str
    anchors: tuple[str, ...]


@dataclass(frozen=True)
class Rubric:
    """What raters are asked, for one suite: criteria on an integer scale, a ranking and a comment."""

    name: str
    title: str
    instructions: str
    criteria: tuple[Criterion, ...]
    scale_min: int = 1
    scale_max: int = 5
    show_reference: bool = True
    preference_question: str = "Overall, which response is better?"
    allow_tie: bool = True
    comment_prompt: str = "Optional comment."

    @property
    def levels(self) -> tuple[int, ...]:
        return tuple(range(self.scale_min, self.scale_max + 1))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, the same shape `load_rubric` accepts."""
        return {
            "name": self.name,
            "title": self.title,
            "instructions": self.instructions,
            "show_reference": self.show_reference,
            "scale": {"min": self.scale_min, "max": self.scale_max},
            "criteria": [
                {
                    "id": c.id,
                    "label": c.label,
                    "question": c.question,
                    "anchors": {str(level): text for level, text in zip(self.levels, c.anchors)},
                }
                for c in self.criteria
            ],
            "preference": {"question": self.preference_question, "allow_tie": self.allow_tie},
            "comment": {"prompt": self.comment_prompt},
        }


@dataclass(frozen=True)
class PartSummary:
    """One part of a packet: the items drawn from one suite (organiser-facing: names the suite)."""

    part: str
    suite: str
    task: str
    rubric: str
    models: tuple[str, ...]
    n_items: int
    n_candidates: int
    strata: Mapping[str, int]


@dataclass(frozen=True)
class PacketManifest:
    """What `build_packets` wrote. Paths are absolute; `rater_files` are the files to send out."""

    out_dir: Path
    packet_id: str
    manifest_path: Path
    key_path: Path
    raters: tuple[str, ...]
    parts: tuple[PartSummary, ...]
    rater_files: Mapping[str, tuple[Path, ...]]

    def summary(self) -> str:
        """A few lines for a command-line tool to print."""
        lines = [f"packet {self.packet_id} in {self.out_dir}"]
        for p in self.parts:
            strata = ", ".join(f"{k} {v}" for k, v in p.strata.items() if v)
            lines.append(
                f"  {p.part}: suite {p.suite} ({p.rubric} rubric), {p.n_items} of {p.n_candidates} examples"
                f" ({strata}), models {', '.join(p.models)}"
            )
        for rater, files in self.rater_files.items():
            lines.append(f"  send {files[0].parent} to rater {rater}")
        lines.append(f"  keep {self.key_path} to yourself: it unblinds the ratings")
        return "\n".join(lines)


@dataclass(frozen=True)
class Rating:
    """One rater's answers for one item, already unblinded (letters replaced by model names)."""

    rater: str
    part: str
    suite: str
    item: str
    example: str
    #: model -> criterion -> score
    scores: Mapping[str, Mapping[str, int]]
    #: best-to-worst groups of model names; models in one group are tied
    ranking: tuple[tuple[str, ...], ...]
    comment: str
    #: "file:line" the row came from, for messages
    source: str

    def rank_of(self, model: str) -> int:
        for position, group in enumerate(self.ranking):
            if model in group:
                return position
        raise KeyError(model)


@dataclass(frozen=True)
class HumanResults:
    """Imported ratings and their statistics; `suites[name]` is the JSON block for `suite["human"]`."""

    packet_id: str
    source_run: str | None
    raters: tuple[str, ...]
    ratings: tuple[Rating, ...]
    suites: Mapping[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"packet_id": self.packet_id, "source_run": self.source_run, "suites": dict(self.suites)}

    def summary(self) -> str:
        """A few lines for a command-line tool to print (preferences, alpha, flags)."""
        lines = [f"{len(self.ratings)} ratings from {len(self.raters)} raters (packet {self.packet_id})"]
        for name, block in self.suites.items():
            alpha = block["agreement"]["krippendorff_alpha"]["overall"]
            lines.append(f"  {name}: {block['n_items']} items, alpha (ordinal) {_fmt(alpha)}")
            for model, pref in block["preferences"].items():
                lines.append(
                    f"    {model} vs {pref['reference']}: wins {_fmt(pref['win_rate'])}"
                    f" (95% CI {_fmt(pref['win_ci_low'])}..{_fmt(pref['win_ci_high'])}),"
                    f" ties {_fmt(pref['tie_rate'])}, losses {_fmt(pref['loss_rate'])}, n={pref['n']}"
                )
            flags = block["flags"]
            if flags["items"] or flags["raters"]:
                lines.append(
                    f"    flagged: {len(flags['items'])} items, raters "
                    f"{', '.join(r['rater'] for r in flags['raters']) or 'none'}"
                )
        return "\n".join(lines)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


# ------------------------------------------------------------------------------------------------
# Rubrics
# ------------------------------------------------------------------------------------------------

#: Which packaged rubric a suite's task gets by default.
TASK_RUBRICS = {"classification": "classification", "generation": "generation", "extraction": "extraction"}


def packaged_rubrics() -> tuple[str, ...]:
    """Names of the rubrics shipped in ftevals/rubrics/."""
    folder = resources.files("ftevals.rubrics")
    return tuple(sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json")))


def _packaged_rubric_dict(name: str) -> dict[str, Any]:
    if name not in packaged_rubrics():
        raise ConfigError(f"unknown rubric {name!r}; the packaged rubrics are {', '.join(packaged_rubrics())}")
    text = resources.files("ftevals.rubrics").joinpath(f"{name}.json").read_text(encoding="utf-8")
    return json.loads(text)


def default_rubric(task: str) -> Rubric:
    """The rubric a suite of this task gets when it defines none (`default` for unknown tasks)."""
    return load_rubric(None, task=task)


def load_rubric(spec: Mapping[str, Any] | str | None, *, task: str = "custom", where: str = "rubric") -> Rubric:
    """Resolve a suite's rubric: None (task default), a packaged name, or a dict.

    A dict is laid over a packaged rubric key by key (its `"extends"` names which one; by default the
    task's), so a suite can replace only `criteria` or only `instructions`.
    """
    base_name = TASK_RUBRICS.get(task, "default")
    if spec is None:
        raw = _packaged_rubric_dict(base_name)
    elif isinstance(spec, str):
        raw = _packaged_rubric_dict(spec)
    elif isinstance(spec, Mapping):
        extends = spec.get("extends", base_name)
        if not isinstance(extends, str):
            raise ConfigError(f"{where}: 'extends' must name a packaged rubric, got {extends!r}")
        raw = {**_packaged_rubric_dict(extends), **{k: v for k, v in spec.items() if k != "extends"}}
        if "name" not in spec:
            raw["name"] = f"{extends}+custom"
    else:
        raise ConfigError(f"{where} must be a dict, a packaged rubric name or None, got {type(spec).__name__}")
    return _parse_rubric(raw, where)


def _parse_rubric(raw: Mapping[str, Any], where: str) -> Rubric:
    problems: list[str] = []

    def text(value: Any, what: str) -> str:
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{what} must be a non-empty string, got {value!r}")
            return ""
        return value.strip()

    scale = raw.get("scale", {"min": 1, "max": 5})
    lo, hi = (scale.get("min"), scale.get("max")) if isinstance(scale, Mapping) else (None, None)
    if not (isinstance(lo, int) and isinstance(hi, int) and not isinstance(lo, bool) and not isinstance(hi, bool)
            and lo < hi and hi - lo <= 10):
        problems.append(f"scale must be {{'min': int, 'max': int}} with min < max and at most 11 levels, got {scale!r}")
        lo, hi = 1, 5
    levels = [str(v) for v in range(lo, hi + 1)]

    criteria: list[Criterion] = []
    raw_criteria = raw.get("criteria")
    if not isinstance(raw_criteria, list) or not raw_criteria:
        problems.append("criteria must be a non-empty list")
        raw_criteria = []
    seen: set[str] = set()
    for i, c in enumerate(raw_criteria):
        if not isinstance(c, Mapping):
            problems.append(f"criteria[{i}] must be an object")
            continue
        cid = c.get("id")
        if not isinstance(cid, str) or not _CRITERION_ID.match(cid):
            problems.append(f"criteria[{i}].id must be 1-32 lower-case letters, digits or '_', got {cid!r}")
            cid = f"criterion{i}"
        elif cid in seen:
            problems.append(f"criteria[{i}].id {cid!r} is used twice")
        seen.add(cid)
        anchors = c.get("anchors")
        if not isinstance(anchors, Mapping) or sorted(map(str, anchors)) != sorted(levels):
            problems.append(f"criterion {cid!r}: anchors must describe every level {', '.join(levels)} exactly once")
            anchor_texts: tuple[str, ...] = tuple("" for _ in levels)
        else:
            anchor_texts = tuple(text(anchors[k] if k in anchors else anchors[int(k)], f"criterion {cid!r} anchor {k}")
                                 for k in levels)
        criteria.append(Criterion(cid, text(c.get("label", cid), f"criterion {cid!r} label"),
                                  text(c.get("question"), f"criterion {cid!r} question"), anchor_texts))

    preference = raw.get("preference", {})
    comment = raw.get("comment", {})
    if not isinstance(preference, Mapping):
        problems.append("preference must be an object with 'question' and 'allow_tie'")
        preference = {}
    if not isinstance(comment, Mapping):
        problems.append("comment must be an object with 'prompt'")
        comment = {}
    allow_tie = preference.get("allow_tie", True)
    show_reference = raw.get("show_reference", True)
    for name, flag in (("preference.allow_tie", allow_tie), ("show_reference", show_reference)):
        if not isinstance(flag, bool):
            problems.append(f"{name} must be true or false, got {flag!r}")
    rubric = Rubric(
        name=text(raw.get("name"), "name"),
        title=text(raw.get("title"), "title"),
        instructions=text(raw.get("instructions"), "instructions"),
        criteria=tuple(criteria),
        scale_min=lo,
        scale_max=hi,
        show_reference=bool(show_reference),
        preference_question=text(preference.get("question"), "preference.question"),
        allow_tie=bool(allow_tie),
        comment_prompt=text(comment.get("prompt"), "comment.prompt"),
    )
    if problems:
        raise ConfigError(f"{where} is invalid: " + "; ".join(problems))
    return rubric


# ------------------------------------------------------------------------------------------------
# Building packets
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Item:
    code: str
    part: str
    suite: str
    example: str
    stratum: str
    #: models in letter order: letters[i] shows order[i]
    order: tuple[str, ...]
    raters: tuple[str, ...]


@dataclass(frozen=True)
class _Part:
    part: str
    number: int
    suite: Mapping[str, Any]
    rubric: Rubric
    models: tuple[str, ...]
    selected: tuple[tuple[str, str], ...]  # (example id, stratum)
    n_candidates: int

    @property
    def letters(self) -> tuple[str, ...]:
        return tuple(string.ascii_uppercase[: len(self.models)])

    @property
    def columns(self) -> tuple[str, ...]:
        return sheet_columns(self.letters, self.rubric)


def sheet_columns(letters: Sequence[str], rubric: Rubric) -> tuple[str, ...]:
    """Columns of a sheet: ids, then one score column per response and criterion, then the answers."""
    scores = [f"{letter}_{c.id}" for letter in letters for c in rubric.criteria]
    return (*ID_COLUMNS, *scores, *ANSWER_COLUMNS)


def _rng(seed: int, *purpose: str) -> random.Random:
    # String seeds are hashed with SHA-512 by `random`, so every stream is stable across Python
    # versions and independent of the others (changing one suite never reshuffles another).
    return random.Random(":".join(["ftevals-packets", str(seed), *purpose]))


def _stable_int(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:8], "big")


def build_packets(
    results: Mapping[str, Any],
    out_dir: str | Path,
    *,
    suites: Sequence[str] | None = None,
    n_per_suite: int = 30,
    raters: int | Sequence[str] = 3,
    raters_per_item: int = 2,
    seed: int = 0,
    models: Sequence[str] | None = None,
    rubrics: Mapping[str, Mapping[str, Any] | str] | None = None,
    overwrite: bool = False,
) -> PacketManifest:
    """Write blinded rating packets for `results` (a results-file dict) into `out_dir`.

    - `suites`: names to include (default: every suite with examples and at least two models).
    - `n_per_suite`: examples per suite, stratified over regressions, fixes, metric disagreements
      and the rest (a quarter each at most, the remainder drawn at random).
    - `raters`: how many (named r1..rN) or the raters' names; `raters_per_item` >= 2 of them rate
      each item, with loads balanced to within one item.
    - `models`: which models to show (default: all of the suite's); the suite's reference is
      always shown, since preferences are reported against it.
    - `rubrics`: suite name -> rubric dict or packaged name, overriding the suite's `rubric`.
    - `overwrite`: replace a packet previously written to `out_dir` (refuses other content).

    The same inputs and seed give byte-identical files.
    """
    for name, value in (("suites", suites), ("models", models)):
        if isinstance(value, str):
            raise ConfigError(f"{name} must be a list of names, got the string {value!r}; write [{value!r}]")
    rater_names = _rater_names(raters)
    if not isinstance(raters_per_item, int) or not 2 <= raters_per_item <= len(rater_names):
        raise ConfigError(
            f"raters_per_item must be between 2 and the number of raters ({len(rater_names)}), got {raters_per_item!r}; "
            "every item needs at least two raters for agreement statistics"
        )
    if not isinstance(n_per_suite, int) or n_per_suite < 1:
        raise ConfigError(f"n_per_suite must be a whole number >= 1, got {n_per_suite!r}")
    if not isinstance(seed, int):
        raise ConfigError(f"seed must be an int, got {seed!r}")

    parts = _plan_parts(results, suites=suites, models=models, rubrics=rubrics or {}, n=n_per_suite, seed=seed)
    items = _plan_items(parts, rater_names, raters_per_item, seed)

    out = Path(out_dir)
    _prepare_out_dir(out, overwrite)

    key = _answer_key(results, parts, items, rater_names, seed, n_per_suite, raters_per_item, models)
    packet_id = hashlib.sha256(_dumps(key).encode()).hexdigest()[:16]
    key = {"format": KEY_FORMAT, "version": FORMAT_VERSION, "packet_id": packet_id, **key}

    by_code = {it.code: it for it in items}
    examples = {p.part: {str(e.get("id")): e for e in p.suite.get("examples") or []} for p in parts}
    rater_files: dict[str, tuple[Path, ...]] = {}
    hashes: dict[str, str] = {}
    assignments: dict[str, dict[str, list[str]]] = {}
    for rater in rater_names:
        folder = safe_join(out, "raters", rater)
        orders = {
            p.part: _rater_order([it.code for it in items if it.part == p.part and rater in it.raters], seed, rater, p.part)
            for p in parts
        }
        assignments[rater] = {p.part: orders[p.part] for p in parts}
        files: dict[str, str] = {
            "packet.html": _render_html(rater, parts, orders, by_code, examples),
        }
        for p in parts:
            files[f"{p.part}.csv"] = _render_csv(rater, p, orders[p.part])
            files[f"{p.part}.jsonl"] = _render_jsonl(rater, p, orders[p.part])
        written = []
        for name, text in files.items():
            path = safe_join(folder, name)
            atomic_write_text(path, text)
            written.append(path)
            hashes[path.relative_to(out.resolve()).as_posix()] = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
        rater_files[rater] = tuple(written)

    manifest = _manifest(packet_id, seed, parts, rater_names, raters_per_item, assignments, hashes)
    manifest_path = safe_join(out, "manifest.json")
    key_path = safe_join(out, "key", "answer_key.json")
    atomic_write_text(key_path, _dumps(key, indent=2))
    atomic_write_text(manifest_path, _dumps(manifest, indent=2))

    return PacketManifest(
        out_dir=out.resolve(),
        packet_id=packet_id,
        manifest_path=manifest_path,
        key_path=key_path,
        raters=tuple(rater_names),
        parts=tuple(
            PartSummary(
                part=p.part,
                suite=str(p.suite["name"]),
                task=str(p.suite.get("task", "custom")),
                rubric=p.rubric.name,
                models=p.models,
                n_items=len(p.selected),
                n_candidates=p.n_candidates,
                strata={s: sum(1 for _, st in p.selected if st == s) for s in STRATA},
            )
            for p in parts
        ),
        rater_files=rater_files,
    )


def _dumps(obj: Any, indent: int | None = None) -> str:
    text = json.dumps(obj, ensure_ascii=False, indent=indent, allow_nan=False, separators=None if indent else (",", ":"))
    return text + "\n" if indent else text


def _rater_names(raters: int | Sequence[str]) -> list[str]:
    if isinstance(raters, bool):
        raise ConfigError(f"raters must be a number or a list of names, got {raters!r}")
    if isinstance(raters, int):
        if raters < 2:
            raise ConfigError(f"raters must be at least 2 (agreement needs two ratings per item), got {raters}")
        return [f"r{i}" for i in range(1, raters + 1)]
    if isinstance(raters, str):
        raise ConfigError(f"raters must be a number or a list of names, got the string {raters!r}")
    names = [check_name("rater", str(r)) for r in raters]
    if len(names) < 2:
        raise ConfigError(f"at least 2 raters are needed, got {names}")
    dupes = sorted(n for n, c in Counter(names).items() if c > 1)
    if dupes:
        raise ConfigError(f"rater names must be unique; repeated: {', '.join(dupes)}")
    return names


def _check_results(results: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    if not isinstance(results, Mapping):
        raise ResultsError(f"results must be the dict of a results file, got {type(results).__name__}")
    if results.get("schema", "ftevals.results") != "ftevals.results":
        raise ResultsError(f"not an ftevals results file (schema {results.get('schema')!r})")
    if results.get("schema_version", 1) != 1:
        raise ResultsError(
            f"results schema_version {results.get('schema_version')!r} is not supported; this ftevals reads version 1"
        )
    suites = results.get("suites")
    if not isinstance(suites, list) or not all(isinstance(s, Mapping) and "name" in s for s in suites):
        raise ResultsError("results['suites'] must be a list of suite objects with a 'name'")
    repeated = sorted(n for n, c in Counter(str(s["name"]) for s in suites).items() if c > 1)
    if repeated:
        raise ResultsError(f"suite names must be unique in a results file; repeated: {', '.join(repeated)}")
    return suites


def _plan_parts(
    results: Mapping[str, Any],
    *,
    suites: Sequence[str] | None,
    models: Sequence[str] | None,
    rubrics: Mapping[str, Mapping[str, Any] | str],
    n: int,
    seed: int,
) -> list[_Part]:
    all_suites = _check_results(results)
    by_name = {str(s["name"]): s for s in all_suites}
    if suites is not None:
        unknown = [s for s in suites if s not in by_name]
        if unknown:
            raise ConfigError(f"unknown suite(s) {', '.join(unknown)}; the results file has {', '.join(by_name) or 'none'}")
        chosen = [by_name[s] for s in dict.fromkeys(suites)]
    else:
        chosen = list(all_suites)
    if models is not None:
        known = {m for s in chosen for m in s.get("models") or []}
        unknown = [m for m in models if m not in known]
        if unknown:
            raise ConfigError(f"unknown model(s) {', '.join(unknown)}; the chosen suites have {', '.join(sorted(known))}")
    unknown_rubrics = [name for name in rubrics if name not in by_name]
    if unknown_rubrics:
        raise ConfigError(f"rubrics given for unknown suite(s): {', '.join(unknown_rubrics)}")

    parts: list[_Part] = []
    skipped: list[str] = []
    for suite in chosen:
        name = check_name("suite", str(suite["name"]))
        reference = suite.get("reference", "base")
        suite_models = [m for m in suite.get("models") or [] if isinstance(m, str)]
        shown = [reference] + [m for m in suite_models if m != reference and (models is None or m in models)]
        candidates = _eligible_examples(suite, shown)
        if len(shown) < 2 or not candidates:
            why = "fewer than two models to compare" if len(shown) < 2 else "no example has an output from every model"
            if suites is not None:
                raise ConfigError(f"suite {name!r} cannot be rated: {why}")
            skipped.append(name)
            continue
        if len(shown) > 26:
            raise ConfigError(f"suite {name!r} has {len(shown)} models; packets show at most 26 (A-Z); pass models=")
        rubric = load_rubric(rubrics.get(name, suite.get("rubric")), task=str(suite.get("task", "custom")),
                             where=f"suite {name!r} rubric")
        selected = _select_examples(suite, shown, candidates, n, seed)
        number = len(parts) + 1
        parts.append(_Part(f"part-{number}", number, suite, rubric, tuple(shown), tuple(selected), len(candidates)))
    if not parts:
        raise ConfigError(
            "no suite can be rated: every suite needs examples with outputs from at least two models"
            + (f" (skipped {', '.join(skipped)})" if skipped else "")
        )
    return parts


def _eligible_examples(suite: Mapping[str, Any], shown: Sequence[str]) -> list[Mapping[str, Any]]:
    """Examples where every shown model produced a text (a failed generation cannot be rated)."""
    out = []
    for ex in suite.get("examples") or []:
        outputs = ex.get("outputs") or {}
        if "id" in ex and all(isinstance((outputs.get(m) or {}).get("text"), str) for m in shown):
            out.append(ex)
    return sorted(out, key=lambda e: str(e["id"]))


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(x)


def _stratum_of(suite: Mapping[str, Any], shown: Sequence[str]) -> dict[str, str]:
    """Example id -> stratum, from per-example scores and the comparison lists of the results."""
    reference = shown[0]
    metrics = [m for m in suite.get("metrics") or [] if isinstance(m, Mapping) and "name" in m]
    primary = next((m["name"] for m in metrics if m.get("primary")), metrics[0]["name"] if metrics else None)
    direction = {m["name"]: (1.0 if m.get("higher_is_better", True) else -1.0) for m in metrics}

    listed: dict[str, set[str]] = {"regression": set(), "fix": set()}
    for comp in suite.get("comparisons") or []:
        if comp.get("model") not in shown[1:] or comp.get("reference", reference) != reference:
            continue
        listed["regression"].update(map(str, comp.get("regressions") or []))
        listed["fix"].update(map(str, comp.get("fixes") or []))
        for drop in comp.get("largest_drops") or []:
            if isinstance(drop, Mapping) and (_number(drop.get("delta")) or 0.0) < 0:
                listed["regression"].add(str(drop.get("id")))

    strata: dict[str, str] = {}
    for ex in suite.get("examples") or []:
        eid = str(ex.get("id"))
        outputs = ex.get("outputs") or {}
        ref_scores = (outputs.get(reference) or {}).get("scores") or {}
        worse = better = disagree = False
        for model in shown[1:]:
            scores = (outputs.get(model) or {}).get("scores") or {}
            signs = set()
            for metric, sign in direction.items():
                a, b = _number(scores.get(metric)), _number(ref_scores.get(metric))
                if a is None or b is None or a == b:
                    continue
                d = (a - b) * sign
                signs.add(d > 0)
                if metric == primary:
                    worse |= d < 0
                    better |= d > 0
            # One metric says this model got better on the example, another that it got worse.
            disagree |= signs == {True, False}
        if worse or eid in listed["regression"]:
            strata[eid] = "regression"
        elif better or eid in listed["fix"]:
            strata[eid] = "fix"
        elif disagree:
            strata[eid] = "disagreement"
        else:
            strata[eid] = "random"
    return strata


def _select_examples(
    suite: Mapping[str, Any], shown: Sequence[str], candidates: Sequence[Mapping[str, Any]], n: int, seed: int
) -> list[tuple[str, str]]:
    """Up to n (example id, stratum) pairs: a quarter each from the targeted strata, then random."""
    rng = _rng(seed, "select", str(suite["name"]))
    strata = _stratum_of(suite, shown)
    ids = [str(e["id"]) for e in candidates]
    quota = math.ceil(n / 4)
    chosen: list[tuple[str, str]] = []
    taken: set[str] = set()
    for stratum in STRATA[:-1]:
        pool = [i for i in ids if strata.get(i) == stratum]
        for eid in rng.sample(pool, min(quota, len(pool), n - len(chosen))):
            chosen.append((eid, stratum))
            taken.add(eid)
    rest = [i for i in ids if i not in taken]
    for eid in rng.sample(rest, min(len(rest), n - len(chosen))):
        chosen.append((eid, "random"))
    # Shuffle so that neither codes nor letter orders line up with the strata.
    rng.shuffle(chosen)
    return chosen


def _letter_orders(models: Sequence[str], n: int, rng: random.Random) -> list[tuple[str, ...]]:
    """n orderings of `models` in which every model sits in every position about equally often.

    With up to four models whole blocks of all k! orders are dealt out (shuffled per block), so the
    reference is not "usually A" even by chance; above that, independent random orders.
    """
    k = len(models)
    if k > 4:
        orders = []
        for _ in range(n):
            order = list(models)
            rng.shuffle(order)
            orders.append(tuple(order))
        return orders
    perms = list(itertools.permutations(models))
    orders = []
    while len(orders) < n:
        block = perms[:]
        rng.shuffle(block)
        orders.extend(block)
    return orders[:n]


def _item_codes(count: int, rng: random.Random) -> list[str]:
    codes: list[str] = []
    seen: set[str] = set()
    while len(codes) < count:
        code = rng.choice(_CODE_LETTERS) + "".join(rng.choice(_CODE_ALPHABET) for _ in range(_CODE_LENGTH - 1))
        if code not in seen:
            seen.add(code)
            codes.append(code)
    return codes


def _plan_items(parts: Sequence[_Part], raters: Sequence[str], per_item: int, seed: int) -> list[_Item]:
    codes = iter(_item_codes(sum(len(p.selected) for p in parts), _rng(seed, "codes")))
    assign_rng = _rng(seed, "assign")
    load = {r: 0 for r in raters}
    items: list[_Item] = []
    for p in parts:
        orders = _letter_orders(p.models, len(p.selected), _rng(seed, "letters", p.part))
        together: Counter[tuple[str, str]] = Counter()
        for (eid, stratum), order in zip(p.selected, orders):
            chosen = _pick_raters(raters, per_item, load, together, assign_rng)
            items.append(_Item(next(codes), p.part, str(p.suite["name"]), eid, stratum, order, chosen))
    return items


def _pick_raters(
    raters: Sequence[str], per_item: int, load: dict[str, int], together: Counter[tuple[str, str]], rng: random.Random
) -> tuple[str, ...]:
    """Pick the least-loaded raters (keeps loads within one item of each other); among equally
    loaded ones prefer raters who have rated together least, so every pair shares items for kappa."""
    chosen: list[str] = []
    for _ in range(per_item):
        tiebreak = {r: rng.random() for r in raters}
        best = min(
            (r for r in raters if r not in chosen),
            key=lambda r: (load[r], sum(together[tuple(sorted((r, c)))] for c in chosen), tiebreak[r]),
        )
        chosen.append(best)
    for r in chosen:
        load[r] += 1
    for a, b in itertools.combinations(sorted(chosen), 2):
        together[(a, b)] += 1
    # Store in the packet's rater order, not pick order, so nothing downstream depends on it.
    return tuple(r for r in raters if r in chosen)


def _rater_order(codes: list[str], seed: int, rater: str, part: str) -> list[str]:
    order = list(codes)
    _rng(seed, "order", rater, part).shuffle(order)
    return order


def _prepare_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder; choose another --out")
    if not out.exists() or not any(out.iterdir()):
        return
    manifest = out / "manifest.json"
    ours = False
    if manifest.is_file():
        try:
            ours = json.loads(manifest.read_text(encoding="utf-8")).get("format") == PACKET_FORMAT
        except (OSError, ValueError, AttributeError):
            ours = False
    if not overwrite:
        raise ConfigError(f"{out} is not empty; choose an empty folder, or pass overwrite=True to replace a packet there")
    if not ours:
        raise ConfigError(f"{out} is not empty and holds no ftevals packet; refusing to delete its content")
    extra = sorted(p.name for p in out.iterdir() if p.name not in {"manifest.json", "key", "raters"})
    if extra:
        raise ConfigError(f"{out} holds files that are not part of a packet ({', '.join(extra)}); refusing to overwrite")
    for sub in ("raters", "key"):
        target = safe_join(out, sub)
        if target.is_dir():
            shutil.rmtree(target)
    manifest.unlink()


def _answer_key(
    results: Mapping[str, Any],
    parts: Sequence[_Part],
    items: Sequence[_Item],
    raters: Sequence[str],
    seed: int,
    n_per_suite: int,
    raters_per_item: int,
    models: Sequence[str] | None,
) -> dict[str, Any]:
    run = results.get("run") or {}
    return {
        "source": {"run_id": run.get("id"), "schema_version": results.get("schema_version", 1)},
        "seed": seed,
        "settings": {
            "n_per_suite": n_per_suite,
            "raters": list(raters),
            "raters_per_item": raters_per_item,
            "models": list(models) if models is not None else None,
        },
        "parts": {
            p.part: {
                "suite": str(p.suite["name"]),
                "task": str(p.suite.get("task", "custom")),
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


def _manifest(
    packet_id: str,
    seed: int,
    parts: Sequence[_Part],
    raters: Sequence[str],
    raters_per_item: int,
    assignments: Mapping[str, Mapping[str, list[str]]],
    hashes: Mapping[str, str],
) -> dict[str, Any]:
    # Blinded on purpose: no suite, model or example names, so it may travel with the rater folders.
    return {
        "format": PACKET_FORMAT,
        "version": FORMAT_VERSION,
        "packet_id": packet_id,
        "seed": seed,
        "raters_per_item": raters_per_item,
        "key": "key/answer_key.json",
        "parts": [
            {
                "part": p.part,
                "title": p.rubric.title,
                "letters": list(p.letters),
                "criteria": [c.id for c in p.rubric.criteria],
                "scale": [p.rubric.scale_min, p.rubric.scale_max],
                "allow_tie": p.rubric.allow_tie,
                "columns": list(p.columns),
                "n_items": len(p.selected),
            }
            for p in parts
        ],
        "raters": [
            {
                "rater": r,
                "folder": f"raters/{r}",
                "n_items": sum(len(codes) for codes in assignments[r].values()),
                "items": {part: list(codes) for part, codes in assignments[r].items()},
            }
            for r in raters
        ],
        "files": dict(sorted(hashes.items())),
    }


# -- rendering ----------------------------------------------------------------------------------


def _display(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=2)


def _context(example: Mapping[str, Any]) -> list[dict[str, str]]:
    """Earlier turns of a multi-turn example (not the system prompt, not the final user turn)."""
    messages = [m for m in example.get("messages") or [] if isinstance(m, Mapping)]
    turns = [m for m in messages if m.get("role") in ("user", "assistant")]
    if turns and turns[-1].get("role") == "user":
        turns = turns[:-1]
    return [{"role": str(m["role"]), "content": _display(m.get("content", ""))} for m in turns]


def _input_text(example: Mapping[str, Any]) -> str:
    if example.get("input") is not None:
        return _display(example["input"])
    users = [m for m in example.get("messages") or [] if isinstance(m, Mapping) and m.get("role") == "user"]
    return _display(users[-1].get("content", "")) if users else ""


def _template():
    import jinja2  # imported lazily: only packet building needs it

    # autoescape=True always: inputs and model outputs are untrusted text.
    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True
    )
    source = resources.files("ftevals.rubrics").joinpath("packet.html.j2").read_text(encoding="utf-8")
    return env.from_string(source)


def _render_html(
    rater: str,
    parts: Sequence[_Part],
    orders: Mapping[str, list[str]],
    by_code: Mapping[str, _Item],
    examples: Mapping[str, Mapping[str, Mapping[str, Any]]],
) -> str:
    view_parts = []
    for p in parts:
        view_items = []
        for code in orders[p.part]:
            it = by_code[code]
            ex = examples[p.part][it.example]
            reference = ex.get("reference") if p.rubric.show_reference else None
            view_items.append(
                {
                    "code": code,
                    "context": _context(ex),
                    "input": _input_text(ex),
                    "reference": None if reference is None else _display(reference),
                    "responses": [
                        {"letter": letter, "text": ex["outputs"][model]["text"]}
                        for letter, model in zip(p.letters, it.order)
                    ],
                }
            )
        view_parts.append(
            {
                "number": p.number,
                "rubric": p.rubric,
                "levels": p.rubric.levels,
                "columns": p.columns,
                "sheet_csv": f"{p.part}.csv",
                "sheet_jsonl": f"{p.part}.jsonl",
                "entries": view_items,
            }
        )
    first = parts[0].rubric
    return _template().render(
        rater=rater,
        parts=view_parts,
        n_items=sum(len(v["entries"]) for v in view_parts),
        max_letters=max(len(p.models) for p in parts),
        scale_text=", ".join(
            sorted({f"{p.rubric.scale_min} to {p.rubric.scale_max}" for p in parts})
        ),
        example_criterion=first.criteria[0].id,
    )


def _render_csv(rater: str, part: _Part, codes: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(part.columns)
    blanks = [""] * (len(part.columns) - len(ID_COLUMNS))
    for code in codes:
        writer.writerow([rater, part.part, code, *blanks])
    # A byte-order mark makes spreadsheet programs read the file as UTF-8 (comments may be any script).
    return "\ufeff" + buf.getvalue()


def _render_jsonl(rater: str, part: _Part, codes: Sequence[str]) -> str:
    lines = []
    for code in codes:
        row: dict[str, Any] = {"rater": rater, "part": part.part, "item": code}
        row.update({col: None for col in part.columns[len(ID_COLUMNS):-2]})
        row.update({"preference": None, "comment": ""})
        lines.append(json.dumps(row, ensure_ascii=False))
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------
# Importing ratings
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PacketInfo:
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


@dataclass(frozen=True)
class _Row:
    path: str
    line: int
    #: the part whose columns this row was checked against
    part: str
    values: Mapping[str, Any]


def _read_sheet(path: Path, info: _PacketInfo, problems: list[Problem], claimed: set[tuple[str, str]]) -> list[_Row]:
    """Rows of one sheet whose columns match their part; header problems are reported here.

    A sheet rejected for its columns still `claims` the (rater, part) pairs its rows name, so the
    report does not add "no sheet for rater ..." on top of the real problem.
    """
    where = str(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl"):
        problems.append(Problem(where, None, f"unsupported sheet type {path.suffix or '(none)'!r}; return the .csv or the .jsonl sheet"))
        return []
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        problems.append(Problem(where, None, "not found"))
        return []
    except UnicodeDecodeError:
        problems.append(Problem(where, None, "is not UTF-8 text; save it as 'CSV UTF-8' (or UTF-8 JSON lines)"))
        return []
    except OSError as exc:
        problems.append(Problem(where, None, f"cannot be read ({exc.strerror})"))
        return []
    if suffix == ".csv":
        return _read_csv(where, path.stem, text, info, problems, claimed)
    return _read_jsonl(where, text, info, problems, claimed)


def _header_problem(expected: Sequence[str], got: Sequence[str]) -> str | None:
    dupes = sorted(c for c, n in Counter(got).items() if n > 1)
    missing = [c for c in expected if c not in got]
    extra = [c for c in got if c not in expected]
    if not (dupes or missing or extra):
        return None
    bits = []
    if missing:
        bits.append(f"missing {', '.join(missing)}")
    if extra:
        bits.append(f"unexpected {', '.join(repr(c) for c in extra)}")
    if dupes:
        bits.append(f"repeated {', '.join(dupes)}")
    return f"wrong header ({'; '.join(bits)}); expected the columns {','.join(expected)}"


def _read_csv(
    where: str, stem: str, text: str, info: _PacketInfo, problems: list[Problem], claimed: set[tuple[str, str]]
) -> list[_Row]:
    first_line = text.split("\n", 1)[0]
    # Spreadsheets in some locales save with ';' or tabs; accept those when the header has no comma.
    delimiter = "," if "," in first_line else (";" if ";" in first_line else ("\t" if "\t" in first_line else ","))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    records: list[tuple[int, list[str]]] = []
    last = 0
    try:
        for record in reader:
            records.append((last + 1, [cell.strip() for cell in record]))
            last = reader.line_num
    except csv.Error as exc:
        problems.append(Problem(where, last + 1, f"cannot be parsed as CSV ({exc})"))
        return []
    records = [(line, cells) for line, cells in records if any(cells)]
    if not records:
        problems.append(Problem(where, None, "is empty; expected a header line and one row per item"))
        return []
    _, header = records[0]
    body = records[1:]
    part = None
    if "part" in header and body:
        cells = body[0][1]
        idx = header.index("part")
        part = cells[idx] if idx < len(cells) else None
    if part not in info.columns:
        part = stem if stem in info.columns else part
    if part not in info.columns:
        problems.append(Problem(where, body[0][0] if body else 1,
                                f"cannot tell which part this sheet belongs to (part {part!r}); "
                                f"the packet's parts are {', '.join(info.columns)}"))
        return []
    expected = info.columns[part]
    bad = _header_problem(expected, header)
    if bad:
        problems.append(Problem(where, records[0][0], bad))
        if "rater" in header:
            at = header.index("rater")
            claimed.update((cells[at], part) for _, cells in body if at < len(cells))
        return []
    rows = []
    for line, cells in body:
        if len(cells) != len(header):
            problems.append(Problem(where, line, f"has {len(cells)} cells but the header has {len(header)}; "
                                                 "check for a stray delimiter or a missing cell"))
            continue
        rows.append(_Row(where, line, part, dict(zip(header, cells))))
    if not rows:
        problems.append(Problem(where, None, "has a header but no rows; expected one row per item"))
    return rows


def _read_jsonl(
    where: str, text: str, info: _PacketInfo, problems: list[Problem], claimed: set[tuple[str, str]]
) -> list[_Row]:
    rows = []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError as exc:
            problems.append(Problem(where, line, f"is not valid JSON ({exc.msg})"))
            continue
        if not isinstance(obj, dict):
            problems.append(Problem(where, line, f"must be a JSON object, got {type(obj).__name__}"))
            continue
        part = obj.get("part")
        if part not in info.columns:
            problems.append(Problem(where, line, f"unknown part {part!r}; the packet's parts are {', '.join(info.columns)}"))
            continue
        bad = _header_problem(info.columns[part], list(obj))
        if bad:
            if isinstance(obj.get("rater"), str):
                claimed.add((obj["rater"], part))
            problems.append(Problem(where, line, bad.replace("wrong header", "wrong fields").replace("columns", "fields")))
            continue
        rows.append(_Row(where, line, part, obj))
    if not rows and not problems:
        problems.append(Problem(where, None, "is empty; expected one JSON object per item"))
    return rows


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _parse_score(value: Any, lo: int, hi: int) -> int | str:
    """The score, or why it is unusable (a sentence fragment)."""
    scale = f"a whole number from {lo} to {hi}"
    if _blank(value):
        return f"is empty; give {scale}"
    if isinstance(value, bool):
        return f"must be {scale}, got {json.dumps(value)}"
    if isinstance(value, float) and value.is_integer():
        score = int(value)
    elif isinstance(value, int):
        score = value
    elif isinstance(value, str) and _INT_TEXT.match(value.strip()):
        # "4.0" is what some spreadsheets write for 4; "3.5" is not a level of the scale.
        score = int(float(value.strip()))
    else:
        return f"must be {scale}, got {value!r}"
    if not lo <= score <= hi:
        return f"= {score} is out of range; give {scale}"
    return score


def _parse_preference(value: Any, letters: Sequence[str], allow_tie: bool) -> tuple[tuple[str, ...], ...] | str:
    """Best-to-worst groups of letters, or why the value is unusable."""
    if len(letters) == 2:
        hint = "A, B or tie" if allow_tie else "A or B"
    else:
        example = f"{letters[-1]}>{letters[0]}" + ("=" if allow_tie else ">") + ">".join(letters[1:-1])
        hint = (f"a ranking from best to worst such as {example!r}, with every letter {', '.join(letters)} once"
                + (" ('=' for equally good), or tie" if allow_tie else ""))
    if _blank(value):
        return f"preference is empty; write {hint}"
    if not isinstance(value, str):
        return f"preference {value!r} is not valid; write {hint}"
    compact = re.sub(r"\s+", "", value).upper()
    if compact in ("TIE", "="):
        if not allow_tie:
            return f"preference {value!r}: this rubric does not allow ties; write {hint}"
        return (tuple(letters),)
    if len(letters) == 2 and compact in letters:
        return ((compact,), tuple(x for x in letters if x != compact))
    groups = [tuple(g.split("=")) for g in compact.split(">")]
    flat = [x for g in groups for x in g]
    if any(x not in letters for x in flat) or sorted(flat) != sorted(letters):
        return f"preference {value!r} is not valid; write {hint}"
    if not allow_tie and any(len(g) > 1 for g in groups):
        return f"preference {value!r}: this rubric does not allow ties; write {hint}"
    return tuple(groups)


def import_ratings(
    packet_dir: str | Path,
    sheets: Sequence[str | Path],
    *,
    partial: bool = False,
    resamples: int = 2000,
    kappa_threshold: float = KAPPA_FLAG,
) -> HumanResults:
    """Validate returned sheets against the packet, unblind them and compute the statistics.

    Every problem in every sheet is collected first; if there is any, `RatingsError` lists them all
    (file:line: message) and nothing is imported. `partial=True` accepts that some raters returned
    no sheet for a part (each returned sheet must still be complete). Bootstrap intervals use the
    packet's seed, so the same sheets give the same numbers.
    """
    root = Path(packet_dir)
    info = _load_packet(root)
    if not sheets:
        raise RatingsError(Problem(str(root), None, "no sheets given; pass the returned .csv or .jsonl files"))
    problems: list[Problem] = []
    ratings: list[Rating] = []
    first_seen: dict[tuple[str, str], str] = {}  # (rater, item) -> "file:line"
    sheet_of: dict[tuple[str, str], str] = {}  # (rater, part) -> first file
    claimed: set[tuple[str, str]] = set()  # (rater, part) of sheets rejected as a whole
    for sheet in sheets:
        for row in _read_sheet(Path(sheet), info, problems, claimed):
            rating = _check_row(row, info, first_seen, sheet_of, problems)
            if rating is not None:
                ratings.append(rating)
    problems.extend(_missing(info, first_seen, sheet_of, claimed, partial))
    if problems:
        raise RatingsError(problems)

    part_order = list(info.parts)
    item_order = {code: i for i, code in enumerate(info.items)}
    rater_order = {r: i for i, r in enumerate(info.raters)}
    ratings.sort(key=lambda r: (part_order.index(r.part), item_order[r.item], rater_order[r.rater]))
    suites = {
        info.parts[part]["suite"]: _suite_block(
            info, part, [r for r in ratings if r.part == part], resamples=resamples, kappa_threshold=kappa_threshold
        )
        for part in part_order
        if any(r.part == part for r in ratings)
    }
    return HumanResults(info.packet_id, info.source_run, info.raters, tuple(ratings), suites)


def _check_row(
    row: _Row,
    info: _PacketInfo,
    first_seen: dict[tuple[str, str], str],
    sheet_of: dict[tuple[str, str], str],
    problems: list[Problem],
) -> Rating | None:
    def bad(message: str) -> None:
        problems.append(Problem(row.path, row.line, message))

    n_before = len(problems)
    v = row.values
    part = row.part
    if v["part"] != part:
        bad(f"row says part {v['part']!r} but this sheet has the columns of {part}; keep each part in its own sheet")
        return None
    rater = v["rater"].strip() if isinstance(v["rater"], str) else v["rater"]
    raw_item = v["item"]
    item = raw_item.strip().upper() if isinstance(raw_item, str) else raw_item
    known_rater = rater in info.raters
    if not known_rater:
        bad(f"unknown rater {rater!r}; this packet's raters are {', '.join(info.raters)}")
    entry = info.items.get(item) if isinstance(item, str) else None
    if entry is None:
        bad(f"unknown item {raw_item!r}; item codes are the ones printed in the sheet, do not edit them")
    elif entry["part"] != part:
        bad(f"item {item} belongs to {entry['part']}, not {part}")
        entry = None
    elif known_rater and rater not in entry["raters"]:
        bad(f"item {item} was not assigned to rater {rater}")
        entry = None
    if known_rater and entry is not None:
        sheet_of.setdefault((rater, part), row.path)
        key = (rater, item)
        if key in first_seen:
            bad(f"duplicate row for rater {rater}, item {item} (first given at {first_seen[key]})")
            return None
        first_seen[key] = f"{row.path}:{row.line}"

    rubric = info.rubrics[part]
    letters = info.parts[part]["letters"]
    scores: dict[str, dict[str, int]] = {}
    for letter in letters:
        for c in rubric.criteria:
            column = f"{letter}_{c.id}"
            parsed = _parse_score(v[column], rubric.scale_min, rubric.scale_max)
            if isinstance(parsed, str):
                bad(f"{column} {parsed}")
            else:
                scores.setdefault(letter, {})[c.id] = parsed
    ranking = _parse_preference(v["preference"], letters, rubric.allow_tie)
    if isinstance(ranking, str):
        bad(ranking)
    comment = v.get("comment")
    comment = "" if comment is None else (comment if isinstance(comment, str) else json.dumps(comment)).strip()
    if len(problems) > n_before or entry is None or isinstance(ranking, str):
        return None
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
        source=f"{row.path}:{row.line}",
    )


def _missing(
    info: _PacketInfo,
    first_seen: Mapping[tuple[str, str], str],
    sheet_of: Mapping[tuple[str, str], str],
    claimed: set[tuple[str, str]],
    partial: bool,
) -> list[Problem]:
    problems = []
    for (rater, part), codes in info.assigned.items():
        if not codes or ((rater, part) in claimed and (rater, part) not in sheet_of):
            continue
        if (rater, part) not in sheet_of:
            if not partial:
                problems.append(Problem(
                    str(info.packet_dir), None,
                    f"no sheet for rater {rater}, {part} was given (expected raters/{rater}/{part}.csv or .jsonl); "
                    "pass every returned sheet, or partial=True to analyse what has come back",
                ))
            continue
        missing = [c for c in codes if (rater, c) not in first_seen]
        if missing:
            problems.append(Problem(
                sheet_of[(rater, part)], None,
                f"rater {rater}, {part}: {len(missing)} assigned item(s) missing: {', '.join(missing)}",
            ))
    return problems


# -- statistics ----------------------------------------------------------------------------------


def _num(x: float | None) -> float | None:
    """JSON-safe float: NaN and infinities become null (results files never hold NaN)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _outcome(rating: Rating, model: str, reference: str) -> int:
    """+1 if the rater ranked `model` above the reference, 0 for a tie, -1 below."""
    a, b = rating.rank_of(model), rating.rank_of(reference)
    return 1 if a < b else (0 if a == b else -1)


def _suite_block(
    info: _PacketInfo, part: str, ratings: Sequence[Rating], *, resamples: int, kappa_threshold: float
) -> dict[str, Any]:
    meta = info.parts[part]
    rubric = info.rubrics[part]
    models: list[str] = list(meta["models"])
    reference = meta["reference"]
    criteria = [c.id for c in rubric.criteria]
    items = [code for code, e in info.items.items() if e["part"] == part]
    by_item: dict[str, list[Rating]] = defaultdict(list)
    for r in ratings:
        by_item[r.item].append(r)
    items = [code for code in items if by_item[code]]
    raters = [r for r in info.raters if any(x.rater == r for x in ratings)]
    suite = meta["suite"]

    scores: dict[str, dict[str, Any]] = {}
    for model in models:
        scores[model] = {}
        for c in criteria:
            item_means = np.array([np.mean([r.scores[model][c] for r in by_item[i]]) for i in items])
            lo, hi = agreement.bootstrap_mean_ci(
                item_means, seed=[info.seed, _stable_int(suite, model, c)], resamples=resamples
            )
            scores[model][c] = {
                "value": _num(item_means.mean()) if item_means.size else None,
                "ci_low": _num(lo),
                "ci_high": _num(hi),
                "n_items": int(item_means.size),
                "n_ratings": sum(len(by_item[i]) for i in items),
            }

    preferences: dict[str, dict[str, Any]] = {}
    for model in models:
        if model == reference:
            continue
        outcomes = [_outcome(r, model, reference) for r in ratings]
        n = len(outcomes)
        entry: dict[str, Any] = {"reference": reference, "n": n}
        for name, value in (("win", 1), ("tie", 0), ("loss", -1)):
            k = sum(1 for o in outcomes if o == value)
            lo, hi = agreement.wilson_interval(k, n)
            entry[name + "s" if name != "loss" else "losses"] = k
            entry[f"{name}_rate"] = _num(k / n) if n else None
            entry[f"{name}_ci_low"] = _num(lo)
            entry[f"{name}_ci_high"] = _num(hi)
        preferences[model] = entry

    stats = _agreement_block(raters, items, by_item, models, reference, criteria, rubric, kappa_threshold)
    return {
        "schema": HUMAN_SCHEMA,
        "version": FORMAT_VERSION,
        "packet_id": info.packet_id,
        "part": part,
        "source_run": info.source_run,
        "rubric": {
            "name": rubric.name,
            "title": rubric.title,
            "scale": [rubric.scale_min, rubric.scale_max],
            "criteria": [{"id": c.id, "label": c.label, "question": c.question} for c in rubric.criteria],
        },
        "reference": reference,
        "models": models,
        "raters": raters,
        "n_items": len(items),
        "n_ratings": len(ratings),
        "selection": meta.get("selection"),
        "methods": {
            "score_ci": "percentile bootstrap over items (each item = mean of its raters' scores)",
            "preference_ci": "Wilson score interval over ratings (one judgement per rater and item)",
            "level": 0.95,
            "resamples": resamples,
            "seed": info.seed,
            "alpha": "Krippendorff's alpha, ordinal",
            "kappa": "Cohen's kappa per rater pair on all shared scores: plain and quadratic-weighted",
            "fleiss": "Fleiss' kappa (nominal), when every unit has the same number of ratings",
            "flag_score_spread": SCORE_SPREAD_FLAG,
            "flag_kappa_below": kappa_threshold,
            "flag_alpha_gain": ALPHA_GAIN_FLAG,
            "flag_alpha_gain_min_raters": ALPHA_GAIN_MIN_RATERS,
        },
        "scores": scores,
        "preferences": preferences,
        "agreement": stats["agreement"],
        "flags": {"items": _item_flags(items, by_item, models, criteria), "raters": stats["flagged_raters"]},
        "comments": [
            {"item": r.item, "example": r.example, "rater": r.rater, "text": r.comment} for r in ratings if r.comment
        ],
    }


def _matrix(raters: Sequence[str], units: Sequence[Mapping[str, float]]) -> np.ndarray:
    """raters x units with NaN where a rater did not rate a unit."""
    m = np.full((len(raters), len(units)), np.nan)
    for j, unit in enumerate(units):
        for i, r in enumerate(raters):
            if r in unit:
                m[i, j] = unit[r]
    return m


def _fleiss(matrix: np.ndarray, categories: Sequence[float]) -> float | None:
    counts = (~np.isnan(matrix)).sum(axis=0)
    counts = counts[counts > 0]
    if counts.size == 0 or counts.min() < 2 or counts.min() != counts.max():
        return None
    table = agreement.category_counts(matrix[:, (~np.isnan(matrix)).sum(axis=0) > 0], categories)
    return _num(agreement.fleiss_kappa(table))


def _agreement_block(
    raters: Sequence[str],
    items: Sequence[str],
    by_item: Mapping[str, Sequence[Rating]],
    models: Sequence[str],
    reference: str,
    criteria: Sequence[str],
    rubric: Rubric,
    kappa_threshold: float,
) -> dict[str, Any]:
    per_criterion = {
        c: _matrix(raters, [{r.rater: r.scores[m][c] for r in by_item[i]} for i in items for m in models])
        for c in criteria
    }
    pooled = np.concatenate([per_criterion[c] for c in criteria], axis=1) if criteria else np.zeros((len(raters), 0))
    preference = _matrix(
        raters, [{r.rater: _outcome(r, m, reference) for r in by_item[i]} for i in items for m in models if m != reference]
    )
    levels = list(rubric.levels)
    alpha_overall = agreement.krippendorff_alpha(pooled, "ordinal")

    pairs = []
    for a, b in itertools.combinations(range(len(raters)), 2):
        shared = ~np.isnan(pooled[a]) & ~np.isnan(pooled[b])
        n = int(shared.sum())
        if n == 0:
            continue
        x, y = pooled[a, shared], pooled[b, shared]
        pairs.append({
            "raters": [raters[a], raters[b]],
            "n": n,
            "kappa": _num(agreement.cohen_kappa(x, y, labels=levels)),
            "kappa_quadratic": _num(agreement.cohen_kappa(x, y, weights="quadratic", labels=levels)),
        })

    per_rater = []
    flagged = []
    for i, r in enumerate(raters):
        mine = [p["kappa_quadratic"] for p in pairs if r in p["raters"] and p["kappa_quadratic"] is not None]
        mean_kappa = _num(float(np.mean(mine))) if mine else None
        without = _num(agreement.krippendorff_alpha(np.delete(pooled, i, axis=0), "ordinal")) if len(raters) >= 3 else None
        reasons = []
        if mean_kappa is not None and mean_kappa < kappa_threshold:
            reasons.append(f"mean quadratic-weighted kappa with the other raters is {mean_kappa:.2f} (< {kappa_threshold:g})")
        base_alpha = _num(alpha_overall)
        if (len(raters) >= ALPHA_GAIN_MIN_RATERS and without is not None and base_alpha is not None
                and without - base_alpha >= ALPHA_GAIN_FLAG):
            reasons.append(f"leaving this rater out raises alpha from {base_alpha:.2f} to {without:.2f}")
        per_rater.append({
            "rater": r,
            "n_items": sum(1 for it in items if any(x.rater == r for x in by_item[it])),
            "mean_kappa_quadratic": mean_kappa,
            "alpha_without": without,
            "flagged": bool(reasons),
            "reasons": reasons,
        })
        if reasons:
            flagged.append({"rater": r, "reasons": reasons})

    return {
        "agreement": {
            "krippendorff_alpha": {
                "overall": _num(alpha_overall),
                "per_criterion": {c: _num(agreement.krippendorff_alpha(per_criterion[c], "ordinal")) for c in criteria},
                "preference": _num(agreement.krippendorff_alpha(preference, "ordinal")),
            },
            "fleiss_kappa": {
                "overall": _fleiss(pooled, levels),
                "per_criterion": {c: _fleiss(per_criterion[c], levels) for c in criteria},
                "preference": _fleiss(preference, [-1, 0, 1]),
            },
            "cohen_kappa": pairs,
            "raters": per_rater,
        },
        "flagged_raters": flagged,
    }


def _item_flags(
    items: Sequence[str], by_item: Mapping[str, Sequence[Rating]], models: Sequence[str], criteria: Sequence[str]
) -> list[dict[str, Any]]:
    flags = []
    for code in items:
        rs = by_item[code]
        reasons: list[str] = []
        kinds: list[str] = []
        for m in models:
            for c in criteria:
                given = {r.rater: r.scores[m][c] for r in rs}
                if len(given) >= 2 and max(given.values()) - min(given.values()) >= SCORE_SPREAD_FLAG:
                    shown = ", ".join(f"{s} ({r})" for r, s in given.items())
                    reasons.append(f"{c} of {m}: scores {shown}")
                    kinds.append("score_spread")
        for m1, m2 in itertools.combinations(models, 2):
            prefer_1 = [r.rater for r in rs if r.rank_of(m1) < r.rank_of(m2)]
            prefer_2 = [r.rater for r in rs if r.rank_of(m2) < r.rank_of(m1)]
            if prefer_1 and prefer_2:
                reasons.append(
                    f"opposite preferences: {', '.join(prefer_1)} prefer {m1}, {', '.join(prefer_2)} prefer {m2}"
                )
                kinds.append("opposite_preference")
        if reasons:
            flags.append({"item": code, "example": rs[0].example, "kinds": sorted(set(kinds)), "reasons": reasons})
    return flags


# ------------------------------------------------------------------------------------------------
# Merging into a results file
# ------------------------------------------------------------------------------------------------


def merge_into_results(
    results: Mapping[str, Any], human: HumanResults, *, allow_other_run: bool = False
) -> dict[str, Any]:
    """A copy of `results` with `suite["human"]` set for every suite the ratings cover.

    Refuses results from another run than the one the packet was built from (its outputs may
    differ from what raters saw) unless `allow_other_run=True`, and results that lack a rated suite
    or example. The input dict is not modified.
    """
    suites = _check_results(results)
    run_id = (results.get("run") or {}).get("id")
    if not allow_other_run and human.source_run is not None and run_id != human.source_run:
        raise ResultsError(
            f"these ratings were made on outputs of run {human.source_run!r}, but the results file is run {run_id!r}; "
            "merge into the results file the packet was built from, or pass allow_other_run=True"
        )
    by_name = {str(s["name"]): i for i, s in enumerate(suites)}
    missing = [name for name in human.suites if name not in by_name]
    if missing:
        raise ResultsError(f"the results file has no suite {', '.join(map(repr, missing))}; it cannot hold these ratings")
    for name in human.suites:
        ids = {str(e.get("id")) for e in suites[by_name[name]].get("examples") or []}
        absent = sorted({r.example for r in human.ratings if r.suite == name} - ids)
        if absent:
            raise ResultsError(
                f"suite {name!r} in the results file lacks rated example(s) {', '.join(absent[:5])}"
                + (" ..." if len(absent) > 5 else "")
            )
    merged = copy.deepcopy(dict(results))
    for name, block in human.suites.items():
        merged["suites"][by_name[name]]["human"] = copy.deepcopy(block)
    return merged


__all__ = [
    "Criterion",
    "HumanResults",
    "PacketManifest",
    "PartSummary",
    "Rating",
    "Rubric",
    "build_packets",
    "default_rubric",
    "import_ratings",
    "load_rubric",
    "merge_into_results",
    "packaged_rubrics",
    "sheet_columns",
]
