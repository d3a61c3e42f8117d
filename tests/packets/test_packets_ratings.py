"""Importing ratings: the round trip with simulated raters, agreement against the reference
implementations on the same data, merging into the results, and the bad-sheet matrix."""

from __future__ import annotations

import csv
import io
import itertools
import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss

from ftevals.errors import RatingsError, ResultsError
from ftevals.packets import HumanResults, build_packets, import_ratings, merge_into_results
from ftevals.results import HumanRatings, Results, from_data, load, save


def _round_trip(results: dict[str, Any], tmp: Path, sim: Any, raters: list[Any], per_item: int, **kw: Any) -> HumanResults:
    build_packets(results, tmp / "p", n_per_suite=30, raters=[r.name for r in raters], raters_per_item=per_item, **kw)
    answers = sim.fill_answers(tmp / "p", raters, seed=11)
    # Half the raters return the CSV, the others the JSON-lines sheet: both must import alike.
    sheets = sim.write_filled_sheets(tmp / "p", answers, tmp / "back", jsonl_for={r.name for r in raters[::2]})
    return import_ratings(tmp / "p", sheets)


@pytest.fixture
def three_raters(sim: Any) -> list[Any]:
    return [sim.SimRater("r1", bias=0.0), sim.SimRater("r2", bias=0.3), sim.SimRater("r3", bias=-0.3)]


def test_round_trip_recovers_known_preferences(results: dict[str, Any], tmp_path: Path, sim: Any, three_raters: list[Any]) -> None:
    human = _round_trip(results, tmp_path, sim, three_raters, per_item=2)
    assert set(human.suites) == {"dialogsum", "banking77"}
    dialog = human.suites["dialogsum"]
    assert dialog["n_items"] == 30 and dialog["n_ratings"] == 60
    assert dialog["models"] == ["base", "dialogsum-lora", "tone-r8"] and dialog["reference"] == "base"

    strong = dialog["preferences"]["dialogsum-lora"]
    assert strong["win_rate"] > 0.6
    assert strong["wins"] + strong["ties"] + strong["losses"] == strong["n"] == 60
    assert strong["win_ci_low"] <= strong["win_rate"] <= strong["win_ci_high"]
    weak = dialog["preferences"]["tone-r8"]
    assert weak["win_rate"] > weak["loss_rate"]
    assert human.suites["banking77"]["preferences"]["banking77"]["win_rate"] > 0.6

    for criterion in ("faithfulness", "coverage", "style"):
        means = {m: dialog["scores"][m][criterion]["value"] for m in dialog["models"]}
        assert means["dialogsum-lora"] > means["tone-r8"] > means["base"], criterion
        for m in dialog["models"]:
            s = dialog["scores"][m][criterion]
            assert s["ci_low"] <= s["value"] <= s["ci_high"] and s["n_items"] == 30 and s["n_ratings"] == 60
    # True quality 3.9 vs 2.3 is recovered within noise (raters' biases average out).
    assert dialog["scores"]["dialogsum-lora"]["coverage"]["value"] == pytest.approx(3.9, abs=0.5)
    assert dialog["scores"]["base"]["coverage"]["value"] == pytest.approx(2.3, abs=0.5)

    # Raters who agree by construction are not flagged; agreement is clearly above chance.
    assert dialog["agreement"]["krippendorff_alpha"]["overall"] > 0.3
    assert dialog["flags"]["raters"] == []
    assert dialog["agreement"]["fleiss_kappa"]["overall"] is not None  # 2 ratings on every unit
    assert {c["text"] for c in dialog["comments"]} <= {f'Note from {r.name}: é, "quotes", commas' for r in three_raters}
    assert dialog["comments"]
    json.dumps(human.to_dict(), allow_nan=False)  # JSON-ready: no NaN anywhere
    assert "dialogsum-lora vs base: wins" in human.summary()


