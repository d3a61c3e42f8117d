"""Gates: threshold expressions parsed at start-up and checked against a run's numbers.

Grammar (docs/gates.md has the full story and examples)::

    gate   := [MODEL ":"] METRIC OP RHS ["significantly"]
    OP     := ">=" | ">" | "<=" | "<"
    RHS    := NUMBER ["%"] | "base" [("+" | "-") NUMBER ["%"]]

"base" is the suite's reference model's value on the same metric. "%" always means hundredths
on the metric's own 0-1 scale: `95%` is 0.95 and `base - 2%` is base - 0.02 (two percentage
points), never a share of base's value. Keywords are case-insensitive; names are not.

A bad expression raises ConfigError naming the expression, the bad part and what was expected;
`Gate.check_metrics` then checks the names against the suite. `evaluate_gate` turns a gate and the
run's plain records (ScoreSummary per metric, Comparison records, suite-level values) into a
GateResult whose message is one line. A missing or undefined value fails the gate: it never
passes silently.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .compare import Comparison, ScoreSummary
from .numbers import level as _level
from .numbers import num as _num
from .numbers import p_clause
from .numbers import signed as _signed
from .errors import ConfigError

Op = Literal[">=", ">", "<=", "<"]
OPERATORS: tuple[Op, ...] = (">=", ">", "<=", "<")

# Values within this (relative) distance count as equal, so that float rounding cannot flip a
# gate: with n=100, 0.41 - 0.42 is -0.010000000000000009, which must satisfy `>= base - 0.01`.
_EPS = 1e-9

_OP_CHARS = "<>=!"
_MODEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_METRIC_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_SIGNED_NUMBER_PREFIX = re.compile(rf"([+-]?{_NUMBER})\s*(%?)")
_UNSIGNED_NUMBER_PREFIX = re.compile(rf"({_NUMBER})\s*(%?)")
_BASE_RE = re.compile(r"base\b(.*)", re.IGNORECASE | re.DOTALL)
_EXPECTED_OPS = ", ".join(OPERATORS)
#: `judge:CRITERION` names an LLM judge's score on a rubric criterion (ftevals/judge/); the ids
#: follow the rubric's rule (packets/rubrics.py).
JUDGE_PREFIX = "judge"
_CRITERION_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")


@dataclass(frozen=True)
class Gate:
    """A parsed gate expression.

    `relative` gates compare the model with the reference ("base"): they check
    delta = model - base against `threshold`, the margin written after "base" (0 for plain "base").
    Absolute gates check the value itself against `threshold` (a floor for > and >=, a ceiling for
    < and <=). `significantly` asks for statistical evidence instead of a point estimate (see
    `evaluate_gate`). `model` is set for model-qualified gates ("banking77: accuracy >= 0.7").
    """

    #: The expression exactly as written (what a suite lists; error messages show it whitespace-collapsed).
    text: str
    metric: str
    op: Op
    threshold: float
    relative: bool
    significantly: bool = False
    model: str | None = None
    #: The right-hand side normalised, e.g. "base - 0.01", "95%", "0.70".
    rhs: str = ""

    @property
    def expression(self) -> str:
        """The gate without its model qualifier, normalised: `accuracy >= base - 0.01`."""
        tail = " significantly" if self.significantly else ""
        return f"{self.metric} {self.op} {self.rhs}{tail}"

    @property
    def uses_percent(self) -> bool:
        return self.rhs.endswith("%")

    def check_metrics(
        self,
        known: Collection[str],
        *,
        suite_level: Collection[str] = (),
        ranges: Mapping[str, tuple[float, float]] | None = None,
    ) -> None:
        """Reject a gate whose metric the suite does not compute, at start-up.

        `known` are the suite's metric names, `suite_level` the names of suite-level values (like
        "contamination") that have no per-model score and no reference value. With `ranges`
        (metric -> inclusive value range), a "%" threshold on a metric that is not on a 0-1 scale is
        rejected, since "5%" would silently mean 0.05 of, say, a perplexity.
        """
        where = f"gate {self.text!r}"
        if self.metric in suite_level:
            if self.relative:
                raise ConfigError(
                    f"{where}: {self.metric!r} is a suite-level value with no reference value; "
                    f"compare it with a number, e.g. '{self.metric} {self.op} 0.01'"
                )
            if self.model is not None:
                raise ConfigError(
                    f"{where}: {self.metric!r} is a suite-level value, not a model's score; "
                    f"drop the '{self.model}:' prefix"
                )
            if self.significantly:
                raise ConfigError(f"{where}: {self.metric!r} is a suite-level value without a confidence "
                                  "interval; drop 'significantly'")
            return
        if self.metric not in known:
            choices = sorted(set(known) | set(suite_level))
            close = difflib.get_close_matches(self.metric, choices, n=3)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(
                f"{where}: unknown metric {self.metric!r}{hint} (this suite has: {', '.join(choices) or 'none'})"
            )
        if ranges is not None and self.uses_percent and self.metric in ranges:
            low, high = ranges[self.metric]
            if low < 0.0 or high > 1.0:
                raise ConfigError(
                    f"{where}: '%' means hundredths of a 0-1 metric, but {self.metric!r} ranges over "
                    f"[{low:g}, {high:g}]; write the threshold as a plain number"
                )

    def targets(self, models: Sequence[str], *, suite_level: Collection[str] = ()) -> list[str | None]:
        """The models this gate is evaluated for: None once for a suite-level value, the named model
        for a qualified gate, else every model in `models` (the suite's adapter models)."""
        if self.metric in suite_level:
            return [None]
        if self.model is None:
            return list(models)
        if self.model not in models:
            close = difflib.get_close_matches(self.model, list(models), n=3)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(
                f"gate {self.text!r}: unknown model {self.model!r}{hint} "
                f"(models gated in this suite: {', '.join(models) or 'none'})"
            )
        return [self.model]


@dataclass(frozen=True)
class GateResult:
    """The outcome of one gate for one model (model None for a suite-level value).

    `observed` is the number that was checked (the value, the delta, or the CI bound for
    "significantly" gates; None when missing), `required` the threshold it was checked against.
    `to_dict` is an entry of the results file's `gates` list, plus `text`: the gate as written in
    the suite (`expression` is its normalised form without the model qualifier).
    """

    gate: Gate
    model: str | None
    passed: bool
    message: str
    observed: float | None = None
    required: float | None = None

    @property
    def id(self) -> str:
        return f"{self.model}::{self.gate.expression}" if self.model else self.gate.expression

    @property
    def expression(self) -> str:
        return self.gate.expression

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "expression": self.expression, "model": self.model, "passed": self.passed,
                "message": self.message, "text": self.gate.text}


