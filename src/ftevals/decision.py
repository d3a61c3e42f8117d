"""The decision stage: per model, promote / hold / insufficient evidence, with the reasons behind it.

    results record (gates, comparisons, baseline, integrity, failures) -> decide(results) -> record + decisions

A pure function of the results record, run once after the baselines are checked; the terminal
summary, the report, the CI markdown summary and the results file all print what it decided.
The rules, per suite and non-reference model:

- **hold** when something blocks: a gate of the model failed (a documented known failure is
  accepted and shown as such), the suite's baseline changed for it (or for the whole suite: a
  changed dataset), a suite-level gate failed (contamination), or the model could not be
  generated or scored (its own failure, recorded in the suite).
- **insufficient evidence** when nothing blocks but the suite could not have seen what a gate
  guards against: a base-relative gate that passed on its point estimate (`>= base - 0.05`) while
  the comparison found no significant change, and the smallest change the paired test detects at
  this n (power.py, power 0.8 at the suite's two-sided alpha) is larger than the gate's margin;
  or no gate checks the model at all.
- **promote** otherwise.

Across the run, a model's outcome is its worst over the suites it was judged in (hold, then
insufficient evidence, then promote). Every base-relative gate gets a `PowerCheck` either way, so
"no significant change" always says what change the suite could have seen.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from .errors import FtevalsError
from .gate import Gate, parse_gate
from .numbers import num
from .power import DEFAULT_POWER, paired_detectability
from .results.records import (BaselineRecord, Comparison, Decision, DecisionReason, GateOutcome, Outcome, PowerCheck,
                              ReasonKind, ReasonStatus, Results, SuiteResult)

_RANK: dict[Outcome, int] = {"promote": 0, "insufficient_evidence": 1, "hold": 2}
OUTCOME_WORDS: dict[Outcome, str] = {"promote": "promote", "hold": "HOLD", "insufficient_evidence": "insufficient evidence"}


def decide(results: Results, *, power: float = DEFAULT_POWER,
           prices: Mapping[str, Mapping[str, float]] | None = None) -> Results:
    """The results with every suite's decisions and the run's decisions filled in (replacing any).

    `prices` (ini `ftevals_prices`, model -> {"input_per_1m_tokens": X, ...}) adds each suite
    decision's cost per 1,000 requests."""
    unit = _unit_prices(prices)
    suites = tuple(replace(s, decisions=suite_decisions(s, results, power=power, unit_prices=unit))
                   for s in results.suites)
    decided = replace(results, suites=suites)
    return replace(decided, decisions=run_decisions(suites))


def suite_decisions(suite: SuiteResult, results: Results | None = None, *, power: float = DEFAULT_POWER,
                    unit_prices: Mapping[str, tuple[float, float]] | None = None) -> tuple[Decision, ...]:
    """One decision per non-reference model of the suite, in the suite's model order."""
    out = []
    for model in dict.fromkeys([*suite.models, *(suite.failures or {})]):
        if model == suite.reference:
            continue
        reasons: list[DecisionReason] = []
        checks: list[PowerCheck] = []
        reasons += _failure_reasons(suite, model)
        mine = [g for g in suite.gates if g.model == model]
        for g in mine:
            reason, check = _gate_reason(suite, g, power)
            reasons.append(reason)
            if check is not None:
                checks.append(check)
                lacking = _power_reason(g, check, suite.comparison(model, check.metric))
                if lacking is not None:
                    reasons.append(lacking)
        reasons += [_suite_gate_reason(g) for g in suite.gates if g.model is None]
        if not mine:
            contender = suite.fewshot is not None and suite.fewshot.model == model
            fix = ("it is the few-shot prompting contender, which unqualified gates skip: set gate_models='all' "
                   "or name it in a gate" if contender else "add a gate, e.g. 'METRIC >= base - MARGIN'")
            reasons.append(_reason("coverage", "insufficient", f"no gate checks {model} in this suite, so nothing "
                                   f"says what it must achieve ({fix})"))
        reasons += _baseline_reasons(suite.baseline, model)
        reasons += _context_reasons(suite, model, results)
        out.append(Decision(model, _outcome(reasons), tuple(reasons), tuple(checks),
                            cost_per_1k_requests=cost_per_1k(suite, model, unit_prices or {})))
    return tuple(out)


def cost_per_1k(suite: SuiteResult, model: str, unit_prices: Mapping[str, tuple[float, float]]) -> float | None:
    """What 1,000 of this suite's requests cost with the model: its mean tokens in and out per request
    here times its price per token (None without a price or without usage)."""
    price, usage = unit_prices.get(model), suite.usage.get(model)
    if price is None or usage is None or usage.requests <= 0:
        return None
    per_request = (usage.tokens_in * price[0] + usage.tokens_out * price[1]) / usage.requests
    return round(1000.0 * per_request, 10)


