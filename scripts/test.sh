#!/usr/bin/env bash
# The test command: builds and installs the package against the installed torch, then runs the
# C++ kernel tests (GoogleTest via ctest) and the Python tests (pytest; CUDA tests run where a
# GPU is present). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
MAX_JOBS=${MAX_JOBS:-2} python3 -m pip install -q --no-build-isolation --no-deps -e .
cmake -S . -B build/cmake -DCMAKE_BUILD_TYPE=Release -DBNB_CUDA=OFF >/dev/null
cmake --build build/cmake -j"${MAX_JOBS:-2}" --target bnb_kernel_tests
ctest --test-dir build/cmake --output-on-failure
python3 -m pytest -q -p no:cacheprovider "$@" tests