def test_same_sheets_give_the_same_numbers(results: dict[str, Any], tmp_path: Path, sim: Any, three_raters: list[Any]) -> None:
    a = _round_trip(results, tmp_path / "a", sim, three_raters, per_item=2)
    b = _round_trip(results, tmp_path / "b", sim, three_raters, per_item=2)
    assert a.to_dict() == b.to_dict()


def _matrices(human: HumanResults, suite: str) -> dict[str, np.ndarray]:
    """Rebuild raters x units matrices from the imported ratings, independently of the module."""
    block = human.suites[suite]
    raters = block["raters"]
    ratings = [r for r in human.ratings if r.suite == suite]
    items = list(dict.fromkeys(r.item for r in ratings))
    models = block["models"]
    criteria = [c["id"] for c in block["rubric"]["criteria"]]
    cell: dict[tuple[str, str, str, str], float] = {}
    pref: dict[tuple[str, str, str], float] = {}
    for r in ratings:
        for m in models:
            for c in criteria:
                cell[(r.rater, r.item, m, c)] = r.scores[m][c]
            if m != block["reference"]:
                a, b = r.rank_of(m), r.rank_of(block["reference"])
                pref[(r.rater, r.item, m)] = float(np.sign(b - a))
    out = {}
    for c in criteria:
        out[c] = np.array([[cell.get((rt, i, m, c), np.nan) for i in items for m in models] for rt in raters])
    out["__overall__"] = np.concatenate([out[c] for c in criteria], axis=1)
    out["__preference__"] = np.array([[pref.get((rt, i, m), np.nan) for i in items for m in models
                                       if m != block["reference"]] for rt in raters])
    return out


@pytest.mark.parametrize("per_item", [2, 3])
def test_agreement_matches_reference_implementations(
    results: dict[str, Any], tmp_path: Path, sim: Any, three_raters: list[Any], per_item: int
) -> None:
    human = _round_trip(results, tmp_path, sim, three_raters, per_item=per_item)
    for suite, block in human.suites.items():
        mats = _matrices(human, suite)
        stats = block["agreement"]
        alpha = stats["krippendorff_alpha"]
        assert alpha["overall"] == pytest.approx(krippendorff.alpha(reliability_data=mats["__overall__"], level_of_measurement="ordinal"))
        assert alpha["preference"] == pytest.approx(krippendorff.alpha(reliability_data=mats["__preference__"], level_of_measurement="ordinal"))
        for c, value in alpha["per_criterion"].items():
            assert value == pytest.approx(krippendorff.alpha(reliability_data=mats[c], level_of_measurement="ordinal"))

        overall = mats["__overall__"]
        raters = block["raters"]
        assert [p["raters"] for p in stats["cohen_kappa"]] == [list(p) for p in itertools.combinations(raters, 2)]
        for pair in stats["cohen_kappa"]:
            a, b = (raters.index(x) for x in pair["raters"])
            both = ~np.isnan(overall[a]) & ~np.isnan(overall[b])
            assert pair["n"] == both.sum() > 0
            x, y = overall[a, both].astype(int), overall[b, both].astype(int)
            assert pair["kappa"] == pytest.approx(cohen_kappa_score(x, y, labels=[1, 2, 3, 4, 5]))
            assert pair["kappa_quadratic"] == pytest.approx(cohen_kappa_score(x, y, labels=[1, 2, 3, 4, 5], weights="quadratic"))

        fleiss = stats["fleiss_kappa"]
        for c, value in [("__overall__", fleiss["overall"]), *fleiss["per_criterion"].items()]:
            m = mats[c]
            table = np.stack([(m == v).sum(axis=0) for v in (1, 2, 3, 4, 5)], axis=1)
            assert value == pytest.approx(sm_fleiss(table, method="fleiss"))
        if per_item == 3:
            # Every rater rated every item: the classic Fleiss setting, and alpha equals the
            # left-out alphas' definition on complete data.
            assert not np.isnan(overall).any()
        for entry in stats["raters"]:
            i = raters.index(entry["rater"])
            assert entry["alpha_without"] == pytest.approx(
                krippendorff.alpha(reliability_data=np.delete(overall, i, axis=0), level_of_measurement="ordinal"))


