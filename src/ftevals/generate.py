"""Examples x models -> generations: the only pipeline stage that touches a backend.

1. `build_messages` turns an example into the messages one contender sees (few-shot contenders get
   solved shots from a training pool before the question).
2. `Plan.add` renders every prompt in its prompt format (the model's chat template, or raw text for
   a model without one: `Backend.prompt_format`) and computes its cache key; identical requests
   from different suites collapse into one.
3. `run_generation` serves what it can from the cache and sends only the misses to the backend, in
   per-model chunks, committing each finished chunk to the cache before starting the next, so an
   interrupted run loses at most the chunk in flight and a re-run redoes nothing else. A backend
   that hands over each request as it finishes (`Backend.streams_results`: vLLM) has those
   committed every few seconds instead, so it gets bigger chunks: every chunk boundary lets the
   engine's batch drain (2% of generation time at 1,000 short requests in chunks of 128, on 2 cores).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from .backends.base import Backend, Generation, GenerationRequest
from .cache import GenerationCache, cache_key
from .data import Example, Message, normalize_text
from .errors import BackendError, CacheError, ConfigError, DatasetError, MissingDependencyError, ModelSpecError
from .models import ResolvedModel
from .progress import GenerationProgress
from .specs import SamplingSpec

#: After its first chunk (`chunk_size`, which gives the ETA its first measurement), a model's chunks
#: for a backend that `streams_results` hold up to this many requests: finished requests reach the
#: cache every STREAM_COMMIT_S seconds anyway.
STREAMED_CHUNK = 2048
STREAM_COMMIT_S = 2.0
#: Failures of a backend call that stop the whole run rather than one model: a misconfiguration
#: (reported as a usage error), a missing package (the install command is the whole message), a
#: broken cache (every model would lose its work).
RUN_STOPPERS = (ConfigError, DatasetError, ModelSpecError, MissingDependencyError, CacheError)


def build_messages(example: Example, shots: Sequence[Example] = ()) -> tuple[Message, ...]:
    """The prompt for one example; with shots, each becomes a user/assistant pair before the question.

    The example's own system prompt stays first, so a few-shot contender reads the same instructions
    as the zero-shot models plus worked examples.
    """
    if not shots:
        return example.messages
    system = [m for m in example.messages[:1] if m.role == "system"]
    rest = list(example.messages[len(system) :])
    demo: list[Message] = []
    for shot in shots:
        demo.append(Message("user", shot.user_text))
        demo.append(Message("assistant", shot.reference))
    return tuple(system + demo + rest)


def choose_shots(
    pool: Sequence[Example], k: int, *, seed: int, exclude_inputs: Iterable[str] = (), distinct_labels: bool = True
) -> list[Example]:
    """A fixed, seeded set of k shots from the pool, skipping any whose input is in the eval set."""
    from .data import Dataset, fingerprint_examples

    banned = {normalize_text(t) for t in exclude_inputs}
    candidates = [e for e in pool if normalize_text(e.user_text) not in banned]
    ranked = Dataset("pool", "", tuple(candidates), fingerprint_examples(candidates)).sample(len(candidates), seed=seed)
    ordered = sorted(ranked.examples, key=lambda e: _rank(seed, e.id))
    chosen: list[Example] = []
    seen_labels: set[str] = set()
    for ex in ordered:
        if distinct_labels and ex.label in seen_labels:
            continue
        chosen.append(ex)
        seen_labels.add(ex.label)
        if len(chosen) == k:
            break
    if len(chosen) < k:  # fewer distinct labels than k: fill up with the next-ranked examples
        chosen += [e for e in ordered if e not in chosen][: k - len(chosen)]
    return chosen


def _rank(seed: int, key: str) -> str:
    import hashlib

    return hashlib.sha256(f"shot\x00{seed}\x00{key}".encode()).hexdigest()


@dataclass(frozen=True)
class PlannedExample:
    suite: str
    model: str
    example_id: str
    key: str


@dataclass
class Plan:
    """Deduplicated requests plus, for every (suite, model, example), the key of its generation."""

    requests: dict[str, GenerationRequest] = field(default_factory=dict)
    items: list[PlannedExample] = field(default_factory=list)
    #: (suite, model) -> the prompt format its prompts were rendered in: "chat" or "completion".
    formats: dict[tuple[str, str], str] = field(default_factory=dict)
    #: id(backend) -> its identity(), which enters every cache key.
    identities: dict[int, dict[str, Any]] = field(default_factory=dict)

    def add(self, suite: str, model: ResolvedModel, example: Example, messages: tuple[Message, ...],
            sampling: SamplingSpec, backend: Backend, prompt_format: str = "auto") -> None:
        backend = backend.serving(model.name)  # in a run that mixes backends, the model's own
        fmt = self.prompt_format(suite, model, prompt_format, backend)
        # Chat prompts are rendered as before prompt formats existed, so that a backend whose render()
        # takes no format (and whose prompt_format(), the default, never answers "completion") works.
        prompt = backend.render(model.spec, messages) if fmt == "chat" else backend.render(model.spec, messages, fmt)
        if backend.answers_by_example:
            # A backend that looks answers up by (model, example id) rather than computing them from
            # the prompt (replay) must not share one answer between two models or two examples
            # that happen to have the same prompt.
            prompt = json.dumps({"model": model.name, "example": example.id, "prompt": prompt}, sort_keys=True)
        if id(backend) not in self.identities:  # asked once per backend, not once per request
            self.identities[id(backend)] = backend.identity()
        key = cache_key(
            backend=self.identities[id(backend)],
            base_fingerprint=model.base.fingerprint,
            adapter_fingerprint=model.adapter.fingerprint if model.adapter else None,
            prompt=prompt,
            sampling=sampling.to_dict(),
            prompt_format=fmt,
        )
        if key not in self.requests:
            self.requests[key] = GenerationRequest(key, model.spec, messages, prompt, sampling, example.id, fmt)
        self.items.append(PlannedExample(suite, model.name, example.id, key))

    def prompt_format(self, suite: str, model: ResolvedModel, requested: str, backend: Backend) -> str:
        """The suite's `prompt_format` resolved for one model by the backend, once per (suite, model)."""
        if (suite, model.name) not in self.formats:
            try:
                self.formats[(suite, model.name)] = backend.prompt_format(model.spec, requested)
            except (ConfigError, ModelSpecError) as exc:
                raise type(exc)(f"suite {suite!r}, model {model.name!r}: {exc}") from None
        return self.formats[(suite, model.name)]


