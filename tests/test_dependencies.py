"""Every runtime dependency the package declares is imported by it (else it belongs in an extra)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Distribution name -> the module it is imported as, where they differ.
IMPORT_NAMES = {"rouge-score": "rouge_score", "scikit-learn": "sklearn", "pyyaml": "yaml"}


def test_each_core_dependency_is_imported_somewhere_in_the_package():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "src" / "ftevals").rglob("*.py"))
    unused = []
    for dep in deps:
        dist = re.split(r"[<>=!~\[; ]", dep, maxsplit=1)[0].strip().lower()
        module = IMPORT_NAMES.get(dist, dist.replace("-", "_"))
        if not re.search(rf"^\s*(import|from)\s+{re.escape(module)}\b", source, re.MULTILINE):
            unused.append(f"{dist} (module {module})")
    assert not unused, f"declared but never imported, move to an extra: {unused}"