def test_careless_rater_is_flagged(results: dict[str, Any], tmp_path: Path, sim: Any) -> None:
    raters = [sim.SimRater("ann", noise=0.4), sim.SimRater("bob", noise=0.4), sim.SimRater("cy", noise=0.4),
              sim.SimRater("dot", random_answers=True)]
    human = _round_trip(results, tmp_path, sim, raters, per_item=2)
    for block in human.suites.values():
        assert [f["rater"] for f in block["flags"]["raters"]] == ["dot"]
        entry = next(e for e in block["agreement"]["raters"] if e["rater"] == "dot")
        assert entry["flagged"] and entry["mean_kappa_quadratic"] < 0.2
        assert entry["alpha_without"] > block["agreement"]["krippendorff_alpha"]["overall"]
        # Items where the careless rater disagrees wildly are flagged, with readable reasons.
        assert block["flags"]["items"]
        flag = block["flags"]["items"][0]
        assert set(flag["kinds"]) <= {"score_spread", "opposite_preference"}
        assert flag["example"].startswith(("dialogsum-test-", "banking77-test-"))


def test_item_flags_by_hand(results: dict[str, Any], tmp_path: Path, sim: Any, three_raters: list[Any]) -> None:
    build_packets(results, tmp_path / "p", n_per_suite=4, raters=["r1", "r2", "r3"], raters_per_item=2,
                  suites=["banking77"])
    key = json.loads((tmp_path / "p/key/answer_key.json").read_text())
    answers = sim.fill_answers(tmp_path / "p", three_raters)
    for (rater, code), row in answers.items():
        row.update({"A_correctness": 4, "A_format": 4, "B_correctness": 4, "B_format": 4, "preference": "tie"})
    code = next(iter(key["items"]))
    first, second = key["items"][code]["raters"]
    answers[(first, code)].update({"A_correctness": 1, "preference": "A"})
    answers[(second, code)].update({"preference": "B"})
    human = import_ratings(tmp_path / "p", sim.write_filled_sheets(tmp_path / "p", answers, tmp_path / "back"))
    flags = human.suites["banking77"]["flags"]["items"]
    assert len(flags) == 1 and flags[0]["item"] == code
    model_a, model_b = key["items"][code]["letters"]["A"], key["items"][code]["letters"]["B"]
    prefers = {model_a: first, model_b: second}  # first chose "A", second chose "B"
    assert flags[0]["kinds"] == ["opposite_preference", "score_spread"]
    assert flags[0]["reasons"] == [
        f"correctness of {model_a}: scores 1 ({first}), 4 ({second})",
        f"opposite preferences: {prefers['base']} prefer base, {prefers['banking77']} prefer banking77",
    ]
    assert flags[0]["example"] == key["items"][code]["example"]


# -- merging --------------------------------------------------------------------------------------


def test_merge_into_results(results: dict[str, Any], tmp_path: Path, sim: Any, three_raters: list[Any]) -> None:
    human = _round_trip(results, tmp_path, sim, three_raters, per_item=2)
    before = json.dumps(results, sort_keys=True)
    merged = merge_into_results(results, human)
    assert json.dumps(results, sort_keys=True) == before, "the input must not be modified"
    assert isinstance(merged, Results)
    for suite in merged.suites:
        assert isinstance(suite.human, HumanRatings)
        assert suite.human.schema == "ftevals.human" and suite.human.version == 1
        assert suite.human.models == tuple(human.suites[suite.name]["models"])
        assert suite.human.to_dict() == human.suites[suite.name]
    # What the CLI does: save, and the file reads back as the same results.
    path = save(tmp_path / "merged.json", merged)
    assert load(path).to_dict() == merged.to_dict()
    assert load(path).suite("dialogsum").human.preferences == human.suites["dialogsum"]["preferences"]

    # A record goes in just as well, and is left as it was.
    records = from_data(results)
    assert merge_into_results(records, human).to_dict() == merged.to_dict()
    assert all(s.human is None for s in records.suites)

    other = dict(results, run=dict(results["run"], id="another-run"))
    with pytest.raises(ResultsError, match="run 'another-run'"):
        merge_into_results(other, human)
    assert merge_into_results(other, human, allow_other_run=True).suites[0].human is not None
    fewer = dict(results, suites=results["suites"][:1])
    with pytest.raises(ResultsError, match="no suite 'banking77'"):
        merge_into_results(fewer, human)
    rated = human.ratings[0]
    suites = [replace(s, examples=tuple(e for e in s.examples if e.id != rated.example)) for s in records.suites]
    with pytest.raises(ResultsError, match=f"lacks rated example.*{rated.example}"):
        merge_into_results(replace(records, suites=tuple(suites)), human)


