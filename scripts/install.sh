#!/usr/bin/env bash
# Install ganforge with every extra and its test tools into the current Python environment:
# [studio] (gradio), [onnx] (onnx, onnxscript, onnxruntime) and [dev] (pytest, scipy, playwright).
# Where no torch is installed yet, the CPU build torch==2.13.0 goes in first, so that the
# `torch>=2.2` requirement never pulls a multi-GB CUDA build by accident.
# The studio's browser tests drive Debian's chromium (Playwright never downloads a browser):
# as root on Debian it is installed with apt when missing; elsewhere install it yourself.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import torch" 2>/dev/null; then
    "$PYTHON" -m pip install "torch==2.13.0"
fi
"$PYTHON" -m pip install -e ".[dev,studio,onnx]"
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "note: the studio's browser tests need /usr/bin/chromium (Debian: apt-get install chromium)" >&2
    fi
fi
