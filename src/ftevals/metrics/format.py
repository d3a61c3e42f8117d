"""Format adherence and structured extraction: JSON, schemas, keys, regexes, lengths, slot F1, GSM8K.

JSON parsing is strict by default: the prediction, apart from surrounding whitespace, must be one
JSON value (NaN and Infinity are refused, as the JSON standard does). `lenient=True` also accepts
the value wrapped in one Markdown code fence (```` ```json ... ``` ````), the usual chat-model habit;
prose around the JSON is never accepted. Every metric here except `field_f1` is binary (1 right,
0 wrong per example) with a mean in [0, 1].

Extraction values are compared after `normalize_value`: strip, lower-case, collapse whitespace;
null and empty values count as absent keys.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError
from ._common import as_text, check_aligned, ids_by_kind
from .base import Scored
from .registry import register_metric

if TYPE_CHECKING:
    from ..data import Example

# One Markdown code fence around the whole text; a language tag ("json") must end its line.
_FENCE = re.compile(r"\A\s*```(?:[A-Za-z][\w+-]*[ \t]*\r?\n|[ \t]*\r?\n?)(.*?)\r?\n?[ \t]*```\s*\Z", re.DOTALL)
#: Keys of predicted objects that no gold object has are pooled under this name in per-field details.
OTHER_FIELDS = "(other)"
#: With no `schema` parameter, schema_valid only asks for a JSON object (so the extraction task's
#: default metric list works without configuration).
DEFAULT_SCHEMA: Mapping[str, Any] = {"type": "object"}

#: The error kinds each metric counts in `details["error_kinds"]` (zeros included), by metric name.
#: The metrics below read their kinds from here; tests/metrics check that they emit no other.
ERROR_KINDS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "json_valid": ("not_json",),
    "schema_valid": ("not_json", "schema"),
    "required_keys": ("not_json", "not_object", "missing_keys"),
    "regex_match": ("no_match",),
    "length_ok": ("too_short", "too_long", "too_few_words", "too_many_words"),
    "field_f1": ("not_json", "not_object"),
    "field_exact": ("not_object", "mismatch"),
    "gsm8k_answer": ("no_number", "wrong"),
})
#: Kinds of a well-formed output whose value is wrong (a different object, a different number).
WRONG_VALUE_KINDS: frozenset[str] = frozenset({"mismatch", "wrong"})
#: Kinds that mean the output is invalid (malformed): every kind but the wrong-value ones.
INVALID_KINDS: frozenset[str] = frozenset().union(*ERROR_KINDS.values()) - WRONG_VALUE_KINDS
#: Kinds that mean the output is not the JSON asked for: those of the JSON metrics.
JSON_KINDS: frozenset[str] = frozenset().union(
    *(ERROR_KINDS[m] for m in ("json_valid", "schema_valid", "required_keys"))
)


class _NotJson(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not JSON")


def parse_json(text: str, lenient: bool = False) -> tuple[bool, Any]:
    """(True, value) when `text` is one JSON value (see the module docstring), else (False, None)."""
    if lenient:
        fenced = _FENCE.match(text)
        if fenced:
            text = fenced.group(1)
    try:
        return True, json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        return False, None


def _error_details(kinds: Sequence[str | None], examples: Sequence[Example], all_kinds: Sequence[str]) -> dict[str, Any]:
    counts = Counter(k for k in kinds if k is not None)
    return {"error_kinds": {k: counts.get(k, 0) for k in all_kinds}, "examples": ids_by_kind(kinds, examples)}


def _binary(kinds: Sequence[str | None], examples: Sequence[Example], all_kinds: Sequence[str], **extra: Any) -> Scored:
    per_example = [float(k is None) for k in kinds]
    return Scored.mean_of(per_example, {**_error_details(kinds, examples, all_kinds), **extra})


@register_metric("json_valid", higher_is_better=True, kind="binary", value_range=(0.0, 1.0))
def json_valid(predictions: Sequence[str], examples: Sequence[Example], *, lenient: bool = False, **_: Any) -> Scored:
    """1 when the prediction is one JSON value (strict; `lenient` allows a code fence), else 0; mean in [0, 1]."""
    check_aligned(predictions, examples, "json_valid")
    kinds = [None if parse_json(as_text(p), lenient)[0] else "not_json" for p in predictions]
    return _binary(kinds, examples, ERROR_KINDS["json_valid"])


def _schema_validator(schema: Any) -> Any:
    from jsonschema import exceptions, validators

    if not isinstance(schema, Mapping):
        raise ConfigError(f"metric 'schema_valid': schema must be a JSON Schema object (a dict), got {type(schema).__name__}")
    cls = validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except exceptions.SchemaError as exc:
        raise ConfigError(f"metric 'schema_valid': the schema is not a valid JSON Schema: {exc.message}") from None
    return cls(schema)


@register_metric("schema_valid", higher_is_better=True, kind="binary", value_range=(0.0, 1.0))
def schema_valid(
    predictions: Sequence[str],
    examples: Sequence[Example],
    *,
    schema: Mapping[str, Any] | None = None,
    lenient: bool = False,
    **_: Any,
) -> Scored:
    """1 when the prediction is JSON that validates against `schema` (default: any object), else 0; mean in [0, 1].

    Details count failures by kind ("not_json", "schema") and schema failures by the JSON Schema
    keyword that failed (e.g. "required", "type"), with example ids per kind.
    """
    from jsonschema.exceptions import best_match

    check_aligned(predictions, examples, "schema_valid")
    validator = _schema_validator(DEFAULT_SCHEMA if schema is None else schema)
    kinds: list[str | None] = []
    keywords: Counter[str] = Counter()
    for p in predictions:
        ok, value = parse_json(as_text(p), lenient)
        if not ok:
            kinds.append("not_json")
            continue
        error = best_match(validator.iter_errors(value))
        if error is not None:
            keywords[str(error.validator)] += 1
        kinds.append(None if error is None else "schema")
    return _binary(kinds, examples, ERROR_KINDS["schema_valid"], schema_errors=dict(sorted(keywords.items())))


def _string_list(value: Any, param: str, metric: str) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Sequence) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"metric {metric!r} needs {param!r}: a non-empty list of strings, got {value!r}")
    return list(value)


@register_metric("required_keys", higher_is_better=True, kind="binary", value_range=(0.0, 1.0))
def required_keys(
    predictions: Sequence[str],
    examples: Sequence[Example],
    *,
    keys: Sequence[str] | None = None,
    lenient: bool = False,
    **_: Any,
) -> Scored:
    """1 when the prediction is a JSON object that has every key in `keys`, else 0; mean in [0, 1]."""
    check_aligned(predictions, examples, "required_keys")
    wanted = _string_list(keys, "keys", "required_keys")
    kinds: list[str | None] = []
    missing: Counter[str] = Counter()
    for p in predictions:
        ok, value = parse_json(as_text(p), lenient)
        if not ok:
            kinds.append("not_json")
        elif not isinstance(value, dict):
            kinds.append("not_object")
        else:
            absent = [k for k in wanted if k not in value]
            missing.update(absent)
            kinds.append("missing_keys" if absent else None)
    return _binary(kinds, examples, ERROR_KINDS["required_keys"], missing={k: missing.get(k, 0) for k in wanted})


@register_metric("regex_match", higher_is_better=True, kind="binary", value_range=(0.0, 1.0))
def regex_match(
    predictions: Sequence[str],
    examples: Sequence[Example],
    *,
    pattern: str | None = None,
    strip: bool = True,
    ignore_case: bool = False,
    **_: Any,
) -> Scored:
    """1 when the whole prediction (surrounding whitespace stripped unless strip=False) matches `pattern`; mean in [0, 1]."""
    check_aligned(predictions, examples, "regex_match")
    if not isinstance(pattern, str):
        raise ConfigError(f"metric 'regex_match' needs 'pattern', a regular expression string, got {pattern!r}")
    try:
        regex = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    except re.error as exc:
        raise ConfigError(f"metric 'regex_match': bad pattern {pattern!r}: {exc}") from None
    kinds = []
    for p in predictions:
        text = as_text(p).strip() if strip else as_text(p)
        kinds.append(None if regex.fullmatch(text) else "no_match")
    return _binary(kinds, examples, ERROR_KINDS["regex_match"])


@register_metric("length_ok", higher_is_better=True, kind="binary", value_range=(0.0, 1.0))
def length_ok(
    predictions: Sequence[str],
    examples: Sequence[Example],
    *,
    min_chars: int | None = None,
    max_chars: int | None = None,
    min_words: int | None = None,
    max_words: int | None = None,
    **_: Any,
) -> Scored:
    """1 when the stripped prediction's length is within every given bound (characters, words), else 0; mean in [0, 1]."""
    check_aligned(predictions, examples, "length_ok")
    bounds = {"min_chars": min_chars, "max_chars": max_chars, "min_words": min_words, "max_words": max_words}
    if all(v is None for v in bounds.values()):
        raise ConfigError("metric 'length_ok' needs at least one of min_chars, max_chars, min_words, max_words")
    for name, v in bounds.items():
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            raise ConfigError(f"metric 'length_ok': {name} must be a non-negative integer, got {v!r}")
    kinds: list[str | None] = []
    for p in predictions:
        text = as_text(p).strip()
        chars, words = len(text), len(text.split())
        if min_chars is not None and chars < min_chars:
            kinds.append("too_short")
        elif max_chars is not None and chars > max_chars:
            kinds.append("too_long")
        elif min_words is not None and words < min_words:
            kinds.append("too_few_words")
        elif max_words is not None and words > max_words:
            kinds.append("too_many_words")
        else:
            kinds.append(None)
    return _binary(kinds, examples, ERROR_KINDS["length_ok"])