def test_partial_returns(results: dict[str, Any], tmp_path: Path, sim: Any, three_raters: list[Any]) -> None:
    build_packets(results, tmp_path / "p", n_per_suite=10, raters=["r1", "r2", "r3"], raters_per_item=2)
    answers = sim.fill_answers(tmp_path / "p", three_raters)
    sheets = [s for s in sim.write_filled_sheets(tmp_path / "p", answers, tmp_path / "back") if "r3" not in s.name]
    with pytest.raises(RatingsError) as err:
        import_ratings(tmp_path / "p", sheets)
    assert [p.message.split(" was given")[0] for p in err.value.problems] == [
        "no sheet for rater r3, part-1", "no sheet for rater r3, part-2"]
    human = import_ratings(tmp_path / "p", sheets, partial=True)
    assert human.raters == ("r1", "r2", "r3")
    assert human.suites["dialogsum"]["raters"] == ["r1", "r2"]
    assert all(r.rater != "r3" for r in human.ratings)


# -- the bad-sheet matrix -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def packet(tmp_path_factory: pytest.TempPathFactory, sim: Any) -> tuple[Path, dict, dict, Any]:
    """One small packet and a correct set of answers; each test breaks a copy of the sheets."""
    root = tmp_path_factory.mktemp("bad")
    build_packets(sim.make_results(), root / "p", n_per_suite=6, raters=["r1", "r2", "r3"], raters_per_item=2)
    answers = sim.fill_answers(root / "p", [sim.SimRater(n) for n in ("r1", "r2", "r3")])
    key = json.loads((root / "p/key/answer_key.json").read_text())
    return root / "p", answers, key, sim


def _sheets(packet: tuple, out: Path, *, jsonl: bool = False, edit: Any = None) -> list[Path]:
    packet_dir, answers, _, sim = packet
    return sim.write_filled_sheets(packet_dir, answers, out, jsonl_for={"r1"} if jsonl else set(), edit=edit)


def _problems(packet_dir: Path, sheets: list[Path], out: Path) -> list[str]:
    with pytest.raises(RatingsError) as err:
        import_ratings(packet_dir, sheets)
    return [str(p).replace(str(out) + "/", "") for p in err.value.problems]


def _edit_first(change: Any) -> Any:
    """An edit callback that changes the first row of r1's part-1 sheet (line 2 of the CSV)."""
    done = set()

    def edit(rater: str, part: str, row: dict[str, Any]) -> dict[str, Any] | None:
        if (rater, part) == ("r1", "part-1") and (rater, part) not in done:
            done.add((rater, part))
            return change(row)
        return row

    return edit


def _first_code(packet_dir: Path, rater: str = "r1", part: str = "part-1") -> str:
    manifest = json.loads((packet_dir / "manifest.json").read_text())
    return next(e for e in manifest["raters"] if e["rater"] == rater)["items"][part][0]


