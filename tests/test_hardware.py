"""The hardware class a baseline is recorded with: instruction set and vendor."""

from __future__ import annotations

from pathlib import Path

from ftevals import hardware


def _class(monkeypatch, tmp_path: Path, text: str) -> str:
    fake = tmp_path / "cpuinfo"
    fake.write_text(text, encoding="utf-8")
    monkeypatch.setitem(hardware.sys.modules, "torch", None)  # no GPU to look at
    monkeypatch.setattr(hardware.platform, "machine", lambda: "x86_64")
    return hardware.hardware_class(fake)


def test_vendor_and_best_feature(monkeypatch, tmp_path):
    amd = "vendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n"
    assert _class(monkeypatch, tmp_path, amd) == "cpu:x86_64:avx512_bf16:AuthenticAMD"
    intel = "vendor_id\t: GenuineIntel\nflags\t\t: avx2 avx512f avx512_bf16 amx_bf16\n"
    assert _class(monkeypatch, tmp_path, intel) == "cpu:x86_64:amx_bf16:GenuineIntel"
    assert _class(monkeypatch, tmp_path, "flags\t\t: avx2\n") == "cpu:x86_64:avx2"


def test_the_committed_baselines_name_the_machine_they_were_recorded_on():
    import json

    suites = Path(__file__).resolve().parents[1] / "suites" / "baselines"
    classes = {json.loads(p.read_text())["environment"]["hardware"] for p in suites.glob("*.json")}
    assert classes == {"cpu:x86_64:avx512_bf16:GenuineIntel"}