# ---------------------------------------------------------------------------------------------
# Extraction: (key, value) pairs against the gold object


def normalize_value(value: Any) -> str | None:
    """The comparable form of an extracted value: stripped, lower-cased, whitespace collapsed; None if empty."""
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)
    return " ".join(text.lower().split()) or None


def normalize_object(obj: Mapping[str, Any]) -> dict[str, str]:
    """Keys and values normalised alike; keys whose value is null or empty are dropped."""
    out: dict[str, str] = {}
    for key, value in obj.items():
        k, v = " ".join(str(key).lower().split()), normalize_value(value)
        if k and v is not None:
            out[k] = v
    return out


def _gold_object(ex: Example, metric: str) -> dict[str, str]:
    slots = ex.metadata.get("slots")
    if isinstance(slots, Mapping):
        return normalize_object(slots)
    ok, value = parse_json(ex.reference)
    if ok and isinstance(value, dict):
        return normalize_object(value)
    raise ConfigError(
        f"metric {metric!r}: example {ex.id!r} has no metadata 'slots' object and its reference is not a JSON object; "
        "extraction metrics need one of them as the gold answer"
    )


def _predicted_object(prediction: Any, lenient: bool) -> dict[str, str] | None:
    ok, value = parse_json(as_text(prediction), lenient)
    return normalize_object(value) if ok and isinstance(value, dict) else None


