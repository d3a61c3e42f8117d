"""Blinded human-rating packets built from a results file, and the import of the returned sheets.

Public stages, each a pure function of its inputs (no model, no clock, no global randomness)::

    build_packets(results, out_dir, ...)  -> PacketManifest   writes the packet folder
    import_ratings(packet_dir, sheets)    -> HumanResults     validates, unblinds, computes statistics
    merge_into_results(results, human)    -> Results          a copy with each rated suite's `human` set

`results` is a `ftevals.results.Results` record (from `load`) or the dict of a results file, which
is validated and read into records once at the entry point; inside, the stages read attributes.

One module per stage, in the order data flows through them::

    rubrics ─► build (+ render) ─► packet folder ─► raters ─► sheets ─► stats ─► merge
                    │                                            ▲
                    └──────────► answer_key ─────────────────────┘
                           the only module that maps item codes and letters back to
                           suites, examples and models (writes and reads key/answer_key.json)

    _common      format names, sheet columns, the public records, helpers several stages need

A packet folder (see docs/packets.md for the full description)::

    out_dir/
      manifest.json                 blinded: raters, parts, columns, item codes per rater, file hashes
      key/answer_key.json           NOT for raters: item code -> suite, example id, letter -> model
      raters/<rater>/packet.html    printable instructions, rubrics and items
      raters/<rater>/part-<n>.csv   the sheet to fill (one row per item), and the same as .jsonl

Blinding is the point of the whole package, so everything a rater can see is built from opaque
values only: random item codes, "part-<n>" instead of suite names, response letters shuffled per
item with every model in every position equally often, items in a random order per rater, and no
metric, token count, file name, fingerprint or model name anywhere in the rater folders or the
manifest. The only place that links codes and letters back to examples and models is the key.
"""

from __future__ import annotations

from ._common import (
    ANSWER_COLUMNS,
    FORMAT_VERSION,
    HUMAN_SCHEMA,
    ID_COLUMNS,
    PACKET_FORMAT,
    STRATA,
    HumanResults,
    PacketManifest,
    PartSummary,
    Rating,
    sheet_columns,
)
from .answer_key import KEY_FORMAT
from .build import build_packets
from .merge import merge_into_results
from .rubrics import TASK_RUBRICS, Criterion, Rubric, default_rubric, load_rubric, packaged_rubrics
from .sheets import import_ratings
from .stats import ALPHA_GAIN_FLAG, ALPHA_GAIN_MIN_RATERS, KAPPA_FLAG, SCORE_SPREAD_FLAG

__all__ = [
    "ALPHA_GAIN_FLAG",
    "ALPHA_GAIN_MIN_RATERS",
    "ANSWER_COLUMNS",
    "FORMAT_VERSION",
    "HUMAN_SCHEMA",
    "ID_COLUMNS",
    "KAPPA_FLAG",
    "KEY_FORMAT",
    "PACKET_FORMAT",
    "SCORE_SPREAD_FLAG",
    "STRATA",
    "TASK_RUBRICS",
    "Criterion",
    "HumanResults",
    "PacketManifest",
    "PartSummary",
    "Rating",
    "Rubric",
    "build_packets",
    "default_rubric",
    "import_ratings",
    "load_rubric",
    "merge_into_results",
    "packaged_rubrics",
    "sheet_columns",
]
