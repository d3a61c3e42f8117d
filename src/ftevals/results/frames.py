"""The results file as pandas DataFrames, and `ftevals export` to CSV, JSONL or Parquet.

Two tables, both long (tidy) so that `groupby`, `pivot` and plotting work without reshaping:

- `examples_frame`: one row per (suite, example, model): the prompt, the reference, the output,
  per-example scores (`score.<metric>`) and, for right/wrong metrics, the example's flip against
  the reference (`flip.<metric>`: "fixed", "broken" or "same"; empty for the reference itself);
- `metrics_frame`: one row per (suite, model, metric): the value and its CI, and for every
  non-reference model the delta against the reference, its CI, raw and adjusted p, test and verdict.

pandas is imported when a frame is asked for, not when ftevals is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import ConfigError, MissingDependencyError
from ..fsutil import atomic_write_bytes, atomic_write_text
from .io import from_data
from .records import Results, SuiteResult

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

Table = Literal["examples", "metrics"]
Format = Literal["csv", "jsonl", "parquet"]



def _text(x: Any) -> str:
    return x if isinstance(x, str) else json.dumps(x, ensure_ascii=False, sort_keys=True)


def _flips(suite: SuiteResult) -> dict[tuple[str, str, str], str]:
    """(model, metric, example id) -> "fixed" | "broken" for binary comparisons; other ids are "same"."""
    out: dict[tuple[str, str, str], str] = {}
    for c in suite.comparisons:
        out.update({(c.model, c.metric, i): "fixed" for i in c.fixes})
        out.update({(c.model, c.metric, i): "broken" for i in c.regressions})
    return out


def examples_frame(results: Results | Mapping[str, Any]) -> pd.DataFrame:
    import pandas as pd

    rows = []
    for suite in from_data(results).suites:
        flips = _flips(suite)
        binary = [m.name for m in suite.metrics if m.kind == "binary"]
        for ex in suite.examples:
            for model in suite.models:
                out = ex.outputs.get(model)
                if out is None:
                    continue
                row: dict[str, Any] = {
                    "suite": suite.name, "example_id": ex.id, "model": model,
                    "is_reference": model == suite.reference, "input": ex.input, "reference": _text(ex.reference),
                    "output": out.text, "tokens_in": out.tokens_in, "tokens_out": out.tokens_out,
                    "finish_reason": out.finish_reason,
                }
                row.update({f"score.{m.name}": out.scores.get(m.name) for m in suite.metrics})
                row.update({f"flip.{m}": None if model == suite.reference else flips.get((model, m, ex.id), "same")
                            for m in binary})
                rows.append(row)
    return pd.DataFrame(rows)


def metrics_frame(results: Results | Mapping[str, Any]) -> pd.DataFrame:
    import pandas as pd

    rows = []
    for suite in from_data(results).suites:
        for model in suite.models:
            for m in suite.metrics:
                s = suite.score(model, m.name)
                c = suite.comparison(model, m.name)
                rows.append({
                    "suite": suite.name, "model": model, "metric": m.name, "is_reference": model == suite.reference,
                    "primary": m.primary, "higher_is_better": m.higher_is_better,
                    "value": s.value if s else None, "ci_low": s.ci_low if s else None, "ci_high": s.ci_high if s else None,
                    "reference": suite.reference, "delta": c.delta if c else None,
                    "delta_ci_low": c.ci_low if c else None, "delta_ci_high": c.ci_high if c else None,
                    "p_value": c.p_value if c else None, "p_adjusted": c.p_adjusted if c else None,
                    "test": c.test if c else None, "n": c.n if c else None, "verdict": c.verdict if c else None,
                })
    return pd.DataFrame(rows)


def export(results: Results | Mapping[str, Any], out: str | Path, *, table: Table = "examples",
           fmt: Format | None = None) -> Path:
    """Write one table to `out` (format from `fmt`, else from the file suffix), atomically."""
    target = Path(out)
    fmt = fmt or target.suffix.lstrip(".").lower()  # type: ignore[assignment]
    if fmt not in ("csv", "jsonl", "parquet"):
        raise ConfigError(f"export format {fmt!r} is unknown; use --format csv, jsonl or parquet (or that suffix)")
    if table not in ("examples", "metrics"):
        raise ConfigError(f"export table {table!r} is unknown; use examples or metrics")
    frame = examples_frame(results) if table == "examples" else metrics_frame(results)
    if fmt == "csv":
        atomic_write_text(target, frame.to_csv(index=False))
    elif fmt == "jsonl":
        atomic_write_text(target, frame.to_json(orient="records", lines=True, force_ascii=False))
    else:
        try:
            import pyarrow  # noqa: F401
        except ImportError as exc:
            raise MissingDependencyError("pyarrow", "pip install pyarrow", "Parquet export needs it") from exc
        import io

        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        atomic_write_bytes(target, buffer.getvalue())
    return target


__all__ = ["examples_frame", "export", "metrics_frame"]
