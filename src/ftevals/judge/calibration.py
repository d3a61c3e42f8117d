"""Calibrating the judge against the human raters, and deciding whether its gates may count.

A judge's verdict counts only as far as it agrees with people. On the items the raters scored
(one item = one model's output for one example), per rubric criterion and for the overall
preference, `agreement_figures` compares the judge with the raters' consensus (the median of their
scores, rounded half up): Krippendorff's alpha (ordinal), quadratic-weighted Cohen's kappa and the
confusion matrix, beside the raters' alpha among themselves, which is the most a judge can be
expected to reach. `write_calibration` stores the figures with the judge's identity and the exact
ratings and verdicts they came from; `calibration_status` then tells a run, per criterion, whether
the file is missing, stale (another judge, prompt or rubric), below the suite's floor, or calibrated.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import agreement
from ..errors import ConfigError, ResultsError
from ..fsutil import atomic_write_text, display_path
from ..results.judge_records import (CriterionAgreement, CriterionCalibration, JudgeCalibration, JudgeIdentity,
                                     JudgeResult)
from ..results.records import Results, SuiteResult

if TYPE_CHECKING:  # pragma: no cover
    from ..suite import Suite

CALIBRATION_SCHEMA = "ftevals.judge-calibration"
CALIBRATION_VERSION = 1
#: The pseudo-criterion of the pairwise judge: its outcome against the reference (+1 win, 0 tie or
#: inconsistent, -1 loss) compared with each rater's ranking of the same two responses.
PREFERENCE = "preference"
_VERDICT_VALUE = {"win": 1, "tie": 0, "inconsistent": 0, "loss": -1}


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _consensus(values: Sequence[float]) -> int:
    # Round half up (not Python's half-to-even), so that 3.5 is 4 whatever the neighbours.
    return int(math.floor(float(np.median(values)) + 0.5))


def _rater_outcome(ranking: Sequence[Sequence[str]], model: str, reference: str) -> int | None:
    position = {m: i for i, group in enumerate(ranking) for m in group}
    if model not in position or reference not in position:
        return None
    a, b = position[model], position[reference]
    return 1 if a < b else 0 if a == b else -1


def _human_values(suite: SuiteResult) -> dict[str, dict[tuple[str, str], dict[str, int]]]:
    """criterion -> (example, model) -> rater -> value, from the results file's imported ratings."""
    human = suite.human
    if human is None:
        raise ResultsError(f"suite {suite.name!r} has no human ratings; build packets (ftevals packet), have them "
                           "rated and import them (ftevals ratings ... --results RESULTS) first")
    if human.ratings is None:
        raise ResultsError(f"suite {suite.name!r}: its human ratings were imported by an older ftevals, without the "
                           "individual ratings a calibration needs; import the sheets again (ftevals ratings)")
    out: dict[str, dict[tuple[str, str], dict[str, int]]] = {}
    reference = human.reference
    for row in human.ratings:
        rater, example = str(row["rater"]), str(row["example"])
        for model, by in dict(row.get("scores") or {}).items():
            for criterion, value in dict(by).items():
                out.setdefault(criterion, {}).setdefault((example, model), {})[rater] = int(value)
            if model != reference:
                outcome = _rater_outcome(row.get("ranking") or [], model, reference)
                if outcome is not None:
                    out.setdefault(PREFERENCE, {}).setdefault((example, model), {})[rater] = outcome
    return out


def _judge_values(judge: JudgeResult) -> dict[str, dict[tuple[str, str], int]]:
    out: dict[str, dict[tuple[str, str], int]] = {}
    for it in judge.items:
        for criterion, value in it.scores.items():
            if value is not None:
                out.setdefault(criterion, {})[(it.example, it.model)] = int(value)
        if it.verdict is not None:
            out.setdefault(PREFERENCE, {})[(it.example, it.model)] = _VERDICT_VALUE[it.verdict]
    return out


