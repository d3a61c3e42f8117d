"""ftevals: evaluation and regression testing for fine-tuned LLMs, as pytest suites.

The public API. Importing ftevals (or loading its pytest plugin) never imports torch or vLLM:
those load when a backend first needs them. Submodules load lazily on first attribute access.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> module that defines it; resolved on first access (PEP 562).
_EXPORTS = {
    "Suite": "ftevals.suite",
    "FewShot": "ftevals.suite",
    "Judge": "ftevals.suite",
    "TrainFile": "ftevals.suite",
    "write_calibration": "ftevals.judge",
    "load_calibration": "ftevals.judge",
    "ModelSpec": "ftevals.specs",
    "SamplingSpec": "ftevals.specs",
    "parse_model_spec": "ftevals.specs",
    "Example": "ftevals.data",
    "Message": "ftevals.data",
    "Dataset": "ftevals.data",
    "load_dataset": "ftevals.data",
    "check_contamination": "ftevals.contamination",
    "register_metric": "ftevals.metrics",
    "get_metric": "ftevals.metrics",
    "list_metrics": "ftevals.metrics",
    "Scored": "ftevals.metrics",
    "evaluate_metric": "ftevals.metrics.hf_evaluate",
    "parse_gate": "ftevals.gate",
    "RunConfig": "ftevals.pipeline",
    "prepare": "ftevals.pipeline",
    "execute": "ftevals.pipeline",
    "read_results": "ftevals.results",
    "write_results": "ftevals.results",
    "load_results": "ftevals.results",
    "save_results": "ftevals.results",
    "Results": "ftevals.results",
    "SuiteResult": "ftevals.results",
    "Comparison": "ftevals.results",
    "examples_frame": "ftevals.results.frames",
    "metrics_frame": "ftevals.results.frames",
    "merge_into_results": "ftevals.packets",
    "IntegrityError": "ftevals.errors",
    "render_html": "ftevals.report",
    "write_report": "ftevals.report",
    "build_packets": "ftevals.packets",
    "import_ratings": "ftevals.packets",
    "make_backend": "ftevals.backends",
    "pull_default_model": "ftevals.models",
    "FtevalsError": "ftevals.errors",
    "ConfigError": "ftevals.errors",
    "DatasetError": "ftevals.errors",
    "ModelSpecError": "ftevals.errors",
    "BackendError": "ftevals.errors",
    "ResultsError": "ftevals.errors",
    "RatingsError": "ftevals.errors",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ftevals' has no attribute {name!r}")
    # `load_results`/`save_results` are the results package's `load`/`save` under unambiguous names.
    value = getattr(import_module(module), {"load_results": "load", "save_results": "save"}.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .backends import make_backend
    from .contamination import check_contamination
    from .data import Dataset, Example, Message, load_dataset
    from .errors import (BackendError, ConfigError, DatasetError, FtevalsError, IntegrityError, ModelSpecError,
                         RatingsError, ResultsError)
    from .gate import parse_gate
    from .metrics import Scored, get_metric, list_metrics, register_metric
    from .metrics.hf_evaluate import evaluate_metric
    from .models import pull_default_model
    from .packets import build_packets, import_ratings
    from .pipeline import RunConfig, execute, prepare
    from .report import render_html, write_report
    from .packets import merge_into_results
    from .results import Comparison, Results, SuiteResult, read_results, write_results
    from .results import load as load_results
    from .results import save as save_results
    from .results.frames import examples_frame, metrics_frame
    from .specs import ModelSpec, SamplingSpec, parse_model_spec
    from .judge import load_calibration, write_calibration
    from .suite import FewShot, Judge, Suite, TrainFile
