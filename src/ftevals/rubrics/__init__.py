"""Default rubrics for human rating packets, one JSON file per task type, and the packet template.

`classification.json`, `generation.json` (summaries), `extraction.json` and `default.json` (every
other task) are read with `importlib.resources` by `ftevals.packets.default_rubric`. A suite's own
`rubric` dict is laid over the task default key by key (see docs/packets.md for the format).
"""
