"""Cost and speed: tokens, throughput and latency per model, and cost from the prices given at render
time (never stored in the results file: prices change, the run does not).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...errors import ConfigError
from ...results import Usage as UsageRecord
from ..fmt import is_number
from .base import SuiteData

_PRICE_KEYS = {"per_token": 1.0, "per_1k_tokens": 1e-3, "per_1m_tokens": 1e-6}


@dataclass(frozen=True)
class UsageRow:
    model: str
    u: UsageRecord  # the suite's record for the model; the template reads its fields by name
    in_per_request: float | None
    out_per_request: float | None
    cost_per_1k: float | None
    cost_total: float | None


@dataclass(frozen=True)
class Usage:
    rows: list[UsageRow]
    has_cost: bool  # some model has a price: the cost columns are shown


def normalize_prices(prices: Mapping[str, Any] | None) -> dict[str, tuple[float, float]]:
    """Prices per model as (input, output) cost per token.

    Each model accepts `input_per_1k_tokens`/`output_per_1k_tokens`, `..._per_token` or
    `..._per_1m_tokens`; the currency is whatever the caller used.
    """
    if prices is None:
        return {}
    if not isinstance(prices, Mapping):
        raise ConfigError(f"prices must map model names to price dicts, got {type(prices).__name__}")
    out: dict[str, tuple[float, float]] = {}
    for model, entry in prices.items():
        if not isinstance(entry, Mapping):
            raise ConfigError(
                f"price for model {model!r} must be a dict like "
                f'{{"input_per_1k_tokens": 0.5, "output_per_1k_tokens": 1.5}}, got {entry!r}'
            )
        out[str(model)] = (_unit_price(model, entry, "input"), _unit_price(model, entry, "output"))
    return out


def _unit_price(model: Any, entry: Mapping[str, Any], side: str) -> float:
    found = [(key, entry[f"{side}_{key}"]) for key in _PRICE_KEYS if f"{side}_{key}" in entry]
    if len(found) != 1:
        keys = ", ".join(f"{side}_{k}" for k in _PRICE_KEYS)
        what = "none" if not found else "several"
        raise ConfigError(f"price for model {model!r} gives {what} of {keys}; give exactly one")
    key, value = found[0]
    if not is_number(value) or value < 0:
        raise ConfigError(f"price {side}_{key} for model {model!r} must be a non-negative number, got {value!r}")
    return float(value) * _PRICE_KEYS[key]


def usage(data: SuiteData) -> Usage | None:
    """None when the suite recorded no usage for any of its models."""
    suite = data.suite
    rows = []
    for m in data.models:
        u = suite.usage.get(m)
        if u is None:
            continue
        requests = u.requests
        if requests <= 0:  # no request counted (an older writer): per example of the sample instead
            requests = suite.dataset.n_examples if suite.dataset is not None else 0
        in_per = u.tokens_in / requests if requests > 0 else None
        out_per = u.tokens_out / requests if requests > 0 else None
        cost_1k = cost_total = None
        if m in data.prices and in_per is not None and out_per is not None:
            p_in, p_out = data.prices[m]
            cost_1k = 1000 * (in_per * p_in + out_per * p_out)
            cost_total = u.tokens_in * p_in + u.tokens_out * p_out
        rows.append(UsageRow(m, u, in_per, out_per, cost_1k, cost_total))
    return Usage(rows, any(r.cost_per_1k is not None for r in rows)) if rows else None


__all__ = ["Usage", "UsageRow", "normalize_prices", "usage"]
