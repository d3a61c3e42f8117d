"""Convert the public datasets in ../shared/datasets into ftevals chat JSONL under data/.

Run once by a maintainer (the output is committed; users and CI never read ../shared):

    python scripts/import_datasets.py [--source ../shared/datasets] [--dest data]

The files are converted, never edited by hand: re-running this script reproduces data/ exactly.
Licences are copied next to the data and attribution is written to data/README.md.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import converters  # noqa: E402 - scripts/converters.py, next to this file (sys.path[0] for a script)
from ftevals.data import load_dataset, normalize_text, write_jsonl  # noqa: E402

ATTRIBUTION = """\
# Data

Converted from public datasets by `scripts/import_datasets.py` (do not edit by hand; re-run the
script). Each row is ftevals chat JSONL: system prompt, user input, and the reference as the final
assistant turn. The licences travel with the data in each folder.

| folder | source | licence | use here |
|---|---|---|---|
| `banking77/` | BANKING77, PolyAI-LDN/task-specific-datasets `banking_data/` (Casanueva et al., 2020, "Efficient Intent Detection with Dual Sentence Encoders") | CC BY 4.0 (`banking77/LICENSE`) | intent classification suite, demo adapter training, few-shot pool |
| `restaurant8k/` | Restaurant-8k, PolyAI-LDN/task-specific-datasets `span_extraction/restaurant8k/` (Coope et al., 2020, "Span-ConveRT"); `train` is the published `train_2` fold | CC BY 4.0 (`restaurant8k/LICENSE`) | JSON slot-extraction suite and demo adapter |
| `dialogsum/` | DialogSum, cylnlp/dialogsum `DialogSum_Data/` (Chen et al., ACL Findings 2021); `bart_large_test_predictions.txt` is the authors' BART-large baseline output (`Baseline/test_output.txt`) | CC BY-NC-SA 4.0 (non-commercial; not relicensed by this project) | summarisation suite (test), demo adapter training (dev), ROUGE correctness anchor |
| `gsm8k/` | GSM8K, openai/grade-school-math (Cobbe et al., 2021) | MIT (`gsm8k/LICENSE`) | general-capability probe in the forgetting suite |

Conversion notes: Restaurant-8k spans are character offsets into the user's text (a missing
`startIndex` means 0) and become a JSON object of verbatim slot values, in the fixed key order
people, date, time, first_name, last_name; rows without labels become `{}`. DialogSum test rows keep
all three human references in `metadata.references` (`summary1` is the reference turn).
Where the same classification input (compared lower-cased, without punctuation) appears twice with
different labels, the later row is dropped: BANKING77 has one such pair in train ("Has my top up gone
through?" as pending_top_up, "Has my top-up gone through?" as top_up_reverted) and one in test, so
train has 10,002 rows and test 3,079.
"""

DIALOGSUM_LICENCE = """\
DialogSum (https://github.com/cylnlp/dialogsum) is released under the
Creative Commons Attribution-NonCommercial-ShareAlike 4.0 International licence (CC BY-NC-SA 4.0):
https://creativecommons.org/licenses/by-nc-sa/4.0/

Chen, Yulong; Liu, Yang; Chen, Liang; Zhang, Yue. "DialogSum: A Real-Life Scenario Dialogue
Summarization Dataset". Findings of ACL 2021.

The files in this folder are converted (not modified in content) for evaluation and demonstration
only; they are not relicensed by ftevals.
"""


def drop_conflicting_labels(rows: list[dict], out: Path) -> list[dict]:
    """Drop a classification row whose normalised input already appeared with another label (label noise).

    ftevals refuses datasets with conflicting labels, so the import resolves them explicitly and
    says so, rather than leaving it to a user to discover at run time.
    """
    seen: dict[str, str] = {}
    kept = []
    for row in rows:
        if "label" not in row["metadata"]:
            kept.append(row)
            continue
        key = normalize_text(" ".join(m["content"] for m in row["messages"][:-1]))
        label = row["messages"][-1]["content"]
        if key in seen and seen[key] != label:
            print(f"{out}: dropped {row['id']} ({label!r}): same input already labelled {seen[key]!r}")
            continue
        seen.setdefault(key, label)
        kept.append(row)
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "datasets")
    parser.add_argument("--dest", type=Path, default=Path(__file__).resolve().parents[1] / "data")
    args = parser.parse_args()
    src, dest = args.source, args.dest
    if not src.is_dir():
        sys.exit(f"error: {src} not found; pass --source pointing at the shared datasets folder")

    jobs = [
        ("banking77", "train", converters.banking77_rows, "train.csv"),
        ("banking77", "test", converters.banking77_rows, "test.csv"),
        ("restaurant8k", "train", converters.restaurant8k_rows, "train.json"),
        ("restaurant8k", "test", converters.restaurant8k_rows, "test.json"),
        ("dialogsum", "dev", converters.dialogsum_rows, "dev.jsonl"),
        ("dialogsum", "test", converters.dialogsum_rows, "test.jsonl"),
        ("gsm8k", "test", converters.gsm8k_rows, "test.jsonl"),
    ]
    for name, split, convert, filename in jobs:
        text = (src / name / filename).read_text(encoding="utf-8")
        out = dest / name / f"{split}.jsonl"
        rows = drop_conflicting_labels(list(convert(text, split)), out)
        write_jsonl(out, rows)
        load_dataset(out)  # the converted file must pass our own validation
        print(f"{out}: {len(rows)} rows")

    for name in ("banking77", "restaurant8k", "gsm8k"):
        shutil.copyfile(src / name / "LICENSE", dest / name / "LICENSE")
    (dest / "dialogsum" / "LICENSE").write_text(DIALOGSUM_LICENCE, encoding="utf-8")
    shutil.copyfile(src / "banking77" / "categories.json", dest / "banking77" / "labels.json")
    shutil.copyfile(src / "dialogsum" / "bart_large_test_predictions.txt", dest / "dialogsum" / "bart_large_test_predictions.txt")
    (dest / "README.md").write_text(ATTRIBUTION, encoding="utf-8")
    print(f"wrote {dest}/README.md with attribution")


if __name__ == "__main__":
    main()
