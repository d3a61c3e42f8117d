"""Rubrics: what raters are asked about one suite, and the packaged defaults per task.

A rubric is data (JSON in ftevals/rubrics/, or a suite's own dict laid over one of those);
`load_rubric` resolves and validates it into a frozen `Rubric` before anything is built, and the
answer key stores its JSON form so that importing sheets never depends on the packaged files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from ..errors import ConfigError

_CRITERION_ID = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


@dataclass(frozen=True)
class Criterion:
    """One rubric criterion: `anchors[i]` describes scale level `scale_min + i`."""

    id: str
    label: str
    question: str
    anchors: tuple[str, ...]


@dataclass(frozen=True)
class Rubric:
    """What raters are asked, for one suite: criteria on an integer scale, a ranking and a comment."""

    name: str
    title: str
    instructions: str
    criteria: tuple[Criterion, ...]
    scale_min: int = 1
    scale_max: int = 5
    show_reference: bool = True
    preference_question: str = "Overall, which response is better?"
    allow_tie: bool = True
    comment_prompt: str = "Optional comment."

    @property
    def levels(self) -> tuple[int, ...]:
        return tuple(range(self.scale_min, self.scale_max + 1))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, the same shape `load_rubric` accepts."""
        return {
            "name": self.name,
            "title": self.title,
            "instructions": self.instructions,
            "show_reference": self.show_reference,
            "scale": {"min": self.scale_min, "max": self.scale_max},
            "criteria": [
                {
                    "id": c.id,
                    "label": c.label,
                    "question": c.question,
                    "anchors": {str(level): text for level, text in zip(self.levels, c.anchors)},
                }
                for c in self.criteria
            ],
            "preference": {"question": self.preference_question, "allow_tie": self.allow_tie},
            "comment": {"prompt": self.comment_prompt},
        }


#: Which packaged rubric a suite's task gets by default.
TASK_RUBRICS = {"classification": "classification", "generation": "generation", "extraction": "extraction"}


def packaged_rubrics() -> tuple[str, ...]:
    """Names of the rubrics shipped in ftevals/rubrics/."""
    folder = resources.files("ftevals.rubrics")
    return tuple(sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json")))


def _packaged_rubric_dict(name: str) -> dict[str, Any]:
    if name not in packaged_rubrics():
        raise ConfigError(f"unknown rubric {name!r}; the packaged rubrics are {', '.join(packaged_rubrics())}")
    text = resources.files("ftevals.rubrics").joinpath(f"{name}.json").read_text(encoding="utf-8")
    return json.loads(text)


def default_rubric(task: str) -> Rubric:
    """The rubric a suite of this task gets when it defines none (`default` for unknown tasks)."""
    return load_rubric(None, task=task)


def load_rubric(spec: Mapping[str, Any] | str | None, *, task: str = "custom", where: str = "rubric") -> Rubric:
    """Resolve a suite's rubric: None (task default), a packaged name, or a dict.

    A dict is laid over a packaged rubric key by key (its `"extends"` names which one; by default the
    task's), so a suite can replace only `criteria` or only `instructions`.
    """
    base_name = TASK_RUBRICS.get(task, "default")
    if spec is None:
        raw = _packaged_rubric_dict(base_name)
    elif isinstance(spec, str):
        raw = _packaged_rubric_dict(spec)
    elif isinstance(spec, Mapping):
        extends = spec.get("extends", base_name)
        if not isinstance(extends, str):
            raise ConfigError(f"{where}: 'extends' must name a packaged rubric, got {extends!r}")
        raw = {**_packaged_rubric_dict(extends), **{k: v for k, v in spec.items() if k != "extends"}}
        if "name" not in spec:
            raw["name"] = f"{extends}+custom"
    else:
        raise ConfigError(f"{where} must be a dict, a packaged rubric name or None, got {type(spec).__name__}")
    return _parse_rubric(raw, where)


def _parse_rubric(raw: Mapping[str, Any], where: str) -> Rubric:
    problems: list[str] = []

    def text(value: Any, what: str) -> str:
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{what} must be a non-empty string, got {value!r}")
            return ""
        return value.strip()

    scale = raw.get("scale", {"min": 1, "max": 5})
    lo, hi = (scale.get("min"), scale.get("max")) if isinstance(scale, Mapping) else (None, None)
    if not (isinstance(lo, int) and isinstance(hi, int) and not isinstance(lo, bool) and not isinstance(hi, bool)
            and lo < hi and hi - lo <= 10):
        problems.append(f"scale must be {{'min': int, 'max': int}} with min < max and at most 11 levels, got {scale!r}")
        lo, hi = 1, 5
    levels = [str(v) for v in range(lo, hi + 1)]

    criteria: list[Criterion] = []
    raw_criteria = raw.get("criteria")
    if not isinstance(raw_criteria, list) or not raw_criteria:
        problems.append("criteria must be a non-empty list")
        raw_criteria = []
    seen: set[str] = set()
    for i, c in enumerate(raw_criteria):
        if not isinstance(c, Mapping):
            problems.append(f"criteria[{i}] must be an object")
            continue
        cid = c.get("id")
        if not isinstance(cid, str) or not _CRITERION_ID.match(cid):
            problems.append(f"criteria[{i}].id must be 1-32 lower-case letters, digits or '_', got {cid!r}")
            cid = f"criterion{i}"
        elif cid in seen:
            problems.append(f"criteria[{i}].id {cid!r} is used twice")
        seen.add(cid)
        anchors = c.get("anchors")
        if not isinstance(anchors, Mapping) or sorted(map(str, anchors)) != sorted(levels):
            problems.append(f"criterion {cid!r}: anchors must describe every level {', '.join(levels)} exactly once")
            anchor_texts: tuple[str, ...] = tuple("" for _ in levels)
        else:
            anchor_texts = tuple(text(anchors[k] if k in anchors else anchors[int(k)], f"criterion {cid!r} anchor {k}")
                                 for k in levels)
        criteria.append(Criterion(cid, text(c.get("label", cid), f"criterion {cid!r} label"),
                                  text(c.get("question"), f"criterion {cid!r} question"), anchor_texts))

    preference = raw.get("preference", {})
    comment = raw.get("comment", {})
    if not isinstance(preference, Mapping):
        problems.append("preference must be an object with 'question' and 'allow_tie'")
        preference = {}
    if not isinstance(comment, Mapping):
        problems.append("comment must be an object with 'prompt'")
        comment = {}
    allow_tie = preference.get("allow_tie", True)
    show_reference = raw.get("show_reference", True)
    for name, flag in (("preference.allow_tie", allow_tie), ("show_reference", show_reference)):
        if not isinstance(flag, bool):
            problems.append(f"{name} must be true or false, got {flag!r}")
    rubric = Rubric(
        name=text(raw.get("name"), "name"),
        title=text(raw.get("title"), "title"),
        instructions=text(raw.get("instructions"), "instructions"),
        criteria=tuple(criteria),
        scale_min=lo,
        scale_max=hi,
        show_reference=bool(show_reference),
        preference_question=text(preference.get("question"), "preference.question"),
        allow_tie=bool(allow_tie),
        comment_prompt=text(comment.get("prompt"), "comment.prompt"),
    )
    if problems:
        raise ConfigError(f"{where} is invalid: " + "; ".join(problems))
    return rubric
