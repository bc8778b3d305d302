#!/usr/bin/env bash
# One entry point for a fresh machine: `bash dev.sh demo` or `bash dev.sh test`.
# Creates .venv, installs torch (the CPU build where no NVIDIA GPU is present), the package
# and its test/example extras, then runs the demo or the default test suite.
set -euo pipefail
cd "$(dirname "$0")"

VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
# The torch pinned for CPU-only machines. On these machines this version is a CPU wheel
# already on disk; elsewhere point pip at PyTorch's CPU wheel index through PIP_INDEX_URL
# or PIP_EXTRA_INDEX_URL (see README), or set TORCH_SPEC to what you want installed.
CPU_TORCH=${TORCH_SPEC:-torch==2.13.0}

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
  fi
  local vpy="$VENV/bin/python"
  if ! "$vpy" -c "import torch" 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
      "$vpy" -m pip install -q "torch>=2.4"      # a CUDA build, for the GPU present
    else
      "$vpy" -m pip install -q "$CPU_TORCH"      # never the multi-GB CUDA build
    fi
  fi
  # torch is already satisfied, so this resolves nothing heavy.
  "$vpy" -m pip install -q -e ".[test,examples]"
}

case "${1:-}" in
  demo)
    setup
    "$VENV/bin/python" examples/demo.py "${@:2}"
    ;;
  test)
    setup
    # The README's test command: the default suite (slow tests deselected in pyproject).
    "$VENV/bin/python" -m pytest "${@:2}"
    ;;
  setup)
    setup
    ;;
  *)
    echo "usage: bash dev.sh {demo|test|setup} [extra args]" >&2
    exit 2
    ;;
esac
