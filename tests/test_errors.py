"""One error tree: what ftevals raises for a user to read is an `FtevalsError` defined in
ftevals/errors.py that also subclasses the builtin it resembles (so `except ValueError` keeps working).

The source is read, not trusted: every `raise` of a bare builtin exception in the package must be
one of the internal invariants listed here with the reason, and every exception class defined
outside errors.py must be private. A new user-facing `raise ValueError(...)` fails this file.
"""

from __future__ import annotations

import ast
import builtins
import math
from collections import Counter
from pathlib import Path

import pytest

import ftevals
from ftevals import errors
from ftevals.baseline import Snapshot, diff_snapshots
from ftevals.data import Example, Message
from ftevals.errors import (BackendError, ConfigError, FtevalsError, IntegrityError, MetricError, NotFoundError,
                            UnstorableValueError)
from ftevals.metrics import get_metric
from ftevals.results.codec import to_json
from ftevals.settings import Values

SRC = Path(ftevals.__file__).resolve().parent
BUILTIN_EXCEPTIONS = {n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException)}

#: Bare builtin raises that no user reaches as such: (file, exception) -> how many, and why.
INTERNAL_RAISES: dict[tuple[str, str], int] = {
    # packets/stats.py and judge/calibration.py pass checked matrices and fixed levels and weights.
    ("agreement.py", "ValueError"): 5,
    # metrics/text.py passes fixed ROUGE types, references it checked, and aligned lengths.
    ("metrics/rouge_fast.py", "ValueError"): 4,
    # Caught where it is raised and re-raised as a ModelSpecError naming the file.
    ("adapters.py", "ValueError"): 1,
    # Caught by OpenAIBackend._call: a malformed response is retried, then a BackendError.
    ("backends/openai_http.py", "TypeError"): 1,
    # backends/vllm.py wraps every generation failure into a BackendError naming the engine.
    ("backends/vllm_stream.py", "RuntimeError"): 1,
    # In the engine's worker process, for adapters ftevals_check_weights already refused.
    ("backends/vllm_swap_worker.py", "ValueError"): 2,
    # rank_of is asked only for models of the rating row it belongs to.
    ("packets/_common.py", "KeyError"): 1,
    # A record class with an annotation the codec does not support: a bug in ftevals itself.
    ("results/codec.py", "TypeError"): 2,
    # Protocols that require the builtin: PEP 562 module __getattr__, a script's exit status.
    ("__init__.py", "AttributeError"): 1,
    ("results/schema.py", "SystemExit"): 1,
}


def _modules() -> list[tuple[str, ast.Module]]:
    files = sorted(SRC.rglob("*.py"))
    return [(p.relative_to(SRC).as_posix(), ast.parse(p.read_text(encoding="utf-8"))) for p in files]


def _raised_name(node: ast.Raise) -> str | None:
    exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
    return exc.id if isinstance(exc, ast.Name) else None


def test_every_bare_builtin_raise_is_a_listed_internal_invariant() -> None:
    found = Counter(
        (path, name)
        for path, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.Raise) and (name := _raised_name(node)) in BUILTIN_EXCEPTIONS
    )
    # A new entry means a user may meet a bare builtin: raise the matching ftevals error instead
    # (or list it here, with the reason no user reaches it). A missing one: update the list.
    assert dict(found) == INTERNAL_RAISES


def test_exception_classes_are_defined_in_errors_py_or_private() -> None:
    public = []
    for path, tree in _modules():
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and path != "errors.py" and not node.name.startswith("_"):
                bases = [b.id for b in node.bases if isinstance(b, ast.Name)]
                if any(b in BUILTIN_EXCEPTIONS or b.endswith(("Error", "Exception")) for b in bases):
                    public.append(f"{path}: {node.name}")
    assert public == []


@pytest.mark.parametrize("name", [n for n in errors.__all__ if n not in ("Problem", "FtevalsError")])
def test_every_error_is_in_the_tree_and_subclasses_a_builtin(name: str) -> None:
    cls = getattr(errors, name)
    assert issubclass(cls, FtevalsError)
    resembles = [b for b in cls.__mro__ if b.__module__ == "builtins" and b not in (Exception, BaseException, object)]
    assert resembles, f"{name} subclasses no builtin exception besides Exception"


def test_integrity_error_lives_in_the_tree_and_keeps_its_old_import_paths() -> None:
    from ftevals.integrity import IntegrityError as from_integrity
    from ftevals.plugin import GateFailed
    from ftevals.report.browser import BrowserNotFoundError
    from ftevals.results.codec import RecordError

    assert from_integrity is IntegrityError is ftevals.IntegrityError
    assert issubclass(IntegrityError, BackendError) and issubclass(IntegrityError, RuntimeError)
    assert (GateFailed, BrowserNotFoundError, RecordError) == (errors.GateFailed, errors.BrowserNotFoundError,
                                                                errors.RecordError)
    assert issubclass(GateFailed, AssertionError) and issubclass(RecordError, errors.ResultsError)


def test_user_facing_raises_use_the_tree_and_keep_their_builtin(tmp_path: Path) -> None:
    example = Example(id="a", messages=(Message("user", "hi"),), reference="x")
    with pytest.raises(MetricError, match="2 predictions for 1 examples") as err:
        get_metric("exact_match")(["x", "y"], [example])
    assert isinstance(err.value, ValueError)

    snapshot = Snapshot("demo", None, {})
    with pytest.raises(ConfigError, match="baseline tolerance must be a finite number >= 0, got nan"):
        diff_snapshots(snapshot, snapshot, tolerance=math.nan)

    with pytest.raises(NotFoundError, match="no such option or ini key: --ftevals-limt") as missing:
        Values.from_dicts({"--ftevals-limt": 5}, ini_dir=tmp_path)
    assert isinstance(missing.value, KeyError)
    assert str(missing.value).startswith("no such option")  # a sentence, not KeyError's quoted repr

    with pytest.raises(UnstorableValueError, match="cannot store a set") as unstorable:
        to_json({"details": {1, 2}})
    assert isinstance(unstorable.value, TypeError)
