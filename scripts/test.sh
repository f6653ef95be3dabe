#!/usr/bin/env bash
# The test command: sets up (scripts/setup.sh), then runs the C++ kernel tests (GoogleTest via
# ctest) and the Python tests (pytest; the CUDA tests run where a GPU is present). Extra
# arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if dpkg -s libgtest-dev >/dev/null 2>&1; then
  cmake -S . -B build/cmake -DCMAKE_BUILD_TYPE=Release -DBNB_CUDA=OFF >/dev/null
  cmake --build build/cmake -j"${MAX_JOBS:-2}" --target bnb_kernel_tests
  ctest --test-dir build/cmake --output-on-failure
fi
python3 -m pytest -q -p no:cacheprovider "$@" tests
