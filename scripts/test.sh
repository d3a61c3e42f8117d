#!/usr/bin/env bash
# README command 2 (and CI): set up and run the test suite, including the real vLLM CPU engine.
# Extra arguments go to pytest, e.g. `scripts/test.sh -k metrics`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh --test
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
exec .venv/bin/python -m pytest tests/ "$@"