# --------------------------------------------------------------------------------------------
# Parsing


def parse_gate(text: str) -> Gate:
    """Parse one gate expression; ConfigError names the expression, the bad part and what was expected."""
    if not isinstance(text, str):
        raise ConfigError(f"a gate must be a string like 'accuracy >= 0.7', got {text!r}")
    src = " ".join(text.split())

    def fail(why: str) -> ConfigError:
        return ConfigError(f"gate {src!r}: {why}")

    if not src:
        raise fail("empty expression; expected e.g. 'accuracy >= 0.7'")
    start = next((i for i, ch in enumerate(src) if ch in _OP_CHARS), None)
    if start is None:
        raise fail(f"no comparison operator; expected one of {_EXPECTED_OPS}, as in 'accuracy >= 0.7'")
    end = start
    while end < len(src) and src[end] in _OP_CHARS:
        end += 1
    op_text = src[start:end]
    if op_text not in OPERATORS:
        raise fail(f"unknown operator {op_text!r}; expected one of {_EXPECTED_OPS}{_op_hint(op_text)}")
    op: Op = op_text  # type: ignore[assignment]
    lhs, rhs = src[:start].strip(), src[end:].strip()
    second = next((i for i, ch in enumerate(rhs) if ch in _OP_CHARS), None)
    if second is not None:
        other = rhs[second:].split()[0]
        raise fail(f"more than one comparison operator ({op!r} and {other!r}); write one gate per bound")
    model, metric = _parse_lhs(lhs, op, fail)
    relative, threshold, norm_rhs, significantly = _parse_rhs(rhs, op, fail)
    return Gate(text, metric, op, threshold, relative, significantly, model, norm_rhs)


def parse_gates(texts: Iterable[str]) -> list[Gate]:
    """Parse several gates, reporting every bad one in a single ConfigError (one per line)."""
    gates: list[Gate] = []
    errors: list[str] = []
    for text in texts:
        try:
            gates.append(parse_gate(text))
        except ConfigError as exc:
            errors.append(str(exc))
    if len(errors) == 1:
        raise ConfigError(errors[0])
    if errors:
        raise ConfigError(f"{len(errors)} gates are invalid:\n" + "\n".join(f"  {e}" for e in errors))
    return gates


