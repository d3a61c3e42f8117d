"""Building packets: a results file -> blinded rater folders, the manifest and the answer key.

Plan the parts (one per suite with something to compare), select examples by stratum, deal letter
orders and item codes, assign raters with balanced loads, then write each rater's folder (rendered
by render.py), the key (through answer_key.py, the only writer of model names) and the manifest.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import shutil
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..fsutil import atomic_write_text, safe_join
from ..results import ExampleResult, Results, SuiteResult
from ..specs import check_name
from ._common import (
    FORMAT_VERSION,
    PACKET_FORMAT,
    STRATA,
    PacketManifest,
    PartSummary,
    _as_results,
    _dumps,
    _Item,
    _Part,
)
from .answer_key import _answer_key, write_answer_key
from .render import _render_csv, _render_html, _render_jsonl
from .rubrics import load_rubric

# Item codes avoid characters that are easy to misread or mistype (0/O, 1/I, 2/Z, 5/S, 6/G, 8/B)
# and always start with a letter, so spreadsheets never turn them into numbers.
_CODE_LETTERS = "ACDEFHJKLMNPQRTUVWXY"
_CODE_ALPHABET = _CODE_LETTERS + "3479"
_CODE_LENGTH = 6


def _rng(seed: int, *purpose: str) -> random.Random:
    # String seeds are hashed with SHA-512 by `random`, so every stream is stable across Python
    # versions and independent of the others (changing one suite never reshuffles another).
    return random.Random(":".join(["ftevals-packets", str(seed), *purpose]))


def build_packets(
    results: Results | Mapping[str, Any],
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
    """Write blinded rating packets for `results` into `out_dir`.

    `results` is a `Results` record or the dict of a results file (validated and read into
    records first; ResultsError if it is not a valid results file).

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
    records = _as_results(results)

    parts = _plan_parts(records, suites=suites, models=models, rubrics=rubrics or {}, n=n_per_suite, seed=seed)
    items = _plan_items(parts, rater_names, raters_per_item, seed)

    out = Path(out_dir)
    _prepare_out_dir(out, overwrite)

    key = _answer_key(records, parts, items, rater_names, seed, n_per_suite, raters_per_item, models)
    packet_id = key["packet_id"]

    by_code = {it.code: it for it in items}
    examples = {p.part: {e.id: e for e in p.suite.examples} for p in parts}
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
    key_path = write_answer_key(out, key)
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
                suite=p.suite.name,
                task=p.suite.task,
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


def _plan_parts(
    results: Results,
    *,
    suites: Sequence[str] | None,
    models: Sequence[str] | None,
    rubrics: Mapping[str, Mapping[str, Any] | str],
    n: int,
    seed: int,
) -> list[_Part]:
    all_suites = results.suites
    by_name = {s.name: s for s in all_suites}
    if suites is not None:
        unknown = [s for s in suites if s not in by_name]
        if unknown:
            raise ConfigError(f"unknown suite(s) {', '.join(unknown)}; the results file has {', '.join(by_name) or 'none'}")
        chosen = [by_name[s] for s in dict.fromkeys(suites)]
    else:
        chosen = list(all_suites)
    if models is not None:
        known = {m for s in chosen for m in s.models}
        unknown = [m for m in models if m not in known]
        if unknown:
            raise ConfigError(f"unknown model(s) {', '.join(unknown)}; the chosen suites have {', '.join(sorted(known))}")
    unknown_rubrics = [name for name in rubrics if name not in by_name]
    if unknown_rubrics:
        raise ConfigError(f"rubrics given for unknown suite(s): {', '.join(unknown_rubrics)}")

    parts: list[_Part] = []
    skipped: list[str] = []
    for suite in chosen:
        name = check_name("suite", suite.name)
        reference = suite.reference
        shown = [reference] + [m for m in suite.models if m != reference and (models is None or m in models)]
        candidates = _eligible_examples(suite, shown)
        if len(shown) < 2 or not candidates:
            why = "fewer than two models to compare" if len(shown) < 2 else "no example has an output from every model"
            if suites is not None:
                raise ConfigError(f"suite {name!r} cannot be rated: {why}")
            skipped.append(name)
            continue
        if len(shown) > 26:
            raise ConfigError(f"suite {name!r} has {len(shown)} models; packets show at most 26 (A-Z); pass models=")
        rubric = load_rubric(rubrics.get(name, suite.rubric), task=suite.task, where=f"suite {name!r} rubric")
        selected = _select_examples(suite, shown, candidates, n, seed)
        number = len(parts) + 1
        parts.append(_Part(f"part-{number}", number, suite, rubric, tuple(shown), tuple(selected), len(candidates)))
    if not parts:
        raise ConfigError(
            "no suite can be rated: every suite needs examples with outputs from at least two models"
            + (f" (skipped {', '.join(skipped)})" if skipped else "")
        )
    return parts


def _eligible_examples(suite: SuiteResult, shown: Sequence[str]) -> list[ExampleResult]:
    """Examples with an output from every shown model (one without an output cannot be compared)."""
    out = [ex for ex in suite.examples if all(m in ex.outputs for m in shown)]
    return sorted(out, key=lambda e: e.id)


def _number(x: float | None) -> float | None:
    """A finite score, or None for a missing or undefined one (null in the file, NaN in memory)."""
    return None if x is None or not math.isfinite(x) else float(x)


def _stratum_of(suite: SuiteResult, shown: Sequence[str]) -> dict[str, str]:
    """Example id -> stratum, from per-example scores and the comparison lists of the results."""
    reference = shown[0]
    primary_info = suite.primary_metric
    primary = primary_info.name if primary_info is not None else None
    direction = {m.name: (1.0 if m.higher_is_better else -1.0) for m in suite.metrics}

    listed: dict[str, set[str]] = {"regression": set(), "fix": set()}
    for comp in suite.comparisons:
        if comp.model not in shown[1:] or comp.reference != reference:
            continue
        listed["regression"].update(comp.regressions)
        listed["fix"].update(comp.fixes)
        for drop in comp.largest_drops:
            if (_number(drop.delta) or 0.0) < 0:
                listed["regression"].add(drop.id)

    no_scores: Mapping[str, float | None] = {}
    strata: dict[str, str] = {}
    for ex in suite.examples:
        eid = ex.id
        ref_output = ex.outputs.get(reference)
        ref_scores = ref_output.scores if ref_output is not None else no_scores
        worse = better = disagree = False
        for model in shown[1:]:
            output = ex.outputs.get(model)
            scores = output.scores if output is not None else no_scores
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
    suite: SuiteResult, shown: Sequence[str], candidates: Sequence[ExampleResult], n: int, seed: int
) -> list[tuple[str, str]]:
    """Up to n (example id, stratum) pairs: a quarter each from the targeted strata, then random."""
    rng = _rng(seed, "select", suite.name)
    strata = _stratum_of(suite, shown)
    ids = [e.id for e in candidates]
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
            items.append(_Item(next(codes), p.part, p.suite.name, eid, stratum, order, chosen))
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
