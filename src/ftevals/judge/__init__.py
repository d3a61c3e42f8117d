"""An LLM judge on the suite's human rubric, calibrated against the human raters (docs/judge.md).

    prompts.py      what the judge is asked, how its answers are read (strictly), the prompt version
    run.py          the pipeline stage: questions through the run's backend and cache, one retry
    stats.py        scores with CIs, paired comparisons, win rates, position and length bias
    calibration.py  judge-human agreement, the calibration file, whether a criterion may gate
    gates.py        judge gates in the gate language, refused until calibrated
"""

from __future__ import annotations

from .calibration import (CALIBRATION_SCHEMA, PREFERENCE, agreement_figures, calibration_status, load_calibration,
                          write_calibration)
from .gates import WIN_RATE, is_judge_gate
from .prompts import PROMPT_VERSION, parse_preference, parse_score, rubric_hash

__all__ = ["CALIBRATION_SCHEMA", "PREFERENCE", "PROMPT_VERSION", "WIN_RATE", "agreement_figures", "calibration_status",
           "is_judge_gate", "load_calibration", "parse_preference", "parse_score", "rubric_hash", "write_calibration"]
