"""What several packet stages share: format names, sheet columns, the public records, small helpers.

Nothing here reads or writes files or knows which letter is which model; `_Item.order` holds the
shuffled models of an item only while a packet is being built (build.py) and written into the
key (answer_key.py).
"""

from __future__ import annotations

import json
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ResultsError
from ..results import Results, SuiteResult, from_data
from .rubrics import Rubric

PACKET_FORMAT = "ftevals.packet"
HUMAN_SCHEMA = "ftevals.human"
FORMAT_VERSION = 1

#: Fixed columns of every sheet; per-response score columns and the answers follow them.
ID_COLUMNS = ("rater", "part", "item")
ANSWER_COLUMNS = ("preference", "comment")

#: Selection strata, in priority order: an example that is both a regression and a metric
#: disagreement is counted as a regression, the case a reviewer most wants a human to look at.
STRATA = ("regression", "fix", "disagreement", "random")


# -- public records ------------------------------------------------------------------------------


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
    """Imported ratings and their statistics; `suites[name]` is the JSON form of the suite's `HumanRatings`."""

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


# -- the plan of a packet: made by build.py, written into the key by answer_key.py ----------------


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
    suite: SuiteResult
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


# -- helpers -------------------------------------------------------------------------------------


def _dumps(obj: Any, indent: int | None = None) -> str:
    text = json.dumps(obj, ensure_ascii=False, indent=indent, allow_nan=False, separators=None if indent else (",", ":"))
    return text + "\n" if indent else text


def _as_results(results: Results | Mapping[str, Any]) -> Results:
    """The results as records: a Mapping (a parsed file) is migrated and validated once, here.

    Suite names must also be unique, which the schema cannot say: parts, the key and the merge
    all find a suite by its name.
    """
    if not isinstance(results, (Results, Mapping)):
        raise ResultsError(f"results must be a Results record or the dict of a results file, got {type(results).__name__}")
    records = from_data(results)
    repeated = sorted(n for n, c in Counter(s.name for s in records.suites).items() if c > 1)
    if repeated:
        raise ResultsError(f"suite names must be unique in a results file; repeated: {', '.join(repeated)}")
    return records
