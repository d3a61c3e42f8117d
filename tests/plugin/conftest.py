"""A tiny ftevals project inside pytester's folder, served by the replay backend (no model at all).

Twenty real BANKING77 test rows with twenty distinct intents, a labels file, a suite file, a
predictions file saying which examples each model gets right, and a pytest.ini with the model
table. Tests rewrite the suite or the predictions and run pytest on the project, in-process
(`project.run`) or, where a fresh interpreter is the point (xdist, import checks), in a subprocess.
The project itself is tests/support/miniproject.py, shared with tests/reliability.
"""

from __future__ import annotations

from typing import Any

import pytest
from support.miniproject import MiniProject, preload
from support.miniproject import banking77_rows as _banking77_rows


@pytest.fixture(scope="session", autouse=True)
def _import_before_pytester() -> None:
    """Import what an inner run imports, once, up front (see `preload`)."""
    preload()


@pytest.fixture(scope="session")
def banking77_rows() -> list[dict[str, Any]]:
    return _banking77_rows()


@pytest.fixture
def project(pytester: pytest.Pytester, banking77_rows: list[dict[str, Any]]) -> MiniProject:
    """The project with base right on 12 of 20 examples and tuned on 16 (0.600 vs 0.800)."""
    return MiniProject.create(pytester, banking77_rows)
