"""pytester's in-process runs, made safe for installed packages with C extensions (every test folder).

`tests/conftest.py` swaps pytester's snapshot of sys.modules for `KeepInstalled` in every test.
"""

from __future__ import annotations

import functools
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

import _pytest.pytester

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


class KeepInstalled(_pytest.pytester.SysModulesSnapshot):
    """pytester's snapshot of sys.modules, but keeping installed packages an in-process run imported.

    An in-process run drops every module first imported inside it. For a package with a C
    extension that cannot be loaded twice (torch: "SystemError: ... bad call flags" on the second
    import, then a segmentation fault when the half-imported copy is collected) the next import of
    it in this process fails: a run that resolved a model imported torch, and the engine test later
    in the same session could not start vLLM. Installed packages are never a test's own modules.
    """

    def __init__(self, preserve: Callable[[str], bool] | None = None) -> None:
        super().__init__(lambda name: _installed(name) or (preserve is not None and preserve(name)))