def _per_field(golds: Sequence[dict[str, str]], preds: Sequence[dict[str, str] | None]) -> dict[str, dict[str, float | int]]:
    gold_keys = sorted({k for g in golds for k in g})
    known = set(gold_keys)
    counts = {k: Counter() for k in [*gold_keys, OTHER_FIELDS]}
    for gold, pred in zip(golds, preds):
        pred = pred or {}
        for k in gold:
            counts[k]["tp" if pred.get(k) == gold[k] else "fn"] += 1
        for k, v in pred.items():
            if gold.get(k) != v:
                counts[k if k in known else OTHER_FIELDS]["fp"] += 1
    out: dict[str, dict[str, float | int]] = {}
    for k, c in counts.items():
        tp, fp, fn = c["tp"], c["fp"], c["fn"]
        if k == OTHER_FIELDS and not fp:
            continue
        out[k] = {
            "precision": tp / (tp + fp) if tp + fp else 0.0,
            "recall": tp / (tp + fn) if tp + fn else 0.0,
            "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0,
            "support": tp + fn,
        }
    return out


@register_metric("field_f1", higher_is_better=True, kind="continuous", value_range=(0.0, 1.0))
def field_f1(predictions: Sequence[str], examples: Sequence[Example], *, lenient: bool = False, **_: Any) -> Scored:
    """Micro-F1 over (key, normalised value) pairs of the predicted vs the gold JSON object, in [0, 1].

    Gold: metadata "slots", else the reference parsed as a JSON object. A wrong value for a gold key
    is both a false positive and a false negative. Per-example values are that example's F1; an
    example whose gold and predicted objects are both empty scores 1, and a prediction that is not
    a JSON object extracts nothing (so it scores 0 even where the gold object is empty). On a subset
    with no pairs at all the value is the mean of the per-example values.
    """
    check_aligned(predictions, examples, "field_f1")
    golds = [_gold_object(ex, "field_f1") for ex in examples]
    preds = [_predicted_object(p, lenient) for p in predictions]
    counts = np.zeros((len(golds), 3), dtype=np.int64)  # tp, fp, fn
    per_example = np.empty(len(golds))
    for i, (gold, pred) in enumerate(zip(golds, preds)):
        pairs_p = set((pred or {}).items())
        pairs_g = set(gold.items())
        tp = len(pairs_p & pairs_g)
        counts[i] = tp, len(pairs_p) - tp, len(pairs_g) - tp
        denom = 2 * tp + counts[i, 1] + counts[i, 2]
        per_example[i] = 2 * tp / denom if denom else float(pred is not None)

    def aggregate(idx: np.ndarray) -> float:
        idx = np.asarray(idx, dtype=np.intp)
        if idx.size == 0:
            return math.nan
        tp, fp, fn = counts[idx].sum(axis=0)
        denom = 2 * tp + fp + fn
        return float(2 * tp / denom) if denom else float(per_example[idx].mean())

    def aggregate_rows(idx: np.ndarray) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.intp)
        if idx.shape[1] == 0:
            return np.full(idx.shape[0], math.nan)
        tp, fp, fn = counts[idx].sum(axis=1).T
        denom = 2 * tp + fp + fn
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), per_example[idx].mean(axis=1))

    kinds = [None if pred is not None else ("not_json" if not parse_json(as_text(p), lenient)[0] else "not_object")
             for p, pred in zip(predictions, preds)]
    details = {
        **_error_details(kinds, examples, ERROR_KINDS["field_f1"]),
        "per_field": _per_field(golds, preds),
        "counts": dict(zip(("tp", "fp", "fn"), (int(x) for x in counts.sum(axis=0)))),
    }
    return Scored(aggregate(np.arange(len(golds))), per_example, aggregate, details, aggregate_rows=aggregate_rows)