@dataclass
class ModelUsage:
    requests: int = 0
    cached: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    wall_s: float = 0.0
    latencies: list[float] = field(default_factory=list)


@dataclass
class GenerationOutcome:
    generations: dict[str, Generation]
    usage: dict[str, ModelUsage]
    backend_calls: int
    generated: int
    cached: int
    seconds: float
    #: Which generations came from the cache (per-suite usage counts its own, not the run's).
    cached_keys: frozenset[str] = frozenset()
    #: Model -> why it could not be generated: its requests are missing from `generations`, and the
    #: later stages score every other model and fail this one's gates with the cause.
    failures: dict[str, str] = field(default_factory=dict)


ProgressFn = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _as_progress(progress: ProgressFn | GenerationProgress | None) -> GenerationProgress:
    """A plain message callback gets the permanent lines only (no ticker): tests and scripts."""
    if isinstance(progress, GenerationProgress):
        return progress
    say = progress or (lambda _m: None)
    return GenerationProgress(lambda text, transient: None if transient else say(text), interval_s=0)


def run_generation(
    plan: Plan,
    backend: Backend,
    cache: GenerationCache,
    *,
    chunk_size: int = 128,
    progress: ProgressFn | GenerationProgress | None = _stderr,
    model_order: Sequence[str] = (),
    exclusive_group: str | None = None,
) -> GenerationOutcome:
    """Fill every planned request from the cache or the backend; commit each chunk as it finishes.

    Runs sharing the cache claim chunks (claims.py); runs of one `exclusive_group` also take turns.
    """
    shown = _as_progress(progress)
    try:
        with _group_turn(cache, exclusive_group):
            return _run_generation(plan, backend, cache, chunk_size=chunk_size, progress=shown, model_order=model_order)
    except KeyboardInterrupt:
        shown.close()
        shown.sink_line(shown.interrupted_note(str(cache.path) if cache.mode != "off" else None))
        raise
    finally:
        shown.close()
        backend.progress_hook = None


@contextmanager
def _group_turn(cache: GenerationCache, group: str | None) -> Iterator[None]:
    claims = cache.claims() if group else None
    if claims is None:
        yield
        return
    with claims.group(group):  # type: ignore[arg-type]
        yield


