"""The hardware class a run's numbers depend on: what a baseline records next to its dtype.

Greedy outputs are bit-identical on the same software, dtype and kind of hardware, and differ at
near-ties across them (bf16 on an AVX512-BF16 CPU against float32 on an AVX2-only one changed a few
BANKING77 answers). So a baseline compares exactly only with a run of the same class, and within the
run's confidence interval otherwise. The class is the instruction set that picks the kernels and
the vendor that implements them, not the exact CPU model: an Intel and an AMD CPU, both with
AVX512-BF16 and both in bf16, gave different greedy outputs on the same prompts (the main job's
BANKING77 and DialogSum baselines moved, within their CIs).
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

#: CPU features that select different numeric kernels, best first.
_CPU_FEATURES = ("amx_bf16", "avx512_bf16", "avx512f", "avx2", "neon", "asimd")


CPUINFO = Path("/proc/cpuinfo")


def hardware_class(cpuinfo: Path = CPUINFO) -> str:
    """`cuda:<device name>` when torch is loaded and sees a GPU, else `cpu:<machine>:<best feature>`."""
    torch = sys.modules.get("torch")  # never imported here: a replay run must stay light
    if torch is not None:
        try:
            if torch.cuda.is_available():
                return f"cuda:{torch.cuda.get_device_name(0)}"
        except Exception:  # a broken CUDA setup is reported elsewhere; the class falls back to the CPU
            pass
    feature, vendor = _cpu_feature_and_vendor(cpuinfo)
    return f"cpu:{platform.machine() or 'unknown'}:{feature}" + (f":{vendor}" if vendor else "")


def _cpu_feature_and_vendor(cpuinfo: Path) -> tuple[str, str]:
    """(best numeric feature, vendor id such as GenuineIntel or AuthenticAMD; "" where unknown)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "unknown", ""
    flags: set[str] = set()
    vendor = ""
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.partition(":")[2].split())
        elif line.startswith(("vendor_id", "CPU implementer")) and not vendor:
            vendor = line.partition(":")[2].strip()
    return next((f for f in _CPU_FEATURES if f in flags), "baseline"), vendor


__all__ = ["hardware_class"]
