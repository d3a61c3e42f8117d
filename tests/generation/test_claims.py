"""Chunk claims: runs sharing a cache skip chunks another run holds, and a run that must wait says for whom."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ftevals import claims as claims_module
from ftevals.claims import Claims

HOLDER = """
import sys, time
from pathlib import Path
from ftevals.claims import Claims
claim = Claims(Path(sys.argv[1])).try_claim(["k1", "k2"])
print("held" if claim else "refused", flush=True)
time.sleep(float(sys.argv[2]))
claim.release()
"""


def test_a_claimed_chunk_is_skipped_and_waited_for_naming_the_holder(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "claims"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), "2.5", "--tag-for-the-test"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        claims = Claims(folder)
        assert claims.try_claim(["k2", "k1"]) is None  # the same chunk, whatever the order of its keys
        other = claims.try_claim(["k3"])  # an unrelated chunk is free
        assert other is not None
        other.release()
        said: list[str] = []
        monkeypatch.setattr(claims_module, "WAIT_NOTICE_S", 0.5)
        claims.wait(["k1", "k2"], said.append)
        assert said, "a run that waits must say so"
        assert f"pid {holder.pid}" in said[0] and "--tag-for-the-test" in said[0] and "2 of the requests" in said[0]
        mine = claims.try_claim(["k1", "k2"])  # free once the holder let go
        assert mine is not None
        mine.release()
    finally:
        holder.kill()
        holder.wait()
