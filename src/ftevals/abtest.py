"""Online A/B outcomes of two models (the seeds' "route ~10% of traffic"), beside the offline verdict.

    ftevals ab reports/results.json data/production-logs/ab.jsonl --suite banking77 --treatment banking77

The outcome file has one production request per line: `{"arm": MODEL, "resolved": true, "rating": 4}`.
The two arms serve different requests, so the tests are *unpaired*:
- a yes/no outcome (JSON booleans, or 0/1) is a difference of two proportions: Newcombe's hybrid
  score interval (Wilson intervals of each arm combined) and a two-sided pooled z-test, or Fisher's
  exact test when an expected cell count is below 5;
- a numeric outcome (a rating, a handling time) is compared with the Mann-Whitney U test (two-sided)
  and the difference of means with a percentile bootstrap CI (each arm resampled on its own, seeded).
Each outcome gets a verdict (`improved` / `regressed` / `no sig. change`, with `--lower-is-better`
for outcomes such as `escalated`), and the A/B as a whole is set beside the suite's own paired
comparison of the same two models on its primary metric: `agree`, `disagree`, or `inconclusive`
when either side has no significant change.

Rows are dropped, and counted by reason, when they are not JSON objects, name no known arm, or
lack an outcome (per outcome).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, DatasetError, Problem
from .results import ABOutcome, ABResult, Results, SuiteResult

RESAMPLES = 2000


def _read(path: Path, arms: Sequence[str], arm_field: str) -> tuple[list[dict[str, Any]], Counter[str]]:
    dropped: Counter[str] = Counter()
    rows: list[dict[str, Any]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(Problem(str(path), 0, f"cannot read the outcome file ({exc})")) from None
    for line in lines:
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            dropped["unreadable JSON"] += 1
            continue
        if not isinstance(row, dict):
            dropped["unreadable JSON"] += 1
        elif row.get(arm_field) not in arms:
            dropped[f"{arm_field} is not {' or '.join(arms)}"] += 1
        else:
            rows.append(row)
    return rows, dropped


def _wilson(k: int, n: int, z: float) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def two_proportions(k_c: int, n_c: int, k_t: int, n_t: int, alpha: float = 0.05) -> tuple[float, float, float, float, str]:
    """(delta, ci_low, ci_high, p, test) for p_t - p_c: Newcombe's hybrid score CI; z or Fisher p."""
    from scipy import stats

    z = float(stats.norm.ppf(1 - alpha / 2))
    p_c, p_t = k_c / n_c, k_t / n_t
    l_c, u_c = _wilson(k_c, n_c, z)
    l_t, u_t = _wilson(k_t, n_t, z)
    delta = p_t - p_c
    low = delta - math.sqrt((p_t - l_t) ** 2 + (u_c - p_c) ** 2)
    high = delta + math.sqrt((u_t - p_t) ** 2 + (p_c - l_c) ** 2)
    pooled = (k_c + k_t) / (n_c + n_t)
    expected = min(n * q for n in (n_c, n_t) for q in (pooled, 1 - pooled))
    if expected < 5:
        p = float(stats.fisher_exact([[k_t, n_t - k_t], [k_c, n_c - k_c]]).pvalue)
        return delta, low, high, p, "Fisher exact"
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_t))
    p = 1.0 if se == 0 else float(2 * stats.norm.sf(abs(delta) / se))
    return delta, low, high, p, "two-proportion z"


def two_samples(control: Sequence[float], treatment: Sequence[float], alpha: float = 0.05,
                seed: int = 0) -> tuple[float, float, float, float, str]:
    """(delta of means, bootstrap ci_low, ci_high, Mann-Whitney p, test) for treatment - control."""
    from scipy import stats

    c, t = np.asarray(control, dtype=float), np.asarray(treatment, dtype=float)
    delta = float(t.mean() - c.mean())
    rng = np.random.default_rng(seed)
    boots = (t[rng.integers(0, len(t), (RESAMPLES, len(t)))].mean(axis=1)
             - c[rng.integers(0, len(c), (RESAMPLES, len(c)))].mean(axis=1))
    low, high = (float(x) for x in np.quantile(boots, [alpha / 2, 1 - alpha / 2]))
    p = float(stats.mannwhitneyu(t, c, alternative="two-sided").pvalue)
    return delta, low, high, p, "Mann-Whitney U"


def _kind(values: Sequence[Any]) -> str | None:
    if all(isinstance(v, bool) or v in (0, 1) for v in values):
        return "proportion"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "score"
    return None


def _verdict(delta: float, p: float, alpha: float, higher_is_better: bool) -> str:
    if p >= alpha or delta == 0:
        return "no sig. change"
    return "improved" if (delta > 0) == higher_is_better else "regressed"