def criterion_agreement(criterion: str, humans: Mapping[tuple[str, str], Mapping[str, int]],
                        judge: Mapping[tuple[str, str], int], levels: Sequence[int]) -> CriterionAgreement:
    """Judge-human agreement on the units both rated (see the module docstring)."""
    units = sorted(u for u in humans if u in judge and humans[u])
    raters = sorted({r for u in units for r in humans[u]})
    matrix = np.full((len(raters), len(units)), np.nan)
    for j, u in enumerate(units):
        for r, v in humans[u].items():
            matrix[raters.index(r), j] = v
    consensus = np.array([_consensus(list(humans[u].values())) for u in units], dtype=float)
    verdicts = np.array([judge[u] for u in units], dtype=float)
    confusion = np.zeros((len(levels), len(levels)), dtype=int)
    index = {lv: i for i, lv in enumerate(levels)}
    for h, j in zip(consensus, verdicts):
        if int(h) in index and int(j) in index:
            confusion[index[int(h)], index[int(j)]] += 1
    n = len(units)
    return CriterionAgreement(
        criterion=criterion,
        n_items=n,
        alpha=_num(agreement.krippendorff_alpha(np.vstack([verdicts, consensus]), "ordinal")) if n else None,
        alpha_humans=_num(agreement.krippendorff_alpha(matrix, "ordinal")) if n else None,
        alpha_with_judge=_num(agreement.krippendorff_alpha(np.vstack([matrix, verdicts]), "ordinal")) if n else None,
        kappa_quadratic=_num(agreement.cohen_kappa(verdicts, consensus, weights="quadratic", labels=levels)) if n else None,
        levels=tuple(levels),
        confusion=tuple(tuple(int(x) for x in row) for row in confusion),
    )


def agreement_figures(suite: SuiteResult) -> dict[str, CriterionAgreement]:
    """criterion (and "preference") -> judge-human agreement, for a suite with ratings and a judge."""
    judge = suite.judge
    if judge is None:
        raise ResultsError(f"suite {suite.name!r} has no judge verdicts; run it with Suite(judge=...) first")
    humans = _human_values(suite)
    judged = _judge_values(judge)
    scale = list(range(judge.scale[0], judge.scale[-1] + 1))
    wanted = [*judge.criteria, *([PREFERENCE] if judge.win_rates else [])]
    return {c: criterion_agreement(c, humans.get(c, {}), judged.get(c, {}), [-1, 0, 1] if c == PREFERENCE else scale)
            for c in wanted}


def disagreements(suite: SuiteResult, limit: int = 10) -> list[dict[str, Any]]:
    """The items where the judge and the raters' consensus differ most (for the report)."""
    if suite.judge is None or suite.human is None or suite.human.ratings is None:
        return []
    humans, judged = _human_values(suite), _judge_values(suite.judge)
    rows = []
    for c in suite.judge.criteria:
        for unit, by in humans.get(c, {}).items():
            if unit in judged.get(c, {}) and by:
                consensus = _consensus(list(by.values()))
                rows.append({"example": unit[0], "model": unit[1], "criterion": c, "judge": judged[c][unit],
                             "humans": sorted(by.values()), "consensus": consensus,
                             "gap": abs(judged[c][unit] - consensus)})
    rows.sort(key=lambda r: (-r["gap"], r["example"], r["model"], r["criterion"]))
    return [r for r in rows if r["gap"] > 0][:limit]


# ---------------------------------------------------------------------------------------------
# the calibration file


def calibration_document(results: Results, suite_name: str) -> dict[str, Any]:
    """The calibration file's content for one suite of a results file (judge verdicts + ratings)."""
    suite = results.suite(suite_name)
    if suite is None:
        raise ResultsError(f"the results file has no suite {suite_name!r} "
                           f"(suites: {', '.join(s.name for s in results.suites) or 'none'})")
    figures = agreement_figures(suite)
    assert suite.judge is not None and suite.human is not None and suite.human.ratings is not None
    rated = {str(r["example"]) for r in suite.human.ratings}
    return {
        "schema": CALIBRATION_SCHEMA,
        "version": CALIBRATION_VERSION,
        "suite": suite.name,
        "source_run": results.run.id,
        "packet_id": suite.human.packet_id,
        "identity": suite.judge.identity.to_dict(),
        "raters": list(suite.human.raters),
        "ratings": [dict(r) for r in suite.human.ratings],
        "judge": [it.to_dict() for it in suite.judge.items if it.example in rated],
        "criteria": {c: f.to_dict() for c, f in figures.items()},
    }


