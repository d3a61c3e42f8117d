"""The metric registry: one table, name -> `Metric`, that the CLI, the plugin and the pipeline read.

This module imports no metric. Implementations register themselves with `@register_metric` when
their module is imported; a package that wants its metrics loaded only when the table is first
read names the module with `register_lazily` (ftevals.metrics does so for its built-ins, which
keeps `import ftevals.metrics` cheap).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module

from ..errors import ConfigError
from .base import Metric, MetricFn, MetricKind

_REGISTRY: dict[str, Metric] = {}
#: Modules whose import registers metrics, imported on the first lookup and then dropped.
_PENDING: list[str] = []


def register_lazily(module: str) -> None:
    """Import `module` (whose `@register_metric` decorators fill the table) before the next lookup
    or registration."""
    if module not in _PENDING:
        _PENDING.append(module)


def _import_pending() -> None:
    while _PENDING:
        module = _PENDING.pop(0)
        try:
            import_module(module)
        except BaseException:
            _PENDING.insert(0, module)  # retried, and failing again, on the next lookup
            raise


def register_metric(
    name: str | None = None,
    *,
    higher_is_better: bool = True,
    kind: MetricKind = "continuous",
    value_range: tuple[float, float] = (0.0, 1.0),
    replace: bool = False,
) -> Callable[[MetricFn], MetricFn]:
    """Decorator that registers a metric function under `name` (default: the function's name).

    Usable in a suite file to add a custom metric::

        @ftevals.register_metric(kind="binary")
        def starts_with_label(predictions, examples):
            return Scored.mean_of([float(p.strip().startswith(e.label)) for p, e in zip(predictions, examples)])

    The function's signature is read once, here: it gets only the keyword parameters it declares
    (see `Metric`).
    """

    def decorate(fn: MetricFn) -> MetricFn:
        # Fill the table first, so that a clash with a lazily registered metric is caught here and
        # replace=True really replaces it (instead of the later import raising).
        _import_pending()
        metric_name = name or fn.__name__
        if metric_name in _REGISTRY and not replace and _REGISTRY[metric_name].fn is not fn:
            raise ConfigError(
                f"a metric named {metric_name!r} is already registered; pick another name or pass replace=True"
            )
        _REGISTRY[metric_name] = Metric(
            metric_name, fn, higher_is_better, kind, value_range, (fn.__doc__ or "").strip().split("\n")[0]
        )
        return fn

    return decorate


def get_metric(name: str) -> Metric:
    _import_pending()
    try:
        return _REGISTRY[name]
    except KeyError:
        import difflib  # only for this error message

        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"unknown metric {name!r}{hint} (known: {', '.join(sorted(_REGISTRY))}); "
            "register custom ones with @ftevals.register_metric"
        ) from None


def list_metrics() -> list[Metric]:
    _import_pending()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


__all__ = ["get_metric", "list_metrics", "register_lazily", "register_metric"]
