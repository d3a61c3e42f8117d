"""Importing ratings: returned CSV/JSONL sheets -> checked, unblinded `Rating`s -> `HumanResults`.

Every problem in every sheet is collected as a `Problem` (file:line: message) before anything is
imported; rows are unblinded only through `answer_key.unblind`, and statistics come from stats.py.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import Problem, RatingsError
from ._common import HumanResults, Rating
from .answer_key import _load_packet, _PacketInfo, unblind
from .stats import KAPPA_FLAG, _suite_block

_INT_TEXT = re.compile(r"^[+-]?\d+(\.0*)?$")


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
    return unblind(entry, rater=rater, part=part, item=item, letters=letters, scores=scores, ranking=ranking,
                   comment=comment, source=f"{row.path}:{row.line}")


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