BAD_ROWS = [
    ("score out of range", lambda r: {**r, "A_coverage": "7"},
     ["r1-part-1.csv:2: A_coverage = 7 is out of range; give a whole number from 1 to 5"]),
    ("score zero", lambda r: {**r, "B_style": "0"},
     ["r1-part-1.csv:2: B_style = 0 is out of range; give a whole number from 1 to 5"]),
    ("score not an integer", lambda r: {**r, "C_faithfulness": "3.5"},
     ["r1-part-1.csv:2: C_faithfulness must be a whole number from 1 to 5, got '3.5'"]),
    ("score is a word", lambda r: {**r, "A_style": "good"},
     ["r1-part-1.csv:2: A_style must be a whole number from 1 to 5, got 'good'"]),
    ("score missing", lambda r: {**r, "B_coverage": ""},
     ["r1-part-1.csv:2: B_coverage is empty; give a whole number from 1 to 5"]),
    ("preference names a letter that is not there", lambda r: {**r, "preference": "D"},
     ["r1-part-1.csv:2: preference 'D' is not valid; write a ranking from best to worst such as 'C>A=B', "
      "with every letter A, B, C once ('=' for equally good), or tie"]),
    ("preference leaves a letter out", lambda r: {**r, "preference": "A>B"},
     ["r1-part-1.csv:2: preference 'A>B' is not valid; write a ranking from best to worst such as 'C>A=B', "
      "with every letter A, B, C once ('=' for equally good), or tie"]),
    ("preference repeats a letter", lambda r: {**r, "preference": "A>B>A"},
     ["r1-part-1.csv:2: preference 'A>B>A' is not valid; write a ranking from best to worst such as 'C>A=B', "
      "with every letter A, B, C once ('=' for equally good), or tie"]),
    ("preference missing", lambda r: {**r, "preference": " "},
     ["r1-part-1.csv:2: preference is empty; write a ranking from best to worst such as 'C>A=B', "
      "with every letter A, B, C once ('=' for equally good), or tie"]),
    ("several problems in one row", lambda r: {**r, "A_coverage": "9", "preference": "", "B_style": "x"},
     ["r1-part-1.csv:2: A_coverage = 9 is out of range; give a whole number from 1 to 5",
      "r1-part-1.csv:2: B_style must be a whole number from 1 to 5, got 'x'",
      "r1-part-1.csv:2: preference is empty; write a ranking from best to worst such as 'C>A=B', "
      "with every letter A, B, C once ('=' for equally good), or tie"]),
]


@pytest.mark.parametrize(("case", "change", "expected"), BAD_ROWS, ids=[c[0] for c in BAD_ROWS])
def test_bad_values(packet: tuple[Path, dict, dict, Any], tmp_path: Path, case: str, change: Any, expected: list[str]) -> None:
    packet_dir, answers, _, _ = packet
    sheets = _sheets(packet, tmp_path, edit=_edit_first(change))
    assert _problems(packet_dir, sheets, tmp_path) == expected


def test_unknown_rater(packet: tuple[Path, dict, dict, Any], tmp_path: Path) -> None:
    packet_dir, answers, _, _ = packet
    code = _first_code(packet_dir)
    sheets = _sheets(packet, tmp_path, edit=_edit_first(lambda r: {**r, "rater": "r9"}))
    assert _problems(packet_dir, sheets, tmp_path) == [
        "r1-part-1.csv:2: unknown rater 'r9'; this packet's raters are r1, r2, r3",
        f"r1-part-1.csv: rater r1, part-1: 1 assigned item(s) missing: {code}",
    ]


def test_unknown_item(packet: tuple[Path, dict, dict, Any], tmp_path: Path) -> None:
    packet_dir, answers, _, _ = packet
    code = _first_code(packet_dir)
    sheets = _sheets(packet, tmp_path, edit=_edit_first(lambda r: {**r, "item": "QQQQQQ"}))
    assert _problems(packet_dir, sheets, tmp_path) == [
        "r1-part-1.csv:2: unknown item 'QQQQQQ'; item codes are the ones printed in the sheet, do not edit them",
        f"r1-part-1.csv: rater r1, part-1: 1 assigned item(s) missing: {code}",
    ]


