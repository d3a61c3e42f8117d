"""The on-disk memos (memo.py) that make a warm re-run fast: each serves a stored value only when
every input is unchanged, never memoises a failure, and its absence only costs time."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ftevals import data as data_module
from ftevals.backends.render_memo import MemoisedRendering, tokenizer_key
from ftevals.data import Message, load_dataset
from ftevals.errors import DatasetError
from ftevals.metrics import rouge_fast


@pytest.fixture(autouse=True)
def memo_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "memo"
    monkeypatch.setenv("FTEVALS_MEMO_DIR", str(folder))
    return folder


def _row(i: int, label: str = "card_arrival") -> str:
    return json.dumps({"id": f"r{i}", "messages": [{"role": "user", "content": f"question {i}"},
                                                   {"role": "assistant", "content": label}],
                       "metadata": {"label": label}})


def test_a_dataset_is_validated_once_and_again_after_any_edit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(_row(i) for i in range(5)) + "\n")
    calls: list[str] = []
    real = data_module._parse_dataset

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append("load")
        return real(*args, **kwargs)

    monkeypatch.setattr(data_module, "_parse_dataset", counting)
    first = load_dataset(path)
    second = load_dataset(path)
    assert calls == ["load"] and second == first
    # Other arguments are another entry: the label set is checked, not skipped.
    with pytest.raises(DatasetError, match="not in the declared label set"):
        load_dataset(path, labels=["other"])
    # An edit to the file is validated afresh, and a bad row is reported every time (never memoised).
    path.write_text("\n".join(_row(i) for i in range(5)) + "\n{not json\n")
    for _ in range(2):
        with pytest.raises(DatasetError, match=r"d.jsonl:6"):
            load_dataset(path)
    assert calls == ["load", "load", "load", "load"]


def test_a_damaged_memo_entry_is_recomputed(tmp_path: Path, memo_dir: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(_row(i) for i in range(3)) + "\n")
    good = load_dataset(path)
    (entry,) = (memo_dir / "datasets").iterdir()
    entry.write_bytes(b"\x80 not a pickle")
    assert load_dataset(path) == good


class _Tokenizer:
    chat_template = "{{ messages }}"
    bos_token = None
    bos_token_id = None

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):  # type: ignore[no-untyped-def]
        return "|".join(f"{m['role']}:{m['content']}" for m in messages) + "|assistant:"


class _Folder:
    def __init__(self, path: Path) -> None:
        self.path = path


class _Model:
    def __init__(self, path: Path) -> None:
        self.base = _Folder(path)


class _Spec:
    name = "m"


class _Backend(MemoisedRendering):
    def __init__(self, folder: Path) -> None:
        self.models = {"m": _Model(folder)}
        self.settings = type("S", (), {"trust_remote_code": False})()
        self.loads = 0

    def tokenizer(self, model):  # type: ignore[no-untyped-def]
        self.loads += 1
        return _Tokenizer()


def test_rendered_prompts_are_reused_by_a_new_run_until_the_tokenizer_changes(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "tokenizer_config.json").write_text('{"chat_template": "v1"}')
    (folder / "model.safetensors").write_bytes(b"weights")
    messages = (Message("user", "hello"),)

    first = _Backend(folder)
    assert first.prompt_format(_Spec(), "auto") == "chat"
    text = first.render(_Spec(), messages)
    assert text == "user:hello|assistant:" and first.loads == 2
    first.save_renders()

    again = _Backend(folder)  # a new run: nothing loaded, everything read from the memo
    assert again.prompt_format(_Spec(), "auto") == "chat" and again.render(_Spec(), messages) == text
    assert again.loads == 0

    before = tokenizer_key(folder)
    (folder / "model.safetensors").write_bytes(b"other weights")  # weights do not change rendering
    assert tokenizer_key(folder) == before
    (folder / "tokenizer_config.json").write_text('{"chat_template": "v2"}')
    assert tokenizer_key(folder) != before
    changed = _Backend(folder)
    changed.render(_Spec(), messages)
    assert changed.loads == 1


def test_stems_come_from_the_memo_in_a_new_process_and_equal_nltk(monkeypatch: pytest.MonkeyPatch) -> None:
    from nltk.stem import porter

    words = ["running", "generously", "conditional", "organization", "cats"]
    monkeypatch.setattr(rouge_fast, "_stem_memo", [])
    memo = rouge_fast._stems()
    assert [memo.stem(w) for w in words] == [porter.PorterStemmer().stem(w) for w in words]
    memo.save()

    monkeypatch.setattr(rouge_fast, "_stem_memo", [])
    fresh = rouge_fast._stems()
    monkeypatch.setitem(sys.modules, "nltk.stem", None)  # importing it now would fail
    assert [fresh.stem(w) for w in words] == [memo.stem(w) for w in words]


def test_shots_and_contamination_are_memoised_by_the_files_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ftevals import pipeline
    from ftevals.pipeline import RunConfig, prepare
    from ftevals.specs import ModelSpec
    from ftevals.suite import FewShot, Suite

    evaluation, pool = tmp_path / "test.jsonl", tmp_path / "train.jsonl"
    evaluation.write_text("\n".join(_row(i) for i in range(4)) + "\n")
    pool.write_text("\n".join(_row(100 + i, "lost_card") for i in range(6)) + "\n")
    suite = Suite(name="s", task="classification", dataset=str(evaluation), labels=["card_arrival", "lost_card"],
                  models=("base",), fewshot=FewShot(k=2, pool=str(pool)), train_files=[str(pool)])
    config = RunConfig(models={"base": ModelSpec("base")}, backend="replay", cache_dir=tmp_path / "cache")
    calls = {"shots": 0, "contamination": 0}
    real_choose, real_check = pipeline.choose_shots, pipeline.check_contamination

    def choose(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["shots"] += 1
        return real_choose(*args, **kwargs)

    def check(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["contamination"] += 1
        return real_check(*args, **kwargs)

    monkeypatch.setattr(pipeline, "choose_shots", choose)
    monkeypatch.setattr(pipeline, "check_contamination", check)
    first = prepare([suite], config).suites[0]
    again = prepare([suite], config).suites[0]
    assert calls == {"shots": 1, "contamination": 1}
    assert again.shots == first.shots and again.contamination == first.contamination
    # One more training row: both are computed afresh.
    pool.write_text(pool.read_text() + _row(200, "lost_card") + "\n")
    prepare([suite], config)
    assert calls == {"shots": 2, "contamination": 2}
