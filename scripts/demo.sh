#!/usr/bin/env bash
# README command 1: set up and run the main job on the embedded default model.
#
# 1. install ftevals + vLLM (CPU build here) into .venv (skipped when already done);
# 2. convert the embedded SmolLM2-135M-Instruct into the ftevals cache (once, ~30 s);
# 3. check the demo LoRA adapters in adapters/ against their training fingerprints, retraining
#    any that are stale or missing (each 1-3 minutes on 2 CPU cores);
# 4. run every example suite with pytest: base + demo adapters through one vLLM engine,
#    writing reports/results.json and reports/report.html.
#
# Extra arguments go to pytest, e.g. `scripts/demo.sh --ftevals-limit 20`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export HF_HUB_OFFLINE=1
.venv/bin/ftevals models pull-default
.venv/bin/python scripts/train_demo_adapters.py
status=0
.venv/bin/python -m pytest suites/ "$@" || status=$?
echo
if [ -f reports/results.json ]; then
  echo "results: $(pwd)/reports/results.json"
  [ -f reports/report.html ] && echo "report:  $(pwd)/reports/report.html"
fi
exit $status