def _run_generation(
    plan: Plan,
    backend: Backend,
    cache: GenerationCache,
    *,
    chunk_size: int,
    progress: GenerationProgress,
    model_order: Sequence[str],
) -> GenerationOutcome:
    started = time.monotonic()
    say = progress.sink_line
    keys = list(plan.requests)
    found = cache.get_many(keys)
    usage: dict[str, ModelUsage] = {}
    failures: dict[str, str] = {}
    done: dict[str, int] = {}  # generated so far, per model: what a failure of that model keeps
    cached_keys = set(found)
    calls = 0
    generated = 0
    missing = [k for k in keys if k not in found]
    if missing:
        # Backends that choose how to serve each model (vLLM's "auto" strategy) see the whole
        # workload first.
        backend.prepare([plan.requests[k] for k in missing])
        names = list(dict.fromkeys(list(model_order) + [plan.requests[k].model.name for k in missing]))
        names = list(backend.model_order(names))
        order = {name: i for i, name in enumerate(names)}
        missing.sort(key=lambda k: (order.get(plan.requests[k].model.name, len(order)), plan.requests[k].model.name, k))
        streamed = backend.streams_results
        pending = list(_chunks_by_model(missing, plan, chunk_size, STREAMED_CHUNK if streamed else chunk_size))
        totals: dict[str, int] = {}
        for k in missing:
            name = plan.requests[k].model.name
            totals[name] = totals.get(name, 0) + 1
        progress.begin({n: totals[n] for n in names if n in totals}, cached=len(cached_keys), backend=backend.name,
                       streamed=streamed)
        backend.progress_hook = progress.requests_done
        claims = cache.claims()
        while pending:
            progressed = False
            for item in list(pending):
                model_name, chunk = item
                claim = claims.try_claim(chunk) if claims is not None else None
                if claims is not None and claim is None:
                    continue  # another run is generating this chunk right now; come back to it
                pending.remove(item)
                progressed = True
                if model_name in failures:
                    continue  # the model failed in an earlier chunk: its other chunks are not tried
                try:
                    # What another run finished while we worked on other chunks is not redone.
                    landed = cache.get_many(chunk) if claims is not None else {}
                    found.update(landed)
                    cached_keys |= set(landed)
                    todo = [k for k in chunk if k not in landed]
                    elapsed, setup, tokens = 0.0, 0.0, 0
                    if todo:
                        progress.chunk_started(model_name, len(todo))
                        t0 = time.monotonic()
                        setup0 = backend.engine_start_seconds + backend.merge_seconds
                        commits = _StreamedCommits(cache, todo, model_name) if streamed else None
                        backend.result_hook = commits.add if commits is not None else None
                        try:
                            outs = backend.generate([plan.requests[k] for k in todo])
                        except RUN_STOPPERS:
                            raise
                        except Exception as exc:
                            # One model's failure (a merge that does not fit, an engine that died, a
                            # server past its retries) costs that model only: what finished is kept,
                            # and every other model is generated, scored and written as usual.
                            kept = commits.flush() if commits is not None else set()  # before the message counts them
                            error = exc if isinstance(exc, BackendError) else BackendError(f"{type(exc).__name__}: {exc}")
                            told = _keep_finished(error, todo, model_name, cache, earlier=done.get(model_name, 0),
                                                  streamed=kept)
                            failures[model_name] = str(told)
                            say(f"ftevals: {model_name} FAILED, the other models go on: {told}")
                            continue
                        finally:
                            backend.result_hook = None
                            if commits is not None:
                                commits.flush()  # also on Ctrl-C: what finished is kept
                        calls += 1
                        elapsed = time.monotonic() - t0
                        # An engine's start-up or an adapter's merge inside this call is paid once,
                        # not per request: the rate (and so the ETA) leaves it out.
                        setup = min(elapsed, backend.engine_start_seconds + backend.merge_seconds - setup0)
                        if len(outs) != len(todo):
                            raise BackendError(f"backend {backend.name} returned {len(outs)} generations for {len(todo)} requests")
                        committed = commits.committed if commits is not None else set()
                        cache.put_many({k: (model_name, g) for k, g in zip(todo, outs) if k not in committed})
                        found.update(zip(todo, outs))
                        u = usage.setdefault(model_name, ModelUsage())
                        u.wall_s += elapsed - setup  # tokens/s without the engine's start-up, as on the terminal
                        u.latencies += [g.latency_s for g in outs if g.latency_s is not None]
                        generated += len(todo)
                        done[model_name] = done.get(model_name, 0) + len(todo)
                        tokens = sum(g.tokens_out for g in outs)
                    what = f"{len(todo)} generated in {elapsed:.1f} s" if todo else "from another run"
                    if setup >= 0.5:
                        what += f" (engine start-up and merging {setup:.1f} s)"
                    progress.chunk_done(model_name, len(chunk), len(todo), tokens, elapsed - setup, what)
                finally:
                    if claim is not None:
                        claim.release()
            if pending and not progressed:
                # Every chunk left is being generated by another run: wait for one, then look again.
                assert claims is not None
                claims.wait(pending[0][1], say)
    if missing:
        progress.finish(generated=generated, seconds=time.monotonic() - started)
    for key, req in plan.requests.items():
        g = found.get(key)
        if g is None:  # a failed model's request (its model is in `failures`)
            continue
        u = usage.setdefault(req.model.name, ModelUsage())
        u.requests += 1
        u.tokens_in += g.tokens_in
        u.tokens_out += g.tokens_out
        if key in cached_keys:
            u.cached += 1
    return GenerationOutcome(found, usage, calls, generated, len(cached_keys), time.monotonic() - started,
                             frozenset(cached_keys), failures)