def test_item_of_another_rater(packet: tuple[Path, dict, dict, Any], tmp_path: Path) -> None:
    packet_dir, answers, key, _ = packet
    code = _first_code(packet_dir)
    foreign = next(c for c, it in key["items"].items() if it["part"] == "part-1" and "r1" not in it["raters"])
    sheets = _sheets(packet, tmp_path, edit=_edit_first(lambda r: {**r, "item": foreign}))
    assert _problems(packet_dir, sheets, tmp_path) == [
        f"r1-part-1.csv:2: item {foreign} was not assigned to rater r1",
        f"r1-part-1.csv: rater r1, part-1: 1 assigned item(s) missing: {code}",
    ]


def test_missing_item(packet: tuple[Path, dict, dict, Any], tmp_path: Path) -> None:
    packet_dir, answers, _, _ = packet
    code = _first_code(packet_dir)
    sheets = _sheets(packet, tmp_path, edit=_edit_first(lambda r: None))
    assert _problems(packet_dir, sheets, tmp_path) == [f"r1-part-1.csv: rater r1, part-1: 1 assigned item(s) missing: {code}"]


def test_duplicate_row(packet: tuple[Path, dict, dict, Any], tmp_path: Path) -> None:
    packet_dir, answers, _, _ = packet
    code = _first_code(packet_dir)
    sheets = _sheets(packet, tmp_path)
    path = tmp_path / "r1-part-1.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines + [lines[1]]))
    n = len(lines) + 1
    assert _problems(packet_dir, sheets, tmp_path) == [
        f"r1-part-1.csv:{n}: duplicate row for rater r1, item {code} (first given at r1-part-1.csv:2)"]


def test_same_sheet_twice_as_csv_and_jsonl(packet: tuple[Path, dict, dict, Any], tmp_path: Path) -> None:
    packet_dir, answers, _, _ = packet
    csvs = _sheets(packet, tmp_path / "c")
    jsonl = [p for p in _sheets(packet, tmp_path / "j", jsonl=True) if p.suffix == ".jsonl"]
    problems = _problems(packet_dir, csvs + jsonl, tmp_path)
    assert problems and all("duplicate row for rater r1" in p for p in problems)
    assert len(problems) == sum(1 for line in jsonl[0].read_text().splitlines() if line) + sum(
        1 for line in jsonl[1].read_text().splitlines() if line)


def test_wrong_header(packet: tuple[Path, dict, dict, Any], tmp_path: Path) -> None:
    packet_dir, answers, _, _ = packet
    sheets = _sheets(packet, tmp_path)
    path = tmp_path / "r1-part-1.csv"
    text = path.read_text()
    path.write_text(text.replace("A_style", "A_stile", 1).replace(",comment", "", 1))
    columns = ("rater,part,item,A_faithfulness,A_coverage,A_style,B_faithfulness,B_coverage,B_style,"
               "C_faithfulness,C_coverage,C_style,preference,comment")
    # The sheet is not read at all, so its items are not reported as missing on top.
    assert _problems(packet_dir, sheets, tmp_path) == [
        f"r1-part-1.csv:1: wrong header (missing A_style, comment; unexpected 'A_stile'); expected the columns {columns}"]


def test_wrong_cell_count_and_foreign_part(packet: tuple[Path, dict, dict, Any], tmp_path: Path) -> None:
    packet_dir, answers, _, _ = packet
    sheets = _sheets(packet, tmp_path)
    path = tmp_path / "r1-part-1.csv"
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = lines[2].rstrip("\r\n") + ",extra\r\n"
    rows = list(csv.reader(io.StringIO(lines[3])))[0]
    rows[1] = "part-2"
    lines[3] = ",".join(rows) + "\r\n"
    path.write_text("".join(lines))
    codes = json.loads((packet_dir / "manifest.json").read_text())["raters"][0]["items"]["part-1"]
    assert _problems(packet_dir, sheets, tmp_path) == [
        "r1-part-1.csv:3: has 15 cells but the header has 14; check for a stray delimiter or a missing cell",
        "r1-part-1.csv:4: row says part 'part-2' but this sheet has the columns of part-1; keep each part in its own sheet",
        f"r1-part-1.csv: rater r1, part-1: 2 assigned item(s) missing: {codes[1]}, {codes[2]}",
    ]


