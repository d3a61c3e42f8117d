"""Load a file from scripts/ as a module, for the tests of what the maintainer scripts do.

scripts/ is not a package and not on `sys.path`: what lives there (the demo-adapter recipes, the
dataset converters) serves the repository, not the installed package.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def load_script(name: str) -> ModuleType:
    """scripts/<name>.py, executed afresh as the module `name`."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class body is processed.
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