@register_metric("field_exact", higher_is_better=True, kind="binary", value_range=(0.0, 1.0))
def field_exact(predictions: Sequence[str], examples: Sequence[Example], *, lenient: bool = False, **_: Any) -> Scored:
    """1 when the predicted JSON object equals the gold object after normalisation, else 0; mean in [0, 1]."""
    check_aligned(predictions, examples, "field_exact")
    kinds: list[str | None] = []
    for p, ex in zip(predictions, examples):
        gold, pred = _gold_object(ex, "field_exact"), _predicted_object(p, lenient)
        kinds.append("not_object" if pred is None else (None if pred == gold else "mismatch"))
    return _binary(kinds, examples, ERROR_KINDS["field_exact"])


# ---------------------------------------------------------------------------------------------
# GSM8K final answers

_NUMBER = re.compile(r"-?\$?\d(?:[\d,]*\d)?(?:\.\d+)?")


def extract_number(text: str) -> Decimal | None:
    """The final answer in `text`: the first number after the last '####', else the last number; None if none.

    Commas and dollar signs are dropped ("$1,250.50" -> 1250.50).
    """
    _, marker, tail = text.rpartition("####")
    found = _NUMBER.findall(tail) if marker else []
    candidate = found[0] if found else next(iter(reversed(_NUMBER.findall(text))), None)
    if candidate is None:
        return None
    try:
        return Decimal(candidate.replace("$", "").replace(",", ""))
    except InvalidOperation:
        return None


@register_metric("gsm8k_answer", higher_is_better=True, kind="binary", value_range=(0.0, 1.0))
def gsm8k_answer(predictions: Sequence[str], examples: Sequence[Example], **_: Any) -> Scored:
    """1 when the prediction's final number equals metadata "answer" numerically (5.00 == 5), else 0; mean in [0, 1]."""
    check_aligned(predictions, examples, "gsm8k_answer")
    kinds: list[str | None] = []
    for p, ex in zip(predictions, examples):
        gold = extract_number(str(ex.metadata.get("answer", "")))
        if gold is None:
            raise ConfigError(
                f"metric 'gsm8k_answer': example {ex.id!r} needs a numeric metadata 'answer', got {ex.metadata.get('answer')!r}"
            )
        got = extract_number(as_text(p))
        kinds.append("no_number" if got is None else (None if got == gold else "wrong"))
    return _binary(kinds, examples, ERROR_KINDS["gsm8k_answer"])


__all__ = [
    "DEFAULT_SCHEMA",
    "ERROR_KINDS",
    "INVALID_KINDS",
    "JSON_KINDS",
    "WRONG_VALUE_KINDS",
    "extract_number",
    "field_exact",
    "field_f1",
    "gsm8k_answer",
    "json_valid",
    "length_ok",
    "normalize_object",
    "normalize_value",
    "parse_json",
    "regex_match",
    "required_keys",
    "schema_valid",
]