def test_file_level_problems(packet: tuple[Path, dict, dict, Any], tmp_path: Path) -> None:
    packet_dir, answers, _, _ = packet
    sheets = _sheets(packet, tmp_path)
    (tmp_path / "r1-part-1.csv").write_bytes("rater,part\n\xe9\n".encode("latin-1"))
    (tmp_path / "r2-part-1.csv").write_text("")
    xlsx = tmp_path / "r3-part-1.xlsx"
    (tmp_path / "r3-part-1.csv").rename(xlsx)
    sheets = [xlsx if s.name == "r3-part-1.csv" else s for s in sheets] + [tmp_path / "nowhere.csv"]
    assert _problems(packet_dir, sheets, tmp_path) == [
        "r1-part-1.csv: is not UTF-8 text; save it as 'CSV UTF-8' (or UTF-8 JSON lines)",
        "r2-part-1.csv: is empty; expected a header line and one row per item",
        "r3-part-1.xlsx: unsupported sheet type '.xlsx'; return the .csv or the .jsonl sheet",
        "nowhere.csv: not found",
        f"{packet_dir}: no sheet for rater r1, part-1 was given (expected raters/r1/part-1.csv or .jsonl); "
        "pass every returned sheet, or partial=True to analyse what has come back",
        f"{packet_dir}: no sheet for rater r2, part-1 was given (expected raters/r2/part-1.csv or .jsonl); "
        "pass every returned sheet, or partial=True to analyse what has come back",
        f"{packet_dir}: no sheet for rater r3, part-1 was given (expected raters/r3/part-1.csv or .jsonl); "
        "pass every returned sheet, or partial=True to analyse what has come back",
    ]


def test_problems_in_several_sheets_are_all_listed(packet: tuple[Path, dict, dict, Any], tmp_path: Path) -> None:
    packet_dir, answers, _, _ = packet

    def edit(rater: str, part: str, row: dict[str, Any]) -> dict[str, Any]:
        if part == "part-2":
            return {**row, "preference": "C", "A_format": "6"}
        return row

    problems = _problems(packet_dir, _sheets(packet, tmp_path, edit=edit), tmp_path)
    n_rows = sum(len(e["items"]["part-2"]) for e in json.loads((packet_dir / "manifest.json").read_text())["raters"])
    assert len(problems) == 2 * n_rows
    assert {p.split(":")[0] for p in problems} == {"r1-part-2.csv", "r2-part-2.csv", "r3-part-2.csv"}
    assert "preference 'C' is not valid; write A, B or tie" in problems[1]


BAD_JSONL = [
    ("not json", lambda line: "{not json", "is not valid JSON (Expecting property name enclosed in double quotes)"),
    ("not an object", lambda line: "[1, 2]", "must be a JSON object, got list"),
    ("extra field", lambda line: line.replace('"A_coverage": ', '"A_coverage": true, "x": ', 1),
     "wrong fields (unexpected 'x'); expected the fields"),
    ("unknown part", lambda line: line.replace('"part-1"', '"part-9"'), "unknown part 'part-9'; the packet's parts are part-1, part-2"),
    ("bool score", lambda line: json.dumps({**json.loads(line), "B_style": True}), "B_style must be a whole number from 1 to 5, got true"),
    ("float score", lambda line: json.dumps({**json.loads(line), "B_style": 2.5}), "B_style must be a whole number from 1 to 5, got 2.5"),
]


