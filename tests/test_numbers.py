"""The one number formatter: gate messages, terminal summary, CLI and report print numbers alike."""

from __future__ import annotations

import math

import pytest

from ftevals.numbers import ci, level, num, p_clause, pval, signed


@pytest.mark.parametrize("x, text", [
    (0.41, "0.410"), (0.0, "0.000"), (-0.025, "-0.025"), (0.000719, "0.000719"), (-1.39e-17, "0.000"),
    (1234.5, "1,234.500"), (2_000_000.0, "2e+06"), (1200, "1,200"), (None, "n/a"), (math.nan, "n/a"),
    (math.inf, "n/a"), ("text", "text"),
])
def test_values(x: object, text: str) -> None:
    assert num(x) == text


def test_deltas_cis_and_levels() -> None:
    assert [signed(0.39), signed(-0.025), signed(1e-18), signed(None, missing="-")] == ["+0.390", "-0.025", "+0.000", "-"]
    assert ci(0.32, 0.46, sign=True) == "+0.320..+0.460" and ci(0.1, None) == ""
    assert level(0.05) == "95% CI" and level(0.1) == "90% CI" and level(0.001) == "99.9% CI"


def test_p_values_print_one_way() -> None:
    # The three places that used to print p < 0.001 as 1.2e-20, p=1.2e-20 and <0.001 now agree.
    assert [pval(1.2e-20), pval(0.0123), pval(None, missing="—")] == ["<0.001", "0.012", "—"]
    assert [p_clause(1.2e-20), p_clause(0.21), p_clause(math.nan)] == ["p<0.001", "p=0.210", "p=n/a"]


def test_gate_summary_and_report_use_it() -> None:
    # Not a re-implementation each: the modules that print numbers import this one.
    import ftevals.cli
    import ftevals.gate
    import ftevals.report.fmt
    import ftevals.summary

    for module in (ftevals.gate, ftevals.summary, ftevals.report.fmt):
        source = open(module.__file__, encoding="utf-8").read()
        assert "from .numbers import" in source or "from ..numbers import" in source, module.__name__
    assert "from .numbers import" in open(ftevals.cli.__file__, encoding="utf-8").read()
