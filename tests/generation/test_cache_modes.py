"""The generation cache on disk: persistence, use / refresh / off, zero-call warm re-runs, and what
a damaged cache file looks like to a user."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from replay_runs import N_REQUESTS, CountingReplay, run, write_predictions

from ftevals.backends.base import Generation
from ftevals.cache import GenerationCache
from ftevals.errors import CacheError
from ftevals.results import canonical


@pytest.fixture(scope="module")
def predictions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_predictions(tmp_path_factory.mktemp("preds") / "predictions.jsonl")


def outputs(results: dict) -> dict[tuple[str, str], str]:
    return {(m, ex["id"]): out["text"] for ex in results["suites"][0]["examples"] for m, out in ex["outputs"].items()}


def rows(folder: Path) -> dict[str, str]:
    with sqlite3.connect(folder / "generations.sqlite") as conn:
        return dict(conn.execute("SELECT key, payload FROM generations"))


# ---------------------------------------------------------------------------------------------
# GenerationCache itself


def test_entries_persist_across_instances(tmp_path: Path) -> None:
    g = Generation("card_arrival", 12, 3, "stop", 0.25)
    first = GenerationCache(tmp_path / "c")
    first.put_many({"k1": ("base", g), "k2": ("tuned", Generation("x", 1, 1))})
    first.close()
    second = GenerationCache(tmp_path / "c")
    assert second.get_many(["k1", "k2", "missing", "k1"]) == {"k1": g, "k2": Generation("x", 1, 1)}
    assert second.count() == 2


def test_refresh_writes_without_reading_and_off_touches_nothing(tmp_path: Path) -> None:
    GenerationCache(tmp_path / "c").put_many({"k": ("m", Generation("old", 1, 1))})
    refresh = GenerationCache(tmp_path / "c", "refresh")
    assert refresh.get_many(["k"]) == {}
    refresh.put_many({"k": ("m", Generation("new", 1, 1))})
    assert GenerationCache(tmp_path / "c").get_many(["k"])["k"].text == "new"

    off = GenerationCache(tmp_path / "off", "off")
    assert off.get_many(["k"]) == {}
    off.put_many({"k": ("m", Generation("x", 1, 1))})
    assert off.claims() is None  # nothing is shared, so nothing is claimed
    assert not (tmp_path / "off").exists()


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(CacheError, match="unknown cache mode 'sometimes'; expected use, refresh or off"):
        GenerationCache("x", "sometimes")  # type: ignore[arg-type]


def test_an_unreadable_entry_is_a_miss_not_a_crash(tmp_path: Path) -> None:
    cache = GenerationCache(tmp_path)
    cache.put_many({"good": ("m", Generation("ok", 1, 1)), "bad": ("m", Generation("x", 1, 1))})
    with sqlite3.connect(tmp_path / "generations.sqlite") as conn:
        conn.execute("UPDATE generations SET payload = '{\"no_text\": 1}' WHERE key = 'bad'")
    assert set(GenerationCache(tmp_path).get_many(["good", "bad"])) == {"good"}


# ---------------------------------------------------------------------------------------------
# whole runs through the pipeline


def test_warm_rerun_makes_zero_backend_calls_and_equal_results(predictions: Path, tmp_path: Path) -> None:
    cold_backend = CountingReplay(predictions)
    cold = run(predictions, tmp_path / "cache", chunk_size=16, backend=cold_backend)
    assert (cold_backend.calls, cold_backend.requests) == (4, N_REQUESTS)  # 30 + 30 in chunks of 16, per model
    t = cold["run"]["timings"]
    assert (t["backend_calls"], t["generated"], t["cached"]) == (4, N_REQUESTS, 0)
    assert GenerationCache(tmp_path / "cache").count() == N_REQUESTS

    warm_backend = CountingReplay(predictions)
    warm = run(predictions, tmp_path / "cache", chunk_size=7, backend=warm_backend)  # chunk size is not keyed
    assert (warm_backend.calls, warm_backend.requests) == (0, 0)
    t = warm["run"]["timings"]
    assert (t["backend_calls"], t["generated"], t["cached"]) == (0, 0, N_REQUESTS)
    assert canonical(warm) == canonical(cold)
    assert warm["suites"][0]["usage"]["banking77"]["requests"] == 30


def test_a_warm_run_needs_no_backend_able_to_generate(predictions: Path, tmp_path: Path) -> None:
    run(predictions, tmp_path / "cache")
    # A backend whose generate() fails on any request: a warm run must never reach it.
    warm = run(predictions, tmp_path / "cache", backend=_EmptyModelsReplay(predictions))
    assert warm["run"]["timings"]["backend_calls"] == 0


class _EmptyModelsReplay(CountingReplay):
    def generate(self, requests):  # type: ignore[no-untyped-def,override]
        raise AssertionError(f"the backend was asked for {len(requests)} generations")


def test_refresh_regenerates_everything_and_overwrites(predictions: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    cold = run(predictions, cache_dir)
    # Plant wrong text under every key: `use` must serve it (it reads the cache)...
    with sqlite3.connect(cache_dir / "generations.sqlite") as conn:
        conn.execute("""UPDATE generations SET payload = json_set(payload, '$.text', 'planted')""")
    planted = run(predictions, cache_dir)
    assert set(outputs(planted).values()) == {"planted"}
    assert planted["run"]["timings"]["generated"] == 0
    # ...`refresh` regenerates every request and overwrites the entries...
    backend = CountingReplay(predictions)
    refreshed = run(predictions, cache_dir, mode="refresh", backend=backend)
    assert backend.requests == N_REQUESTS and refreshed["run"]["timings"]["generated"] == N_REQUESTS
    assert outputs(refreshed) == outputs(cold)
    # ...so the next `use` run serves the fresh entries with no backend call.
    after = run(predictions, cache_dir)
    assert outputs(after) == outputs(cold) and after["run"]["timings"]["backend_calls"] == 0
    assert "planted" not in "".join(rows(cache_dir).values())


def test_off_neither_reads_nor_writes(predictions: Path, tmp_path: Path) -> None:
    fresh = run(predictions, tmp_path / "never", mode="off")
    assert fresh["run"]["timings"]["generated"] == N_REQUESTS
    assert not (tmp_path / "never").exists()

    cache_dir = tmp_path / "cache"
    run(predictions, cache_dir)
    with sqlite3.connect(cache_dir / "generations.sqlite") as conn:
        conn.execute("""UPDATE generations SET payload = json_set(payload, '$.text', 'planted')""")
    before = rows(cache_dir)
    backend = CountingReplay(predictions)
    off = run(predictions, cache_dir, mode="off", backend=backend)
    assert backend.requests == N_REQUESTS and "planted" not in outputs(off).values()
    assert rows(cache_dir) == before  # nothing written, planted entries untouched


# ---------------------------------------------------------------------------------------------
# a damaged cache


FIX = ("The file holds only cached generations: delete it (with its -wal and -shm files) to start a fresh "
       "cache, choose another folder with --ftevals-cache-dir, or run without a cache (--ftevals-cache off)")


def test_garbage_cache_file_names_the_file_and_the_fix(tmp_path: Path) -> None:
    db = tmp_path / "generations.sqlite"
    db.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(CacheError) as info:
        GenerationCache(tmp_path).get_many(["k"])
    assert str(info.value) == f"cannot open the generation cache {db}: file is not a database. {FIX}"
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_truncated_cache_file_is_reported_not_a_traceback(tmp_path: Path) -> None:
    cache = GenerationCache(tmp_path)
    cache.put_many({f"k{i}": ("m", Generation("x" * 2000, 1, 1)) for i in range(200)})
    cache.close()
    db = tmp_path / "generations.sqlite"
    for leftover in (tmp_path / "generations.sqlite-wal", tmp_path / "generations.sqlite-shm"):
        leftover.unlink(missing_ok=True)
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 3])
    with pytest.raises(CacheError) as info:
        GenerationCache(tmp_path).get_many([f"k{i}" for i in range(200)])
    message = str(info.value)
    assert message.startswith(f"cannot open the generation cache {db}: ") or message.startswith(
        f"cannot read the generation cache {db}: ")
    assert message.endswith(FIX)


def test_cache_folder_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "cache").write_text("not a folder")
    with pytest.raises(CacheError) as info:
        GenerationCache(tmp_path / "cache").get_many(["k"])
    assert str(info.value) == (f"cannot open the generation cache {tmp_path / 'cache' / 'generations.sqlite'}: "
                               f"File exists. {FIX}")


def test_corrupt_cache_fails_a_run_with_the_message(predictions: Path, tmp_path: Path) -> None:
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "generations.sqlite").write_bytes(b"\x00garbage" * 500)
    with pytest.raises(CacheError, match=r"file is not a database\. The file holds only cached generations"):
        run(predictions, tmp_path / "cache")