def _op_hint(op_text: str) -> str:
    if set(op_text) <= {"=", "!"}:
        return " (gates are bounds; equality is not supported)"
    flipped = op_text[::-1]
    if flipped in OPERATORS:
        return f" (did you mean {flipped!r}?)"
    return ""


def _parse_lhs(lhs: str, op: str, fail: Any) -> tuple[str | None, str]:
    if not lhs:
        raise fail(f"missing the metric name before {op!r}")
    parts = [p.strip() for p in lhs.split(":")]
    if len(parts) >= 2 and parts[-2] == JUDGE_PREFIX:
        # `judge:CRITERION` is one metric name (the judge's score on a rubric criterion); the colon
        # is part of it, so `MODEL: judge:CRITERION` still qualifies it with a model.
        criterion = parts[-1]
        if not _CRITERION_RE.fullmatch(criterion):
            raise fail(f"judge criterion {criterion!r} is not valid; write 'judge:CRITERION' with a rubric "
                       "criterion id, e.g. 'judge:helpfulness'")
        if len(parts) > 3:
            raise fail(f"{lhs!r} has too many ':'; write MODEL: judge:CRITERION, e.g. 'tuned: judge:helpfulness'")
        rest = f"{parts[0]}:x" if len(parts) == 3 else "x"
        model, _ = _parse_lhs(rest, op, fail)
        return model, f"{JUDGE_PREFIX}:{criterion}"
    model: str | None = None
    if ":" in lhs:
        if lhs.count(":") > 1:
            raise fail(f"{lhs!r} has more than one ':'; write MODEL: METRIC, e.g. 'banking77: accuracy'")
        model_text, _, lhs = (part.strip() for part in lhs.partition(":"))
        if not model_text:
            raise fail("missing the model name before ':'")
        if not _MODEL_RE.fullmatch(model_text):
            raise fail(f"model name {model_text!r} is not valid; use letters, digits, '.', '_' or '-'")
        model = model_text
        if not lhs:
            raise fail(f"missing the metric name between ':' and {op!r}")
    if not _METRIC_RE.fullmatch(lhs):
        raise fail(f"metric name {lhs!r} is not valid; use letters, digits, '_', '.' or '-', "
                   "starting with a letter")
    return model, lhs


def _parse_rhs(rhs: str, op: str, fail: Any) -> tuple[bool, float, str, bool]:
    """(relative, threshold, normalised rhs, significantly) from the text after the operator."""
    significantly = False
    words = rhs.split()
    if sum(w.lower() == "significantly" for w in words) > 1:
        raise fail("'significantly' appears more than once; write it once, at the end")
    if words and words[-1].lower() == "significantly":
        significantly = True
        rhs = rhs[: rhs.lower().rfind("significantly")].strip()
    if not rhs:
        raise fail(f"missing the threshold after {op!r}; expected a number, a percentage or 'base'")

    base = _BASE_RE.fullmatch(rhs)
    if base is None:
        if re.fullmatch(r"[+-]?\d+,\d+\s*%?", rhs):
            raise fail(f"threshold {rhs!r} is not a number; use '.' as the decimal point")
        number = _SIGNED_NUMBER_PREFIX.match(rhs)
        if number is None:
            raise fail(f"threshold {rhs!r} is not a number, a percentage or 'base'; "
                       "expected e.g. '0.7', '70%' or 'base - 0.01'")
        _check_rest(rhs[number.end():], fail)
        value = _number_value(number.group(1), number.group(2), fail)
        return False, value, number.group(1).lstrip("+") + number.group(2), significantly

    rest = base.group(1).strip()
    if not rest:
        return True, 0.0, "base", significantly
    sign = rest[0]
    if sign not in "+-":
        raise fail(f"unexpected {rest!r} after 'base'; expected '+ NUMBER', '- NUMBER' or 'significantly'")
    number = _UNSIGNED_NUMBER_PREFIX.match(rest[1:].strip())
    if number is None:
        got = rest[1:].strip()
        raise fail(f"expected a number after 'base {sign}', got {got!r}" if got
                   else f"expected a number after 'base {sign}'")
    _check_rest(rest[1:].strip()[number.end():], fail)
    magnitude = _number_value(number.group(1), number.group(2), fail)
    margin = magnitude if sign == "+" else -magnitude
    return True, margin, f"base {sign} {number.group(1)}{number.group(2)}", significantly


