"""The judge stage: scored suites in, suites with a `judge` block (and their judge gates) out.

Runs after every suite is scored, through the run's own backend and generation cache: each judge
question is an ordinary generation request for the judge model, so its cache key holds the judge's
fingerprints and the full prompt (rubric and prompt version included), and an interrupted run
resumes its judge calls like any other. All suites' questions go out together; the unreadable
ones are asked once more, together, with a stricter reminder (when the suite's judge retries).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..backends.base import Backend
from ..cache import GenerationCache
from ..data import Example, Message
from ..errors import BackendError
from ..generate import Plan, run_generation
from ..models import ResolvedModel
from ..packets.rubrics import Rubric, load_rubric
from ..progress import GenerationProgress
from ..results.judge_records import JudgeIdentity, JudgeItem, JudgeParsing, JudgeResult
from ..results.records import ExampleResult, SuiteResult
from ..specs import SamplingSpec
from ..suite import Judge
from . import stats
from .calibration import calibration_status
from .gates import judge_gate_outcomes
from .prompts import (PROMPT_VERSION, pairwise_messages, parse_preference, parse_score, pointwise_messages,
                      retry_messages, rubric_hash)

if TYPE_CHECKING:  # pragma: no cover
    from ..pipeline import PreparedSuite, RunConfig


@dataclass(frozen=True)
class Question:
    """One judge request: a criterion of one output, or one order of a pair."""

    suite: str
    kind: Literal["point", "pair"]
    example: str
    model: str
    #: The criterion (point) or the order (pair: "ab" = the model is A, "ba" = the model is B).
    what: str
    messages: tuple[Message, ...]
    #: The second asking, after an unreadable answer, with a stricter reminder.
    retry: bool = False

    @property
    def request_id(self) -> str:
        # What the generation request is filed under (a replay backend looks verdicts up by it):
        # `judge:point:CRITERION:MODEL:EXAMPLE` or `judge:pair:ab|ba:MODEL:EXAMPLE`, `:retry` appended.
        return f"judge:{self.kind}:{self.what}:{self.model}:{self.example}" + (":retry" if self.retry else "")


def judge_identity(judge: Judge, model: ResolvedModel, rubric: Rubric) -> JudgeIdentity:
    spec = model.spec
    text = (f"{spec.backend}:" if spec.backend else "") + spec.base + (f"+{spec.adapter}" if spec.adapter else "")
    return JudgeIdentity(model=judge.model, spec=text, base_fingerprint=model.base.fingerprint,
                         adapter_fingerprint=model.adapter.fingerprint if model.adapter else None,
                         prompt_version=PROMPT_VERSION, rubric_hash=rubric_hash(rubric))


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)


def questions(suite: SuiteResult, judge: Judge, rubric: Rubric) -> list[Question]:
    """Every question the judge is asked about one suite, in a fixed order."""
    out: list[Question] = []
    for ex in suite.examples:
        request, reference = ex.input, _text(ex.reference)
        for m in suite.models:
            output = ex.outputs.get(m)
            if output is None:
                continue
            if judge.pointwise:
                for c in rubric.criteria:
                    out.append(Question(suite.name, "point", ex.id, m, c.id,
                                        pointwise_messages(rubric, c, request, reference, output.text)))
            ref_out = ex.outputs.get(suite.reference)
            if judge.pairwise and m != suite.reference and ref_out is not None:
                # Blinded: the judge sees letters only; each pair is asked in both orders.
                out.append(Question(suite.name, "pair", ex.id, m, "ab",
                                    pairwise_messages(rubric, request, reference, output.text, ref_out.text)))
                out.append(Question(suite.name, "pair", ex.id, m, "ba",
                                    pairwise_messages(rubric, request, reference, ref_out.text, output.text)))
    return out


def _ask(qs: Sequence[Question], judges: Mapping[str, ResolvedModel], sampling: Mapping[str, SamplingSpec],
         backend: Backend, cache: GenerationCache, config: RunConfig,
         progress: Callable[[str], None] | GenerationProgress | None, counts: dict[str, int]) -> dict[Question, str]:
    """Each question's answer text, generated (or served from the cache) in one batch; `counts`
    adds up how many were generated and how many came from the cache."""
    if not qs:
        return {}
    plan = Plan()
    for q in qs:
        plan.add(f"judge:{q.suite}", judges[q.suite], Example(q.request_id, q.messages, ""), q.messages,
                 sampling[q.suite], backend, "auto")
    outcome = run_generation(plan, backend, cache, chunk_size=config.chunk_size, progress=progress,
                             exclusive_group=config.exclusive_group)
    counts["generated"] += outcome.generated
    counts["cached"] += outcome.cached
    if outcome.failures:
        # A judge that cannot answer leaves every verdict of its suites unknown: say which and why.
        raise BackendError("the LLM judge could not be generated: " + "; ".join(
            f"{model}: {why}" for model, why in outcome.failures.items()))
    return {q: outcome.generations[item.key].text for q, item in zip(qs, plan.items)}


def _read(q: Question, answer: str, rubric: Rubric) -> int | str | None:
    if q.kind == "point":
        return parse_score(answer, rubric.scale_min, rubric.scale_max)
    return parse_preference(answer, allow_tie=rubric.allow_tie)


def run_judges(prepared: Sequence[PreparedSuite], suites: Sequence[SuiteResult], resolved: Mapping[str, ResolvedModel],
               backend: Backend, cache: GenerationCache, config: RunConfig,
               progress: Callable[[str], None] | GenerationProgress | None = None,
               ) -> tuple[tuple[SuiteResult, ...], dict[str, int]]:
    """`suites` with each judged suite's `judge` block and judge gate outcomes added, and how many
    judge answers were generated and how many came from the cache (for the run's timings)."""
    counts = {"generated": 0, "cached": 0}
    by_name = {ps.name: ps for ps in prepared}
    judged = [(s, by_name[s.name]) for s in suites if s.name in by_name and by_name[s.name].suite.judge_config]
    if not judged:
        return tuple(suites), counts
    rubrics: dict[str, Rubric] = {}
    all_qs: list[Question] = []
    judges: dict[str, ResolvedModel] = {}  # suite -> its judge model
    sampling: dict[str, SamplingSpec] = {}
    for s, ps in judged:
        judge = ps.suite.judge_config
        assert judge is not None
        rubrics[s.name] = load_rubric(ps.suite.rubric, task=ps.suite.task, where=f"suite {s.name!r} rubric")
        judges[s.name] = resolved[judge.model]
        sampling[s.name] = SamplingSpec(max_tokens=judge.max_tokens, seed=config.seed)
        all_qs += questions(s, judge, rubrics[s.name])

    answers = _ask(all_qs, judges, sampling, backend, cache, config, progress, counts)
    readings = {q: _read(q, answers[q], rubrics[q.suite]) for q in all_qs}
    unreadable = [q for q in all_qs if readings[q] is None]
    retry = [q for q in unreadable if by_name[q.suite].suite.judge_config.retry]  # type: ignore[union-attr]
    again = [dataclasses.replace(q, retry=True, messages=retry_messages(q.messages, answers[q], rubrics[q.suite],
                                                            pairwise=q.kind == "pair")) for q in retry]
    second = _ask(again, judges, sampling, backend, cache, config, progress, counts)
    for q, q2 in zip(retry, again):
        readings[q] = _read(q2, second[q2], rubrics[q.suite])

    out = []
    judged_names = {s.name for s, _ in judged}
    for s in suites:
        if s.name not in judged_names:
            out.append(s)
            continue
        ps = by_name[s.name]
        qs = [q for q in all_qs if q.suite == s.name]
        result = _result(s, ps, rubrics[s.name], qs, readings, resolved, config,
                         first_unreadable=sum(1 for q in unreadable if q.suite == s.name),
                         retried=sum(1 for q in retry if q.suite == s.name))
        outcomes = judge_gate_outcomes(ps, result)
        out.append(dataclasses.replace(s, judge=result, gates=(*s.gates, *outcomes)))
    return tuple(out), counts


def _result(s: SuiteResult, ps: PreparedSuite, rubric: Rubric, qs: Sequence[Question],
            readings: Mapping[Question, Any], resolved: Mapping[str, ResolvedModel], config: RunConfig, *,
            first_unreadable: int, retried: int) -> JudgeResult:
    judge = ps.suite.judge_config
    assert judge is not None
    criteria = [c.id for c in rubric.criteria] if judge.pointwise else []
    items = _items(s.examples, s.models, s.reference, qs, readings, criteria, judge)
    ids = [e.id for e in s.examples]
    arrays = stats.score_arrays(items, s.models, criteria, ids)
    result = JudgeResult(
        identity=judge_identity(judge, resolved[judge.model], rubric),
        mode=judge.mode,
        reference=s.reference,
        scale=(rubric.scale_min, rubric.scale_max),
        criteria=tuple(criteria),
        scores=stats.score_summaries(arrays, resamples=config.resamples, seed=config.seed),
        comparisons=tuple(stats.comparisons(arrays, reference=s.reference, example_ids=ids, resamples=config.resamples,
                                            seed=config.seed, alpha=config.alpha)),
        win_rates=stats.win_rates(items, s.reference),
        parsing=JudgeParsing(
            requests=len(qs), first_try_unparseable=first_unreadable, retried=retried,
            unparseable_pointwise=sum(1 for q in qs if q.kind == "point" and readings[q] is None),
            unparseable_pairwise=sum(1 for q in qs if q.kind == "pair" and readings[q] is None),
        ),
        position_bias=stats.position_bias(items),
        length_bias=stats.length_bias(items, criteria),
        items=tuple(items),
    )
    return dataclasses.replace(result, calibration=calibration_status(ps.suite, result))


def _items(examples: Sequence[ExampleResult], models: Sequence[str], reference: str, qs: Sequence[Question],
           readings: Mapping[Question, Any], criteria: Sequence[str], judge: Judge) -> list[JudgeItem]:
    got = {(q.kind, q.example, q.model, q.what): readings[q] for q in qs}
    items = []
    for ex in examples:
        for m in models:
            output = ex.outputs.get(m)
            if output is None:
                continue
            scores = {c: got.get(("point", ex.id, m, c)) for c in criteria}
            orders = verdict = None
            if judge.pairwise and m != reference and ("pair", ex.id, m, "ab") in got:
                # Unblind: in order "ab" the model is A, in "ba" it is B.
                first = _unblind(got[("pair", ex.id, m, "ab")], model_letter="A")
                second = _unblind(got[("pair", ex.id, m, "ba")], model_letter="B")
                orders = (first, second)
                verdict = stats.verdict(first, second)
            items.append(JudgeItem(example=ex.id, model=m, scores=scores, length=len(output.text),
                                   verdict=verdict, orders=orders))  # type: ignore[arg-type]
    return items


def _unblind(choice: str | None, *, model_letter: str) -> str | None:
    if choice is None:
        return None
    if choice == "tie":
        return "tie"
    return "model" if choice == model_letter else "reference"


__all__ = ["Question", "judge_identity", "questions", "run_judges"]
