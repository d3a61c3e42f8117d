"""The hardware class a run's numbers depend on: what a baseline records next to its dtype.

Greedy outputs are bit-identical on the same software, dtype and kind of hardware, and differ at
near-ties across them (bf16 on an AVX512-BF16 CPU against float32 on an AVX2-only one changed a few
BANKING77 answers). So a baseline compares exactly only with a run of the same class, and within the
run's confidence interval otherwise. The class is coarse on purpose: the instruction set that picks
the kernels, not the exact CPU model.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

#: CPU features that select different numeric kernels, best first.
_CPU_FEATURES = ("amx_bf16", "avx512_bf16", "avx512f", "avx2", "neon", "asimd")


def hardware_class() -> str:
    """`cuda:<device name>` when torch is loaded and sees a GPU, else `cpu:<machine>:<best feature>`."""
    torch = sys.modules.get("torch")  # never imported here: a replay run must stay light
    if torch is not None:
        try:
            if torch.cuda.is_available():
                return f"cuda:{torch.cuda.get_device_name(0)}"
        except Exception:  # a broken CUDA setup is reported elsewhere; the class falls back to the CPU
            pass
    return f"cpu:{platform.machine() or 'unknown'}:{_best_cpu_feature()}"


def _best_cpu_feature() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "unknown"
    flags = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.partition(":")[2].split())
    return next((f for f in _CPU_FEATURES if f in flags), "baseline")


__all__ = ["hardware_class"]