def _check_rest(rest: str, fail: Any) -> None:
    rest = rest.strip()
    if not rest:
        return
    word = rest.split()[0]
    if word.lower().startswith("signif"):
        raise fail(f"unexpected {word!r} after the threshold; did you mean 'significantly'?")
    raise fail(f"unexpected {rest!r} after the threshold; only 'significantly' may follow it")


def _number_value(number: str, percent: str, fail: Any) -> float:
    value = float(number)
    if not math.isfinite(value):
        raise fail(f"threshold {number!r} is not a finite number")
    if percent:
        if abs(value) > 100.0:
            raise fail(f"'{number}%' is more than 100%; '%' means hundredths of a 0-1 metric")
        return value / 100.0
    return value


# --------------------------------------------------------------------------------------------
# Evaluation

SuiteValue = float | ScoreSummary | None
#: One model's score on one metric, in any of the plain shapes `evaluate_gate` accepts.
ScoreLike = ScoreSummary | tuple[Any, ...] | Mapping[str, Any]


def evaluate_gate(
    gate: Gate,
    model: str | None,
    scores: Mapping[str, Mapping[str, ScoreLike]],
    comparisons: Iterable[Comparison],
    suite_values: Mapping[str, SuiteValue | ScoreLike] | None = None,
    *,
    reference: str | None = None,
    n: int | None = None,
) -> GateResult:
    """Check `gate` for `model` (None for a gate on a suite-level value).

    `scores`: model -> metric -> score, where a score is a ScoreSummary, a (value, ci_low, ci_high,
    n) tuple or a results-file dict {"value", "ci_low", "ci_high"[, "n"]}; `n` fills in the number
    of examples where a score does not carry it. `comparisons`: the suite's comparison records; the
    one for (model, gate.metric) is used, against `reference` when given (so comparisons against
    several references cannot be mixed up). `suite_values`: suite-level values such as
    {"contamination": 0.005}.

    Plain gates check point estimates. With "significantly": a base-relative gate with no margin
    passes only when the comparison found a significant change in the operator's direction
    (McNemar's exact test for binary metrics, the bootstrap CI for continuous ones, at the
    comparison's alpha); with a margin, or on an absolute gate, the whole confidence interval must
    clear the threshold (ci_low for > and >=, ci_high for < and <=).
    """
    if gate.model is not None and model != gate.model:
        raise ConfigError(f"gate {gate.text!r} is for model {gate.model!r}, not {model!r}")
    suite_values = suite_values or {}
    if gate.metric in suite_values:
        return _absolute(gate, model, _as_summary(suite_values[gate.metric], None), suite_level=True)
    if model is None:
        return _fail(gate, None, f"{gate.metric} has no suite-level value; the gate cannot pass")
    if gate.relative:
        comp = next((c for c in comparisons if c.model == model and c.metric == gate.metric
                     and (reference is None or c.reference == reference)), None)
        if comp is None:
            against = reference or "the reference"
            return _fail(gate, model, f"no comparison of {model} with {against} on {gate.metric}; "
                                      "the gate cannot pass")
        return _relative(gate, model, comp)
    by_metric = scores.get(model) or {}
    if gate.metric not in by_metric:
        return _fail(gate, model, f"{model} has no {gate.metric} score; the gate cannot pass")
    return _absolute(gate, model, _as_summary(by_metric[gate.metric], n), suite_level=False)


def _as_summary(value: Any, n: int | None) -> ScoreSummary:
    if isinstance(value, ScoreSummary):
        summary = value
    elif isinstance(value, tuple):
        summary = ScoreSummary(*value)
    elif isinstance(value, Mapping):
        summary = ScoreSummary.from_dict(value)
    else:
        summary = ScoreSummary(None if value is None else float(value))
    if summary.n is None and n is not None:
        summary = ScoreSummary(summary.value, summary.ci_low, summary.ci_high, n)
    return summary


def _fail(gate: Gate, model: str | None, message: str) -> GateResult:
    return GateResult(gate, model, False, message)


def _holds(x: float, op: Op, t: float) -> bool:
    eps = _EPS * max(1.0, abs(t))
    if op == ">=":
        return x >= t - eps
    if op == ">":
        return x > t + eps
    if op == "<=":
        return x <= t + eps
    return x < t - eps


