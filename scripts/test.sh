#!/usr/bin/env bash
# README command 2 (and CI): set up and run the test suite, including the real vLLM CPU engine.
# Extra arguments go to pytest as one session, e.g. `scripts/test.sh -k metrics`.
# Without arguments the suite runs in two sessions: the tests that start no engine on every core
# (pytest-xdist), then the vLLM tests one at a time (each engine already uses every core).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh --test
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
if [ "$#" -gt 0 ]; then
  exec .venv/bin/python -m pytest tests/ "$@"
fi
workers=$(.venv/bin/python -c "import os; print(min(4, len(os.sched_getaffinity(0))))")
fast=0
.venv/bin/python -m pytest tests/ -m "not vllm" -n "$workers" || fast=$?
engines=0
.venv/bin/python -m pytest tests/ -m vllm --durations=15 || engines=$?
echo "tests without an engine: exit $fast; vLLM engine tests: exit $engines"
# Either session collecting nothing (exit 5) is a failure too: .ci/run turns a 5 into a failure.
if [ "$fast" -ne 0 ]; then exit "$fast"; fi
exit "$engines"