def _unit_prices(prices: Mapping[str, Mapping[str, float]] | None) -> dict[str, tuple[float, float]]:
    if not prices:
        return {}
    from .report.views.usage import normalize_prices  # the one reading of a price entry

    return normalize_prices(prices)


def run_decisions(suites: Sequence[SuiteResult]) -> tuple[Decision, ...]:
    """Per model, across every suite it was judged in: the worst outcome, every reason kept with its suite."""
    by_model: dict[str, list[tuple[str, Decision]]] = {}
    for suite in suites:
        for d in suite.decisions or ():
            by_model.setdefault(d.model, []).append((suite.name, d))
    out = []
    for model, found in by_model.items():
        outcome = max((d.outcome for _, d in found), key=_RANK.__getitem__)
        reasons = tuple(replace(r, suite=name) for name, d in found for r in d.reasons)
        checks = tuple(c for _, d in found for c in d.power)
        out.append(Decision(model, outcome, reasons, checks, tuple(name for name, _ in found)))
    return tuple(out)


def decision_line(d: Decision, *, width: int = 0) -> str:
    """One line: the model, its outcome, and the reasons that decided it (or what passed)."""
    head = f"{d.model.ljust(width)}  {OUTCOME_WORDS[d.outcome]}"
    return f"{head}: {decision_summary(d)}"


def decision_summary(d: Decision) -> str:
    """The deciding reasons in one phrase: the blocking ones for hold, the lacking ones for
    insufficient evidence, else what passed."""
    def where(r: DecisionReason) -> str:
        return f"{r.suite}: " if r.suite else ""

    if d.outcome == "hold":
        return "; ".join(where(r) + r.message for r in d.blocking)
    if d.outcome == "insufficient_evidence":
        return "; ".join(where(r) + r.message for r in d.lacking)
    gates = sum(1 for r in d.reasons if r.kind == "gate" and r.status == "pass")
    suites = f" in {len(d.suites)} suite{'s' if len(d.suites) != 1 else ''}" if d.suites else ""
    extra = sorted({r.message for r in d.reasons if r.kind == "baseline" and r.status == "pass"})
    base = f"{gates} gate{'s' if gates != 1 else ''} passed{suites}"
    accepted = sum(1 for r in d.reasons if r.kind == "gate" and r.status == "info")
    if accepted:
        base += f", {accepted} known failure{'s' if accepted != 1 else ''} accepted"
    return base + (f"; {extra[0]}" if len(extra) == 1 else "")


# ---------------------------------------------------------------------------------------------
# the reasons


def _reason(kind: ReasonKind, status: ReasonStatus, message: str) -> DecisionReason:
    return DecisionReason(kind, status, message)


def _outcome(reasons: Iterable[DecisionReason]) -> Outcome:
    statuses = {r.status for r in reasons}
    if "block" in statuses:
        return "hold"
    if "insufficient" in statuses:
        return "insufficient_evidence"
    return "promote"


def _gate_reason(suite: SuiteResult, g: GateOutcome, power: float) -> tuple[DecisionReason, PowerCheck | None]:
    source = g.source or g.text or g.expression
    if g.passed:
        reason = _reason("gate", "pass", f"{source}: {g.message}")
    elif g.known_failure:
        reason = _reason("gate", "info", f"{source}: known failure accepted ({g.known_failure})")
    else:
        reason = _reason("gate", "block", f"{source} failed: {g.message}")
    gate = _parsed(source)
    if gate is None or not gate.relative or g.model is None:
        return reason, None
    comp = suite.comparison(g.model, gate.metric)
    if comp is None:
        return reason, None
    return reason, power_check(gate, comp, power=power)


def power_check(gate: Gate, comp: Comparison, *, power: float = DEFAULT_POWER) -> PowerCheck:
    """The detectability of a base-relative gate's comparison (see `PowerCheck`)."""
    margin = _margin(gate)
    found = paired_detectability(test=comp.test, n=comp.n, alpha=comp.alpha, margin=margin,
                                 discordant=len(comp.fixes) + len(comp.regressions),
                                 ci_low=comp.ci_low, ci_high=comp.ci_high, power=power)
    detectable = None if not margin or found.mde is None else found.mde <= margin + 1e-12
    if margin and found.mde is None:
        detectable = False
    return PowerCheck(gate.text, comp.model, comp.metric, comp.test, comp.n, comp.alpha, power, found.mde,
                      margin or None, found.n_needed, detectable, found.basis)


def _margin(gate: Gate) -> float:
    """The change a relative gate is about, as a positive number: the allowed drop of a guard gate
    (`>= base - 0.05`: 0.05), the wanted gain of a superiority gate (`>= base + 0.02`: 0.02); 0
    for `> base` and `>= base`, which ask for any change at all."""
    return abs(gate.threshold)