def _close(x: float, t: float) -> bool:
    return abs(x - t) <= _EPS * max(1.0, abs(t))


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def _absolute(gate: Gate, model: str | None, s: ScoreSummary, *, suite_level: bool) -> GateResult:
    name, t = gate.metric, gate.threshold
    if not _finite(s.value):
        owner = "this suite" if suite_level else model
        return _fail(gate, model, f"{name} is undefined for {owner} (no value); the gate cannot pass")
    value = float(s.value)  # type: ignore[arg-type]
    floor = gate.op in (">=", ">")
    bound = "floor" if floor else "ceiling"
    has_ci = _finite(s.ci_low) and _finite(s.ci_high)
    details = []
    if has_ci:
        details.append(f"95% CI {_num(s.ci_low)}..{_num(s.ci_high)}")  # type: ignore[arg-type]
    if s.n is not None:
        details.append(f"n={s.n}")
    paren = f" ({', '.join(details)})" if details else ""

    if gate.significantly:
        if not has_ci:
            return _fail(gate, model, f"{name} {_num(value)} has no confidence interval, so 'significantly' "
                                      "cannot be checked; the gate cannot pass")
        checked = float(s.ci_low if floor else s.ci_high)  # type: ignore[arg-type]
        passed = _holds(checked, gate.op, t)
        side = "above" if floor else "below"
        verb = "is significantly" if passed else "is not significantly"
        return GateResult(gate, model, passed, f"{name} {_num(value)} {verb} {side} the {bound} {_num(t)}{paren}",
                          checked, t)

    passed = _holds(value, gate.op, t)
    if _close(value, t):
        where = "at" if passed else ("not above" if floor else "not below")
    elif value > t:
        where = "above"
    else:
        where = "below"
    return GateResult(gate, model, passed, f"{name} {_num(value)} is {where} the {bound} {_num(t)}{paren}", value, t)


_VERDICT_WORDS = {"improved": "improved", "regressed": "regressed",
                  "no_significant_change": "did not change significantly"}


def _relative(gate: Gate, model: str, c: Comparison) -> GateResult:
    name = gate.metric
    if not (_finite(c.model_value) and _finite(c.reference_value) and _finite(c.delta)):
        return _fail(gate, model, f"{name} is undefined ({c.model} {_num(c.model_value)} vs {c.reference} "
                                  f"{_num(c.reference_value)}); the gate cannot pass")
    m = gate.threshold
    floor = gate.op in (">=", ">")
    ci = (f"{_level(c.alpha)} {_signed(c.ci_low)}..{_signed(c.ci_high)}"
          if _finite(c.ci_low) and _finite(c.ci_high) else f"{_level(c.alpha)} n/a")
    stats = f"{_signed(c.delta)}, {ci}, n={c.n}"
    margin = "0" if m == 0.0 else _signed(m)

    if not gate.significantly:
        observed = c.delta
        passed = _holds(observed, gate.op, m)
        if (gate.op == ">=" and m < 0.0) or (gate.op == "<=" and m > 0.0):
            requirement = f"allowed {_signed(m)}"
        else:
            requirement = f"required {gate.op} {margin}"
    elif m == 0.0:
        stats += f", {p_clause(c.p_value)}"
        if c.p_adjusted is not None:
            # The verdict (and so this gate) reads the p-value adjusted over the suite's comparisons.
            stats += f", {c.adjustment}-adjusted {p_clause(c.p_adjusted)} over {c.family_size} comparisons"
        want = 1 if floor else -1
        passed = c.significant_direction == want
        observed = c.delta
        requirement = f"required {gate.op} 0 with p < {c.alpha:g}"
    else:
        bound = c.ci_low if floor else c.ci_high
        if not _finite(bound):
            return _fail(gate, model, f"{name}: the comparison of {c.model} with {c.reference} has no confidence "
                                      "interval, so 'significantly' cannot be checked; the gate cannot pass")
        observed = bound
        passed = _holds(bound, gate.op, m)
        requirement = f"required the whole {_level(c.alpha)} {gate.op} {margin}"

    headline, tail = _VERDICT_WORDS[c.verdict], ""
    if not gate.significantly and c.verdict == "no_significant_change" and c.delta != 0:
        # A plain gate judges the point estimate: "did not change significantly" would read as
        # the reason for a failure; say which way it moved and keep significance as context.
        headline = "rose" if c.delta > 0 else "dropped"
        tail = "; not significant"
    message = (f"{name} {headline}: {c.model} {_num(c.model_value)} vs {c.reference} "
               f"{_num(c.reference_value)} ({stats}; {requirement}{tail})")
    return GateResult(gate, model, passed, message, observed, m)


__all__ = ["JUDGE_PREFIX", "OPERATORS", "Gate", "GateResult", "Op", "evaluate_gate", "parse_gate", "parse_gates"]
