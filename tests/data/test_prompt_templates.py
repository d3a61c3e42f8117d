"""A suite's prompt template: the user turn written from a row's fields, for JSONL and CSV rows, in
suites (the few-shot pool too) and in `ftevals data validate --prompt-template`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftevals.cli import main
from ftevals.data import load_dataset
from ftevals.errors import ConfigError, DatasetError
from ftevals.pipeline import RunConfig, prepare
from ftevals.prompts import PromptTemplate
from ftevals.specs import ModelSpec
from ftevals.suite import FewShot, Suite

ROWS = [
    {"id": "a", "prompt": "Where is my card?", "reference": "card_arrival", "metadata": {"channel": "app", "tries": 2}},
    {"id": "b", "prompt": "I lost my card", "reference": "lost_card", "metadata": {"channel": "web", "tries": 1}},
    {"id": "c", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                             {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Card late?"},
                             {"role": "assistant", "content": "card_arrival"}], "metadata": {"channel": "chat"}},
]
CSV = "label,text,channel\ncard_arrival,Where is my card?,app\nlost_card,I lost my card,web\n"
CONFIG = RunConfig(models={"base": ModelSpec("base")}, backend="replay")


def jsonl(path: Path, rows: list[dict] = ROWS) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# Rendering


def test_a_jsonl_template_uses_top_level_and_metadata_fields(tmp_path: Path) -> None:
    ds = load_dataset(jsonl(tmp_path / "d.jsonl", ROWS[:2]), prompt_template="[{channel}, try {tries}] {prompt}")
    by_id = {e.id: e for e in ds.examples}
    assert by_id["a"].user_text == "[app, try 2] Where is my card?"
    assert len(by_id["a"].messages) == 1 and by_id["a"].reference == "card_arrival"
    # A chat row: {prompt}/{input} is its final user turn, which the template replaces; earlier
    # turns and the system prompt stay as written.
    chat = load_dataset(jsonl(tmp_path / "c.jsonl", ROWS[2:]), prompt_template="({channel}) {input}").examples[0]
    assert [(m.role, m.content) for m in chat.messages] == [
        ("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello"), ("user", "(chat) Card late?")]


def test_a_csv_template_names_columns_by_header_and_lists_the_labels(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text(CSV, encoding="utf-8")
    ds = load_dataset(tmp_path / "t.csv", columns={"prompt": "text", "reference": "label"},
                      labels=["card_arrival", "lost_card"], system_prompt="Answer with a label.",
                      prompt_template="Channel: {channel}\nMessage: {text}\nLabels: {labels}\nIntent:")
    first = ds.examples[0]
    assert [m.role for m in first.messages] == ["system", "user"]
    assert first.user_text == "Channel: app\nMessage: Where is my card?\nLabels: card_arrival, lost_card\nIntent:"


def test_ids_and_samples_do_not_depend_on_the_template(tmp_path: Path) -> None:
    rows = [{k: v for k, v in r.items() if k != "id"} for r in ROWS[:2]]
    path = jsonl(tmp_path / "d.jsonl", rows)
    plain, templated = load_dataset(path), load_dataset(path, prompt_template="Q: {prompt}")
    assert [e.id for e in plain.examples] == [e.id for e in templated.examples]
    assert plain.fingerprint != templated.fingerprint  # the prompts did change


def test_a_missing_field_is_reported_with_file_line_and_the_fields_there_are(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "d.jsonl", [*ROWS[:2], {"id": "x", "prompt": "No channel", "reference": "lost_card"}])
    with pytest.raises(DatasetError) as info:
        load_dataset(path, prompt_template="{channel}: {prompt}")
    assert str(info.value) == (
        f"{path}:3: the prompt template names {{channel}}, which this row does not have; available fields: "
        "id, input, prompt (fix the template or add the field to every row)")


def test_every_row_missing_a_csv_column_field_is_listed(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text(CSV, encoding="utf-8")
    with pytest.raises(DatasetError) as info:
        load_dataset(tmp_path / "t.csv", columns={"prompt": "text", "reference": "label"}, prompt_template="{txt}")
    lines = [f"{p.line}: {p.message}" for p in info.value.problems]
    assert lines == [f"{n}: the prompt template names {{txt}}, which this row does not have; available fields: "
                     "channel, input, prompt, text (fix the template or add the field to every row)" for n in (2, 3)]


@pytest.mark.parametrize(("template", "problem"), [
    ("Q: {prompt", "is malformed (expected '}' before end of string)"),
    ("Q: prompt}", "is malformed (Single '}' encountered in format string)"),
    ("Q: {}", "has a positional field {}; fields are taken from the row by name"),
    ("Q: {0}", "has a positional field {0}; fields are taken from the row by name"),
    ("Q: {metadata[channel]}", "field {metadata[channel]} uses attribute or index access ('.', '[')"),
    ("Q: {prompt.upper}", "field {prompt.upper} uses attribute or index access ('.', '[')"),
    ("Q: {prompt!r}", "field {prompt!r} has a conversion or format spec; values are inserted as they are"),
    ("Q: {prompt:>9}", "field {prompt:>9} has a conversion or format spec; values are inserted as they are"),
    ("No field at all {{literal}}", "names no field, so every example would get the same prompt"),
])
def test_a_malformed_template_is_a_config_error_naming_the_suite_at_prepare(tmp_path: Path, template: str,
                                                                         problem: str) -> None:
    jsonl(tmp_path / "d.jsonl")
    suite = Suite(name="templated", dataset="d.jsonl", prompt_template=template, root=str(tmp_path))
    with pytest.raises(ConfigError) as info:
        prepare([suite], CONFIG)
    assert str(info.value).startswith(f"suite 'templated': prompt_template {template!r} {problem}; "
                                      "write fields by name"), str(info.value)


def test_a_template_may_not_show_the_model_its_answer(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"names \{reference\}, the reference answer"):
        PromptTemplate.parse("{prompt} ({reference})", owner="suite 's'")
    (tmp_path / "t.csv").write_text(CSV, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"names \{label\}, the reference answer"):
        load_dataset(tmp_path / "t.csv", columns={"prompt": "text", "reference": "label"}, prompt_template="{label}")
    with pytest.raises(ConfigError, match=r"t.csv: the prompt template names \{category\}, the column the reference"):
        (tmp_path / "t.csv").write_text(CSV.replace("label,", "category,", 1), encoding="utf-8")
        load_dataset(tmp_path / "t.csv", columns={"prompt": "text", "reference": "category"},
                     prompt_template="{text} {category}")


def test_a_csv_header_with_spaces_or_dashes_is_a_field(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("Ticket Text,sub-channel,label\nWhere is my card?,app,card_arrival\n", encoding="utf-8")
    ds = load_dataset(tmp_path / "t.csv", columns={"prompt": "Ticket Text", "reference": "label"},
                      prompt_template="[{sub-channel}] {Ticket Text}")
    assert ds.examples[0].user_text == "[app] Where is my card?"


def test_literal_braces_survive(tmp_path: Path) -> None:
    ds = load_dataset(jsonl(tmp_path / "d.jsonl", ROWS[:1]), prompt_template='Reply as JSON {{"intent": ...}}: {prompt}')
    assert ds.examples[0].user_text == 'Reply as JSON {"intent": ...}: Where is my card?'


# ---------------------------------------------------------------------------------------------
# In a suite


def test_a_suite_templates_its_rows_and_its_few_shot_pool(tmp_path: Path) -> None:
    jsonl(tmp_path / "eval.jsonl", ROWS[:1])
    jsonl(tmp_path / "train.jsonl", [dict(ROWS[1], id="t1")])
    (tmp_path / "labels.json").write_text('["card_arrival", "lost_card"]', encoding="utf-8")
    suite = Suite(name="s", task="classification", dataset="eval.jsonl", labels="labels.json",
                  fewshot=FewShot(k=1, pool="train.jsonl"), prompt_template="{prompt}\nOne of: {labels}",
                  prompt_format="completion", root=str(tmp_path))
    ps = prepare([suite], CONFIG).suites[0]
    assert ps.dataset.examples[0].user_text == "Where is my card?\nOne of: card_arrival, lost_card"
    assert [s.user_text for s in ps.shots] == ["I lost my card\nOne of: card_arrival, lost_card"]


def test_a_shot_never_repeats_an_evaluation_input_that_the_template_dressed_differently(tmp_path: Path) -> None:
    (tmp_path / "eval.csv").write_text(CSV, encoding="utf-8")
    # The pool's first row is an evaluation input from another channel: templated, the two texts
    # differ ("web: ..." vs "app: ..."), as written they are the same question.
    (tmp_path / "pool.csv").write_text("label,text,channel\ncard_arrival,Where is my card?,web\n"
                                       "card_arrival,When does the card come?,app\n", encoding="utf-8")
    suite = Suite(name="s", task="classification", dataset="eval.csv", columns={"prompt": "text", "reference": "label"},
                  fewshot=FewShot(k=1, pool="pool.csv"), prompt_template="{channel}: {text}", root=str(tmp_path))
    assert [s.user_text for s in prepare([suite], CONFIG).suites[0].shots] == ["app: When does the card come?"]


def test_contamination_compares_the_rows_as_written_not_the_template(tmp_path: Path) -> None:
    jsonl(tmp_path / "eval.jsonl", ROWS[:2])
    # The fine-tuning file holds the first input as written: the template's words must not hide it.
    jsonl(tmp_path / "train.jsonl", [{"id": "t1", "prompt": "Where is my card?", "reference": "card_arrival"}])
    suite = Suite(name="s", dataset="eval.jsonl", train_files=("train.jsonl",), root=str(tmp_path),
                  prompt_template="You are a banking assistant. Classify the customer's message.\n{prompt}")
    contamination = prepare([suite], CONFIG).suites[0].contamination
    assert contamination is not None and contamination["exact"] == 1
    assert [m["eval_id"] for m in contamination["matches"]] == ["a"]


def test_prompt_format_must_be_one_of_the_three() -> None:
    with pytest.raises(ConfigError, match="suite 's': prompt_format must be one of 'auto', 'chat', 'completion', "
                                          "got 'raw'"):
        Suite(name="s", dataset="d.jsonl", prompt_format="raw")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# ftevals data validate --prompt-template


def test_data_validate_takes_the_template_and_shows_the_first_prompt(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "t.csv").write_text(CSV, encoding="utf-8")
    (tmp_path / "labels.json").write_text('["card_arrival", "lost_card"]', encoding="utf-8")
    args = ["data", "validate", str(tmp_path / "t.csv"), "--column", "prompt=text", "--column", "reference=label",
            "--labels", str(tmp_path / "labels.json")]
    assert main([*args, "--prompt-template", r"Message: {text}\nLabels: {labels}"]) == 0
    out = capsys.readouterr().out
    assert f"first prompt ({tmp_path / 't.csv'}:2): 'Message: Where is my card?\\nLabels: card_arrival, lost_card'" in out
    assert main([*args, "--prompt-template", "Message: {txet}"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 't.csv'}:2: the prompt template names {{txet}}, which this row does not have" in err
    assert main([*args, "--prompt-template", "Message: {}"]) == 2
    assert "--prompt-template: prompt_template 'Message: {}' has a positional field {}" in capsys.readouterr().err