def write_calibration(results: Results, suite_name: str, out: str | Path) -> dict[str, Any]:
    """Write the calibration file (atomically, sorted keys: a reviewable diff); return its content."""
    doc = calibration_document(results, suite_name)
    atomic_write_text(Path(out), json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return doc


def load_calibration(path: str | Path) -> dict[str, Any]:
    """Read and check a calibration file; ConfigError names the file and what is wrong."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{display_path(p)}: cannot read the judge calibration ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ConfigError(f"{display_path(p)}: the judge calibration is not valid JSON ({exc}); write it again with "
                          "ftevals judge calibrate") from None
    if not isinstance(doc, dict) or doc.get("schema") != CALIBRATION_SCHEMA:
        raise ConfigError(f"{display_path(p)}: not a judge calibration file (expected \"schema\": "
                          f"\"{CALIBRATION_SCHEMA}\"); write it with ftevals judge calibrate")
    if doc.get("version") != CALIBRATION_VERSION:
        raise ConfigError(f"{display_path(p)}: judge calibration version {doc.get('version')!r}; this ftevals reads "
                          f"version {CALIBRATION_VERSION}")
    try:
        JudgeIdentity.from_dict(doc["identity"])
        for c in dict(doc["criteria"]).values():
            CriterionAgreement.from_dict(c)
    except Exception as exc:  # noqa: BLE001 - any shape problem is the same message
        raise ConfigError(f"{display_path(p)}: the judge calibration is malformed ({exc}); write it again with "
                          "ftevals judge calibrate") from None
    return doc


def _fmt(x: float | None) -> str:
    return "undefined" if x is None else f"{x:.2f}"


def calibration_status(suite: Suite, judge: JudgeResult) -> JudgeCalibration:
    """Per criterion of this run's judge: may its gates decide? (See the module docstring.)"""
    config = suite.judge_config
    path = suite.judge_calibration_path()
    assert config is not None and path is not None
    shown = display_path(path)
    wanted = [*judge.criteria, *([PREFERENCE] if judge.win_rates else [])]
    floor = f"alpha >= {config.min_alpha:g} on >= {config.min_items} items"
    todo = (f"rate packets of this suite (ftevals packet), import the ratings (ftevals ratings ... --results RESULTS), "
            f"then run: ftevals judge calibrate RESULTS --suite {suite.name} --out {shown}")
    states: dict[str, CriterionCalibration] = {}
    if not path.exists():
        for c in wanted:
            states[c] = CriterionCalibration("missing", f"the judge is not calibrated on {c} (no {shown}); {todo}")
        return JudgeCalibration(shown, config.min_alpha, config.min_items, states)
    doc = load_calibration(path)
    differs = judge.identity.same_judge(JudgeIdentity.from_dict(doc["identity"]))
    for c in wanted:
        entry = doc["criteria"].get(c)
        if differs:
            states[c] = CriterionCalibration(
                "stale", f"{shown} calibrated another judge (differs in {', '.join(differs)}); calibrate this one "
                         f"again: {todo}")
        elif entry is None:
            states[c] = CriterionCalibration("missing", f"{shown} has no figures for {c}; {todo}")
        else:
            fig = CriterionAgreement.from_dict(entry)
            said = f"judge-human alpha on {c} is {_fmt(fig.alpha)} on {fig.n_items} items"
            if fig.alpha is None or fig.alpha < config.min_alpha or fig.n_items < config.min_items:
                states[c] = CriterionCalibration(
                    "below_floor", f"{said}, below the suite's floor ({floor}, {shown}); rate more items or use a "
                                   "stronger judge, then calibrate again", fig)
            else:
                states[c] = CriterionCalibration("calibrated", f"{said} (floor: {floor})", fig)
    return JudgeCalibration(shown, config.min_alpha, config.min_items, states)


__all__ = ["CALIBRATION_SCHEMA", "PREFERENCE", "agreement_figures", "calibration_document", "calibration_status",
           "criterion_agreement", "disagreements", "load_calibration", "write_calibration"]
