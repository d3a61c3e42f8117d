"""Fixtures of the reliability tests: the fake server that answers with labels, the vLLM tripwire."""

from __future__ import annotations

import functools
import sys
import sysconfig
from collections.abc import Callable, Iterator
from pathlib import Path

import _pytest.pytester
import pytest
from support.fakeopenai import FakeOpenAI, label_answer
from support.miniproject import preload


@pytest.fixture(scope="session", autouse=True)
def _import_before_pytester() -> None:
    """In-process pytester runs restore sys.modules afterwards: load what the plugin imports lazily now."""
    preload()


#: Where installed packages live (not the tests' own modules, nor ftevals from src/).
_INSTALLED = tuple({str(Path(sysconfig.get_paths()[k]).resolve()) for k in ("purelib", "platlib")})


def _installed(name: str) -> bool:
    """Whether `name` belongs to an installed package: judged by its top-level package, since an
    extension's own submodules (torch._C._export) are registered without a file of their own."""
    # The module's own dict, not getattr: a lazy module (transformers') imports on a missing
    # attribute, which would change sys.modules while pytester iterates it. A namespace package
    # has no __file__, only the folders of its __path__.
    attrs = getattr(sys.modules.get(name.partition(".")[0]), "__dict__", None) or {}
    places = (attrs.get("__file__"), *(attrs.get("__path__") or ()))
    return any(isinstance(p, str) and _under_installed(p) for p in places)


@functools.lru_cache(maxsize=None)
def _under_installed(place: str) -> bool:
    return str(Path(place).resolve()).startswith(_INSTALLED)  # asked for every submodule: once per path


class _KeepInstalled(_pytest.pytester.SysModulesSnapshot):
    """pytester's snapshot of sys.modules, but keeping installed packages an in-process run imported.

    An in-process run drops every module first imported inside it. For a package with a C
    extension that cannot be loaded twice (torch: "SystemError: ... bad call flags" on the second
    import, then a segmentation fault when the half-imported copy is collected) the next import of
    it in this process fails: a run that resolved a model imported torch, and the engine test later
    in the same session could not start vLLM. Installed packages are never a test's own modules.
    """

    def __init__(self, preserve: Callable[[str], bool] | None = None) -> None:
        super().__init__(lambda name: _installed(name) or (preserve is not None and preserve(name)))


@pytest.fixture(autouse=True)
def _pytester_keeps_installed_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_pytest.pytester, "SysModulesSnapshot", _KeepInstalled)


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    """A local OpenAI-compatible server whose answers are BANKING77 labels, so that runs score them."""
    with FakeOpenAI(answer=label_answer) as fake:
        yield fake


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch, default_model) -> list[str]:
    """A vLLM engine start fails the test (the run should have been refused first); returns the starts."""
    import ftevals.backends.vllm

    # pytester points HOME at its own folder: keep using the converted embedded model.
    monkeypatch.setenv("FTEVALS_CACHE_DIR", str(default_model.path.parents[1]))
    started: list[str] = []

    def tripwire(self: object) -> None:
        started.append(str(getattr(self, "base_path", "?")))
        raise AssertionError("a vLLM engine was started for a run that should have been refused")

    monkeypatch.setattr(ftevals.backends.vllm._Engine, "start", tripwire)
    return started
