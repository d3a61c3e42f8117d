"""Replay backend: serve predictions saved in a file, with no model at all.

Its uses: re-scoring a saved run with new metrics or gates, and scoring systems ftevals cannot run
(an external API, another framework, a human baseline). The file is JSONL, one prediction a line:

    {"model": "banking77", "id": "banking77-test-00017", "text": "card_arrival"}

optionally with "tokens_in", "tokens_out", "finish_reason" and "latency_s". A prediction is found by
(ftevals model name, example id). `export_predictions` writes this format from a results file, so
`results.json` -> predictions.jsonl -> `--ftevals-backend replay` closes the loop.

The whole file is validated when the backend is built: every bad row is reported at once as
`file:line: ...`, and a run that lacks predictions fails before scoring, naming what is missing.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data import Message
from ..errors import BackendError, ConfigError, DatasetError, Problem, ResultsError
from ..fsutil import atomic_write_text
from ..results import Results, from_data, load
from ..specs import ModelSpec
from .base import BackendDefaults, Generation, GenerationRequest

#: How many missing (model, id) pairs an error names before it just counts.
_SHOW_MISSING = 10
_OPTIONAL_INTS = ("tokens_in", "tokens_out")


@dataclass(frozen=True)
class ReplaySettings:
    #: The predictions file (JSONL, see the module docstring).
    path: str
    #: Seconds to wait per request, to stand in for a slow model in fault tests (a run killed
    #: part-way, two runs sharing a cache). Not in `identity()`: it changes when an answer
    #: arrives, never what it is (`--ftevals-backend-option delay_s=0.01`).
    delay_s: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.delay_s, (int, float)) or isinstance(self.delay_s, bool) or self.delay_s < 0:
            raise ConfigError(f"replay backend: delay_s must be a number of seconds >= 0, got {self.delay_s!r}")


class ReplayBackend(BackendDefaults):
    """Answers each request with the saved prediction for its (model, example id)."""

    name = "replay"
    settings_type = ReplaySettings
    #: Predictions are looked up by (model name, example id), not computed from the prompt: the
    #: generation stage keys them per model and example (see generate.Plan.add).
    answers_by_example = True

    def __init__(self, models: Mapping[str, Any] | None = None, settings: ReplaySettings | None = None) -> None:
        if settings is None:
            raise BackendError("the replay backend needs a predictions file: ReplaySettings(path=...)")
        self.models = dict(models or {})
        self.settings = settings
        self.predictions, self.sha256 = load_predictions(settings.path)

    def identity(self) -> dict[str, Any]:
        # The file's content hash, not its path: edited predictions must not be served from a stale
        # cache entry, while the same file copied elsewhere still hits the cache.
        return {"backend": self.name, "predictions_sha256": self.sha256}

    def prompt_format(self, model: ModelSpec, requested: str) -> str:
        # The predictions were made elsewhere, in a format this file does not record: the suite's
        # explicit choice is taken at its word, and "auto" is the common case, chat.
        return "chat" if requested == "auto" else requested

    def render(self, model: ModelSpec, messages: Sequence[Message], prompt_format: str = "chat") -> str:
        # No template is applied (there is no model); the messages still go into the key so that a
        # changed prompt is not mistaken for the one the predictions answered.
        return json.dumps([m.to_dict() for m in messages], sort_keys=True, ensure_ascii=False, separators=(",", ":"))

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        missing = [(r.model.name, r.example_id) for r in requests if (r.model.name, r.example_id) not in self.predictions]
        if missing:
            raise BackendError(self._missing_message(missing, len(requests)))
        if self.settings.delay_s:
            time.sleep(self.settings.delay_s * len(requests))
        return [self.predictions[(r.model.name, r.example_id)] for r in requests]

    def _missing_message(self, missing: list[tuple[str, str]], total: int) -> str:
        shown = ", ".join(f"({m}, {i})" for m, i in missing[:_SHOW_MISSING])
        more = f" and {len(missing) - _SHOW_MISSING} more" if len(missing) > _SHOW_MISSING else ""
        models = sorted({m for m, _ in self.predictions})
        return (
            f"{self.settings.path} has no prediction for {len(missing)} of {total} requests: {shown}{more}. "
            f"The file has predictions for the models {', '.join(models) or '(none)'}; add rows "
            '{"model": NAME, "id": EXAMPLE_ID, "text": ...} for the missing ones, or evaluate fewer models/examples'
        )


def load_predictions(path: str | Path) -> tuple[dict[tuple[str, str], Generation], str]:
    """Parse and validate a predictions file; return {(model, id): Generation} and its sha256."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise DatasetError(Problem(str(p), None, f"cannot read the predictions file ({exc.strerror or exc})")) from None
    sha = "sha256:" + hashlib.sha256(raw).hexdigest()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DatasetError(Problem(str(p), line, "not valid UTF-8; re-save the file as UTF-8")) from None
    found: dict[tuple[str, str], Generation] = {}
    first_line: dict[tuple[str, str], int] = {}
    problems: list[Problem] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        row, problem = _parse_row(line)
        if problem:
            problems.append(Problem(str(p), n, problem))
            continue
        assert row is not None
        key, gen = row
        if key in first_line:
            problems.append(Problem(str(p), n, f"duplicate prediction for model {key[0]!r}, id {key[1]!r} (first at line {first_line[key]})"))
            continue
        first_line[key] = n
        found[key] = gen
    if problems:
        raise DatasetError(problems, path=p)
    if not found:
        raise DatasetError(Problem(str(p), None, 'no predictions; expected JSONL rows {"model": ..., "id": ..., "text": ...}'))
    return found, sha