def analyse(path: Path, *, control: str, treatment: str, outcomes: Sequence[str] = (),
            lower_is_better: Sequence[str] = (), arm_field: str = "arm", alpha: float = 0.05, seed: int = 0) -> ABResult:
    """Read the outcome file and test each outcome (all scalar fields when `outcomes` is empty)."""
    if control == treatment:
        raise ConfigError(f"the A/B control and treatment are both {control!r}; name two different arms")
    rows, dropped = _read(path, (control, treatment), arm_field)
    names = list(outcomes) or sorted({k for r in rows for k, v in r.items()
                                      if k != arm_field and isinstance(v, (bool, int, float))})
    if not names:
        raise DatasetError(Problem(str(path), 0, f"no numeric or yes/no outcome fields in {len(rows)} usable rows; "
                                   "expected e.g. {\"arm\": \"base\", \"resolved\": true, \"rating\": 4}"))
    results = []
    for name in names:
        arms = {a: [r[name] for r in rows if r[arm_field] == a and r.get(name) is not None] for a in (control, treatment)}
        missing = sum(1 for r in rows if r.get(name) is None)
        if missing:
            dropped[f"no {name}"] += missing
        kind = _kind(arms[control] + arms[treatment])
        if kind is None:
            raise DatasetError(Problem(str(path), 0, f"outcome {name!r} mixes types; expected yes/no or numbers only"))
        n_c, n_t = len(arms[control]), len(arms[treatment])
        if min(n_c, n_t) < 2:
            raise DatasetError(Problem(str(path), 0, f"outcome {name!r} has {n_c} {control} and {n_t} {treatment} rows; "
                                       "need at least 2 per arm"))
        higher = name not in lower_is_better
        if kind == "proportion":
            k_c, k_t = sum(map(bool, arms[control])), sum(map(bool, arms[treatment]))
            delta, low, high, p, test = two_proportions(k_c, n_c, k_t, n_t, alpha)
            values = (k_c / n_c, k_t / n_t)
        else:
            delta, low, high, p, test = two_samples(arms[control], arms[treatment], alpha, seed)
            values = (float(np.mean(arms[control])), float(np.mean(arms[treatment])))
        results.append(ABOutcome(name, kind, higher, n_c, n_t, values[0], values[1], delta, low, high, p, test,
                                 _verdict(delta, p, alpha, higher)))
    return ABResult(str(path), control, treatment, tuple(results), alpha, dict(sorted(dropped.items())))


def beside_offline(ab: ABResult, suite: SuiteResult) -> ABResult:
    """Set the suite's paired verdict for the same two models (primary metric) beside the online one."""
    primary = suite.metrics[0].name if suite.metrics else None
    comparison = suite.comparison(ab.treatment, primary) if primary and ab.control == suite.reference else None
    if comparison is None:
        return replace(ab, offline_metric=primary, offline_verdict=None, agreement=None)
    online = {o.verdict for o in ab.outcomes} - {"no sig. change"}
    offline = comparison.verdict if comparison.verdict in ("improved", "regressed") else None
    if offline is None or not online:
        agreement = "inconclusive"
    else:
        agreement = "agree" if online == {offline} else "disagree"
    return replace(ab, offline_metric=primary, offline_verdict=comparison.verdict, agreement=agreement)


def attach(results: Results, suite_name: str, ab: ABResult) -> Results:
    """The results with `ab` set on suite `suite_name` (whose models must include both arms)."""
    names = [s.name for s in results.suites]
    if suite_name not in names:
        raise ConfigError(f"no suite {suite_name!r} in the results; suites: {', '.join(names)}")
    suites = []
    for s in results.suites:
        if s.name == suite_name:
            unknown = [m for m in (ab.control, ab.treatment) if m not in s.models]
            if unknown:
                raise ConfigError(f"suite {suite_name!r} has no model {', '.join(map(repr, unknown))}; its models: "
                                  f"{', '.join(s.models)} (the A/B arms are named by model)")
            s = replace(s, ab=beside_offline(ab, s))
        suites.append(s)
    return replace(results, suites=tuple(suites))


def lines(ab: ABResult) -> list[str]:
    from .numbers import num, p_clause, signed

    out = [f"A/B {ab.treatment} vs {ab.control} ({ab.source}):"]
    for o in ab.outcomes:
        out.append(f"  {o.outcome}: {num(o.treatment_value)} vs {num(o.control_value)} ({signed(o.delta)}, "
                   f"{round((1 - ab.alpha) * 100)}% CI {signed(o.ci_low)}..{signed(o.ci_high)}, n={o.n_treatment}/{o.n_control}, "
                   f"{o.test}, {p_clause(o.p_value)}): {o.verdict}")
    if ab.dropped:
        out.append("  dropped: " + ", ".join(f"{n} ({why})" for why, n in ab.dropped.items()))
    if ab.agreement:
        out.append(f"  offline ({ab.offline_metric}): {ab.offline_verdict}; online and offline {ab.agreement}")
    return out


__all__ = ["analyse", "attach", "beside_offline", "lines", "two_proportions", "two_samples"]
