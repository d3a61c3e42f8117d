"""MLflow tracking: one MLflow run per ftevals run, logged after the results file is written.

`pytest suites/ --ftevals-mlflow` (or `--ftevals-mlflow=URI`, ini `ftevals_mlflow`) logs:
- parameters: each model's spec, fingerprints and LoRA rank, the backend and its settings, seed,
  resamples, alpha, the ftevals version;
- metrics, per suite, model and metric: `SUITE/MODEL/METRIC` (value), `SUITE/MODEL/METRIC.ci_low`,
  `.ci_high`, and against the reference `.delta`, `.delta_ci_low`, `.delta_ci_high`, `.p_value`; per
  suite `SUITE/gates_passed` and `SUITE/gates_failed` (MLflow's UI groups names by `/`);
- tags: the overall outcome, each suite's gate outcomes (`gates.SUITE` = "3/3 passed");
- artifacts: the results file, the HTML report, the markdown summary, and `gates.json` (every
  gate's expression, model, outcome and message).

The default tracking URI is a `mlruns/` folder beside the ini file. MLflow 3 keeps that file store
in maintenance mode and refuses it unless `MLFLOW_ALLOW_FILE_STORE` is set, which ftevals sets for
file URIs it is given (a user's own value wins). Any other URI (`http://...`, `sqlite:///...` with
the full `mlflow` package) is passed through. The `mlflow` package is an extra:
`pip install 'ftevals[mlflow]'`; its absence is reported before anything is generated.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import MissingDependencyError
from .results import Results
from .summary import gate_counts

_NAME_OK = re.compile(r"[^A-Za-z0-9_\-. /]")


def require_mlflow() -> None:
    """Fail before the run when tracking was asked for and mlflow is missing."""
    if importlib.util.find_spec("mlflow") is None:
        raise MissingDependencyError("mlflow", "pip install 'ftevals[mlflow]'", "needed by --ftevals-mlflow")


def tracking_uri(value: str, base: Path) -> str:
    """A URI as given (`scheme://...`, `file:...`), else a folder relative to `base` as a file URI."""
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", value) and not re.match(r"^[A-Za-z]:[\\/]", value):
        return value
    folder = Path(value).expanduser()
    return (folder if folder.is_absolute() else base / folder).resolve().as_uri()


def _key(*parts: str, field: str = "", sep: str = "/") -> str:
    """An MLflow metric/param name: letters, digits and `_-. /` only (others become `_`).

    A field goes after a dot, never a slash: MLflow's file store keeps `a/b` as a file, so `a/b/c`
    beside it could not be written."""
    name = sep.join(_NAME_OK.sub("_", p) for p in parts)
    return f"{name}.{field}" if field else name


def _number(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and x == x else None


def log_run(results: Results, uri: str, artifacts: Sequence[Path], *, experiment: str = "ftevals") -> str:
    """Log `results` as one MLflow run; returns the run id. Raises what MLflow raises."""
    if uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    import mlflow

    # MLflow logs INFO lines ("Creating a new experiment") to stderr; the terminal is ftevals'.
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        return _log(mlflow, results, uri, artifacts, experiment)
    finally:
        logger.setLevel(level)


def _log(mlflow: Any, results: Results, uri: str, artifacts: Sequence[Path], experiment: str) -> str:
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=results.run.id) as active:
        mlflow.log_params(_params(results))
        mlflow.log_metrics(_metrics(results))
        mlflow.set_tags(_tags(results))
        for path in artifacts:
            if path.is_file():
                mlflow.log_artifact(str(path))
        with tempfile.TemporaryDirectory() as tmp:
            gates = Path(tmp) / "gates.json"
            gates.write_text(json.dumps(_gates(results), indent=1, sort_keys=True) + "\n", encoding="utf-8")
            mlflow.log_artifact(str(gates))
        return str(active.info.run_id)


def _params(results: Results) -> dict[str, str]:
    out: dict[str, str] = {
        "ftevals_version": results.run.ftevals_version,
        "seed": str(results.run.seed),
        "backend": results.run.backend.name if results.run.backend else "",
    }
    if results.run.backend is not None:
        out["backend_settings"] = json.dumps(dict(results.run.backend.settings), sort_keys=True, default=str)[:6000]
    for name, m in sorted(results.models.items()):
        spec = m.base + (f"+{m.adapter}" if m.adapter else "") + (f"@fewshot={m.fewshot}" if m.fewshot else "")
        out[_key("model", name, sep=".")] = (f"{m.backend}:" if m.backend else "") + spec
        out[_key("model", name, field="base_fingerprint", sep=".")] = str(m.base_fingerprint)
        if m.adapter_fingerprint:
            out[_key("model", name, field="adapter_fingerprint", sep=".")] = m.adapter_fingerprint
            out[_key("model", name, field="adapter_rank", sep=".")] = str(m.adapter_rank)
    for suite in results.suites:
        first = next(iter(suite.comparisons), None)
        if first is not None:
            out[_key(suite.name, field="resamples", sep=".")] = str(first.resamples)
            out[_key(suite.name, field="alpha", sep=".")] = str(first.alpha)
    return out


def _metrics(results: Results) -> dict[str, float]:
    out: dict[str, float] = {}
    for suite in results.suites:
        for model, by_metric in suite.scores.items():
            for metric, s in by_metric.items():
                for field, value in (("", s.value), ("ci_low", s.ci_low), ("ci_high", s.ci_high)):
                    if (v := _number(value)) is not None:
                        out[_key(suite.name, model, metric, field=field)] = v
        for c in suite.comparisons:
            for field, value in (("delta", c.delta), ("delta_ci_low", c.ci_low), ("delta_ci_high", c.ci_high),
                                 ("p_value", c.p_value)):
                if (v := _number(value)) is not None:
                    out[_key(suite.name, c.model, c.metric, field=field)] = v
        passed, failed, _known = gate_counts(suite)
        out[_key(suite.name, "gates_failed")] = float(failed)
        out[_key(suite.name, "gates_passed")] = float(passed)
    return out


def _tags(results: Results) -> dict[str, str]:
    tags = {"ftevals.run_id": results.run.id}
    failing = 0
    for suite in results.suites:
        passed, bad, _known = gate_counts(suite)
        failing += bad
        tags[_key("gates", suite.name, sep=".")] = f"{passed}/{len(suite.gates)} passed" + (f", {bad} FAILED" if bad else "")
    tags["ftevals.outcome"] = "gates failed" if failing else "gates passed"
    return tags


def _gates(results: Results) -> list[dict[str, Any]]:
    return [{"suite": s.name, "id": g.id, "expression": g.expression, "model": g.model, "passed": g.passed,
             "known_failure": g.known_failure, "message": g.message} for s in results.suites for g in s.gates]


__all__ = ["log_run", "require_mlflow", "tracking_uri"]