def _parse_row(line: str) -> tuple[tuple[tuple[str, str], Generation] | None, str | None]:
    try:
        row = json.loads(line)
    except ValueError as exc:
        return None, f"not valid JSON ({exc.msg})"
    if not isinstance(row, dict):
        return None, f'expected a JSON object {{"model", "id", "text"}}, got {type(row).__name__}'
    model, ex_id, text = row.get("model"), row.get("id"), row.get("text")
    if not isinstance(model, str) or not model:
        return None, f'"model" must be a non-empty string (the ftevals model name), got {model!r}'
    if isinstance(ex_id, int) and not isinstance(ex_id, bool):
        ex_id = str(ex_id)
    if not isinstance(ex_id, str) or not ex_id:
        return None, f'"id" must be a non-empty string (the example id), got {ex_id!r}'
    if not isinstance(text, str):
        return None, f'"text" must be a string (the model\'s output), got {"missing" if text is None else type(text).__name__}'
    for name in _OPTIONAL_INTS:
        value = row.get(name, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return None, f'"{name}" must be a whole number >= 0 when given, got {value!r}'
    latency = row.get("latency_s")
    if latency is not None and (not isinstance(latency, (int, float)) or isinstance(latency, bool) or latency < 0):
        return None, f'"latency_s" must be a number >= 0 when given, got {latency!r}'
    gen = Generation(
        text=text,
        tokens_in=row.get("tokens_in", 0),
        tokens_out=row.get("tokens_out", 0),
        finish_reason=str(row.get("finish_reason") or "stop"),
        latency_s=float(latency) if latency is not None else None,
    )
    return ((model, ex_id), gen), None


# ---------------------------------------------------------------------------------------------
# Results file -> predictions file


def predictions_from_results(results: Results | Mapping[str, Any], models: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Rows for a predictions file from a results record (`suites[].examples[].outputs[model]`).

    An example evaluated by several suites appears once. If two suites hold different outputs for
    the same (model, id) (same data, different sampling), a replay could not tell them apart, so
    that is refused rather than one of them silently picked.
    """
    record = from_data(results)
    wanted = set(models) if models is not None else None
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    where: dict[tuple[str, str], str] = {}
    for suite in record.suites:
        for ex in suite.examples:
            for model, out in ex.outputs.items():
                if wanted is not None and model not in wanted:
                    continue
                key = (model, ex.id)
                row: dict[str, Any] = {"model": model, "id": ex.id, "text": out.text,
                                       "tokens_in": out.tokens_in, "tokens_out": out.tokens_out}
                if out.finish_reason is not None:
                    row["finish_reason"] = out.finish_reason
                if key in rows and rows[key]["text"] != row["text"]:
                    raise ResultsError(
                        f"suites {where[key]!r} and {suite.name!r} hold different outputs of model {model!r} for "
                        f"example {ex.id!r}; export them separately with models=... or from separate runs"
                    )
                rows.setdefault(key, row)
                where.setdefault(key, suite.name)
    return [rows[k] for k in sorted(rows)]


def export_predictions(results: str | Path | Results | Mapping[str, Any], out: str | Path,
                       models: Sequence[str] | None = None) -> int:
    """Write the predictions in a results file (or record) as replay JSONL; return the row count."""
    record = results if isinstance(results, (Results, Mapping)) else load(results)
    rows = predictions_from_results(record, models)
    atomic_write_text(Path(out), "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows))
    return len(rows)


__all__ = ["ReplayBackend", "ReplaySettings", "export_predictions", "load_predictions", "predictions_from_results"]
