#!/usr/bin/env bash
# Install ganforge with its test tools into the current Python environment.
# Where no torch is installed yet, the CPU build torch==2.13.0 goes in first, so that the
# `torch>=2.2` requirement never pulls a multi-GB CUDA build by accident.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import torch" 2>/dev/null; then
    "$PYTHON" -m pip install "torch==2.13.0"
fi
"$PYTHON" -m pip install -e ".[dev]"