def _is_guard(gate: Gate) -> bool:
    """`>= base - m` / `<= base + m`: the gate guards against a change larger than m (non-inferiority)."""
    floor = gate.op in (">=", ">")
    return (floor and gate.threshold < 0) or (not floor and gate.threshold > 0)


def _power_reason(g: GateOutcome, check: PowerCheck, comp: Comparison | None) -> DecisionReason | None:
    """"No significant change" at an n that could not have seen the gate's margin is not a pass."""
    gate = _parsed(g.source or g.text or g.expression)
    if gate is None or comp is None or not g.passed or gate.significantly or not _is_guard(gate):
        return None
    if comp.verdict != "no_significant_change" or check.detectable is not False:
        return None
    return _reason("power", "insufficient", power_phrase(check))


def power_phrase(check: PowerCheck) -> str:
    """`accuracy >= base - 0.05 passed on its point estimate, but at n=40 McNemar's exact test detects
    only changes of 0.242 or more (power 0.8, alpha 0.05); about 975 examples would detect 0.050`."""
    test = "McNemar's exact test" if check.test == "mcnemar-exact" else "the paired bootstrap"
    seen = (f"detects only changes of {num(check.mde)} or more" if check.mde is not None
            else "shows no spread to judge its power from (every resampled delta was equal)" if "no spread" in check.basis
            else "cannot detect even the largest possible change")
    need = (f"; about {check.n_needed:,} examples would detect {num(check.margin)}" if check.n_needed
            else f"; no n up to 10 million would detect {num(check.margin)}" if check.margin and "no spread" not in check.basis
            else "")
    return (f"{check.gate} passed on its point estimate with no significant change, but at n={check.n} {test} "
            f"{seen} (power {check.power:g}, alpha {check.alpha:g}){need}")


def _suite_gate_reason(g: GateOutcome) -> DecisionReason:
    source = g.source or g.text or g.expression
    if g.passed:
        return _reason("contamination", "pass", f"{source}: {g.message}")
    if g.known_failure:
        return _reason("contamination", "info", f"{source}: known failure accepted ({g.known_failure})")
    return _reason("contamination", "block", f"{source} failed: {g.message} (the suite's numbers cannot be trusted)")


def _baseline_reasons(baseline: BaselineRecord | None, model: str) -> list[DecisionReason]:
    if baseline is None:
        return []
    if model in (baseline.not_in_baseline or ()):
        return [_reason("baseline", "info", f"not in the baseline {baseline.path} (a candidate or a new model)")]
    if baseline.status == "changed":
        mine = [c for c in baseline.changes if c.model in (model, None)]
        if mine:
            from .baseline import describe_change  # the one wording of a change

            listed = "; ".join(describe_change(c) for c in mine[:3]) + (" ..." if len(mine) > 3 else "")
            return [_reason("baseline", "block", f"baseline {baseline.path} changed: {listed}")]
        return [_reason("baseline", "pass", f"baseline {baseline.path}: unchanged for {model}")]
    if baseline.status == "matched":
        return [_reason("baseline", "pass", "baseline matched")]
    return [_reason("baseline", "info", f"baseline {baseline.status}")]


def _failure_reasons(suite: SuiteResult, model: str) -> list[DecisionReason]:
    failure = (suite.failures or {}).get(model)
    if failure is None:
        return []
    return [_reason("failure", "block", f"{model} was not evaluated: {failure}")]


def _context_reasons(suite: SuiteResult, model: str, results: Results | None) -> list[DecisionReason]:
    out = []
    if model in (suite.different_base or ()):
        out.append(_reason("reference", "info", f"compared with {suite.reference}, a different base model: its deltas "
                                                "include the change of base"))
    forgot = suite.forgetting.models.get(model) if suite.forgetting is not None else None
    if forgot is not None and forgot.forgot:
        out.append(_reason("forgetting", "info", f"{suite.forgetting.metric} dropped {num(forgot.drop)} on this held-out "  # type: ignore[union-attr]
                                                 f"task ({num(forgot.ci_low)}..{num(forgot.ci_high)}, n={forgot.n})"))
    check = (results.integrity or {}).get(model) if results is not None else None
    if check is not None and check.n_prompts:
        out.append(_reason("integrity", "pass", f"adapter applied: {check.changed_outputs}/{check.n_prompts} outputs "
                                                f"differ from {check.base}'s"))
    return out


def _parsed(text: str) -> Gate | None:
    try:
        return parse_gate(text)
    except FtevalsError:
        return None  # a judge gate or another kind this stage does not read


__all__ = ["OUTCOME_WORDS", "cost_per_1k", "decide", "decision_line", "decision_summary", "power_check", "power_phrase",
           "run_decisions", "suite_decisions"]