class _StreamedCommits:
    """The backend's `result_hook` for one chunk: collects each finished request and commits what
    it holds every STREAM_COMMIT_S seconds (one transaction each), and on `flush()`."""

    def __init__(self, cache: GenerationCache, chunk: list[str], model_name: str) -> None:
        self.cache, self.chunk, self.model_name = cache, chunk, model_name
        self.pending: dict[str, tuple[str, Generation]] = {}
        self.committed: set[str] = set()
        self.last = time.monotonic()

    def add(self, index: int, generation: Generation) -> None:
        if 0 <= index < len(self.chunk):
            self.pending[self.chunk[index]] = (self.model_name, generation)
        if time.monotonic() - self.last >= STREAM_COMMIT_S:
            self.flush()

    def flush(self) -> set[str]:
        """Commit what is held; returns every key committed so far in this chunk."""
        if self.pending:
            entries, self.pending = self.pending, {}
            self.cache.put_many(entries)
            self.committed |= set(entries)
        self.last = time.monotonic()
        return self.committed


def _keep_finished(exc: BackendError, chunk: list[str], model_name: str, cache: GenerationCache,
                   *, earlier: int, streamed: Collection[str] = ()) -> BackendError:
    """After a failed backend call: store what the call did finish, and say what the run keeps.

    Earlier chunks are already committed, and so are the requests of this chunk that a streaming
    backend handed over before it failed (`streamed`). A backend that answers request by request (a
    server) reports the requests of the failed chunk that did succeed as `partial` {index in chunk:
    generation}; they are committed too, so that a re-run asks the server only for the rest.
    """
    if isinstance(exc, MissingDependencyError):
        return exc  # nothing ran; the install command is the whole message
    partial = getattr(exc, "partial", None) or {}
    finished = {chunk[i]: (model_name, g) for i, g in partial.items()
                if isinstance(i, int) and 0 <= i < len(chunk) and chunk[i] not in streamed}
    cache.put_many(finished)
    kept = earlier + len(streamed) + len(finished)
    if kept == 0:
        return exc
    if cache.mode == "off":
        note = f"the cache is off (--ftevals-cache off), so the {kept} generations finished before the failure are lost"
    else:
        note = (f"the {kept} generations finished before the failure are kept in the cache {cache.path}; "
                "a re-run generates only the rest")
    return BackendError(f"{exc}; {note}")


def _chunks_by_model(keys: list[str], plan: Plan, first: int, later: int) -> Iterable[tuple[str, list[str]]]:
    """Each model's keys in chunks: the first of `first` keys, the rest of up to `later`. The same
    keys always make the same chunks, so runs sharing a cache claim the same ones (claims.py)."""
    current: list[str] = []
    current_model = ""
    size = first
    for k in keys:
        name = plan.requests[k].model.name
        if current and (name != current_model or len(current) >= size):
            size = first if name != current_model else later
            yield current_model, current
            current = []
        current_model = name
        current.append(k)
    if current:
        yield current_model, current


__all__ = ["GenerationOutcome", "ModelUsage", "Plan", "build_messages", "choose_shots", "run_generation"]