@pytest.mark.parametrize(("case", "change", "message"), BAD_JSONL, ids=[c[0] for c in BAD_JSONL])
def test_bad_jsonl(packet: tuple[Path, dict, dict, Any], tmp_path: Path, case: str, change: Any, message: str) -> None:
    packet_dir, answers, _, _ = packet
    sheets = _sheets(packet, tmp_path, jsonl=True)
    path = tmp_path / "r1-part-1.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = change(lines[1])
    path.write_text("\n".join(lines) + "\n")
    problems = _problems(packet_dir, sheets, tmp_path)
    assert problems[0].startswith(f"r1-part-1.jsonl:2: {message}")
    # A line that cannot be read at all leaves its item missing; a line with a bad value does not.
    assert len(problems) == (1 if case in ("bool score", "float score") else 2)


def test_lenient_but_exact_forms_are_accepted(packet: tuple[Path, dict, dict, Any], tmp_path: Path) -> None:
    """Spreadsheet habits that lose no information: '4.0', spaces, lower-case codes and letters,
    ';' as the delimiter, blank lines, a BOM."""
    packet_dir, answers, key, _ = packet

    def edit(rater: str, part: str, row: dict[str, Any]) -> dict[str, Any]:
        letters = ["A", "B", "C"] if part == "part-1" else ["A", "B"]
        return {**row, "A_" + ("coverage" if part == "part-1" else "format"): " 4.0 ", "item": row["item"].lower(),
                "preference": " " + " = ".join(letters).lower() + " "}

    sheets = _sheets(packet, tmp_path, edit=edit)
    path = tmp_path / "r2-part-1.csv"
    path.write_text("\ufeff" + path.read_text().replace(",", ";") + "\r\n\r\n", encoding="utf-8")
    human = import_ratings(packet_dir, sheets)
    assert len(human.ratings) == 2 * len(key["items"])
    assert all(len(r.ranking) == 1 for r in human.ratings)  # "a = b = c" is a three-way tie
    assert human.suites["banking77"]["preferences"]["banking77"]["tie_rate"] == 1.0
    for r in human.ratings:
        at_a = key["items"][r.item]["letters"]["A"]
        assert r.scores[at_a]["coverage" if r.part == "part-1" else "format"] == 4


def test_ties_can_be_forbidden(results: dict[str, Any], tmp_path: Path, sim: Any, three_raters: list[Any]) -> None:
    results["suites"][1]["rubric"] = {"preference": {"question": "Which is better?", "allow_tie": False}}
    build_packets(results, tmp_path / "p", n_per_suite=4, raters=["r1", "r2", "r3"], suites=["banking77"])
    answers = sim.fill_answers(tmp_path / "p", three_raters)
    for row in answers.values():
        row["preference"] = "tie"
    with pytest.raises(RatingsError) as err:
        import_ratings(tmp_path / "p", sim.write_filled_sheets(tmp_path / "p", answers, tmp_path / "back"))
    assert all(p.message == "preference 'tie': this rubric does not allow ties; write A or B" for p in err.value.problems)


def test_packet_folder_problems(tmp_path: Path) -> None:
    with pytest.raises(RatingsError, match="manifest.json: not found; pass the folder that build_packets wrote"):
        import_ratings(tmp_path, [tmp_path / "x.csv"])


def test_damaged_or_foreign_packet_folder(packet: tuple[Path, dict, dict, Any], tmp_path: Path) -> None:
    packet_dir = packet[0]
    copy = tmp_path / "copy"
    shutil.copytree(packet_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["format"] = "something-else"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RatingsError, match="is not an ftevals packet folder"):
        import_ratings(copy, [tmp_path / "x.csv"])
    del manifest["raters"]
    manifest["format"] = "ftevals.packet"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RatingsError, match="the manifest or key is damaged"):
        import_ratings(copy, [tmp_path / "x.csv"])
    (copy / "manifest.json").write_text("{")
    with pytest.raises(RatingsError, match="manifest.json: cannot be read as JSON"):
        import_ratings(copy, [tmp_path / "x.csv"])
