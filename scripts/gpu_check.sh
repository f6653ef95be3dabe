#!/usr/bin/env bash
# On a CUDA machine: build (CUDA kernels for TORCH_CUDA_ARCH_LIST, default 9.0), run the C++
# tests, the self-check, the whole pytest suite with CUDA present, and every benchmark.
# Full logs go to the folder given as the first argument; a summary is printed last.
#   bash scripts/gpu_check.sh OUT_DIR [pytest args...]  (test files among them: those alone)
# Switches: BENCH=0 skips the benchmarks, BENCHES="a b" runs only benchmarks/bench_{a,b}.py,
# PYTEST_JOBS=J runs the tests in J processes, GTEST_SHARDS=S the CUDA GoogleTests in S (4),
# AB="x y" first builds and runs the standalone A/B harnesses benchmarks/ab_{x,y}.cu (sm_90),
# GTEST=0 skips the GoogleTests (a short call: the pytest suite alone), PYTEST=0 the pytest suite,
# BUILD=0 the build (a second call on the tree an earlier one built), AB_TIMEOUT=S stops each
# harness after S seconds (300).
set -u
out=${1:?usage: gpu_check.sh OUT_DIR [pytest args]}
shift
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
jobs=$(nproc)
summary=()
step() {  # step NAME LOG COMMAND...: runs a command, logs it, records pass/fail
  local name=$1 log=$2
  shift 2
  local t0=$SECONDS
  "$@" >"$out/$log" 2>&1
  local rc=$?
  summary+=("$(printf '%-12s %-5s %4ss  %s' "$name" "$([ $rc -eq 0 ] && echo ok || echo FAIL)" $((SECONDS - t0)) "$log")")
  return $rc
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$out/gpu.txt" 2>&1
# The interpreter that holds torch builds and installs (a bare `pip` may belong to another).
if python3 -m pip --version >/dev/null 2>&1; then
  build=(python3 -m pip install --no-build-isolation --no-deps -v -e .)
else
  build=(python3 setup.py build_ext --inplace)
fi
build_failed() { tail -40 "$out/build.log"; printf '%s\n' "${summary[@]}"; exit 1; }
# The A/B harnesses first, each built beside the others (one compiler process each) and run
# alone: they time kernels against each other, and their verdicts (equal outputs, the fastest
# setting) are their last lines. The library builds meanwhile on all but four cores (the
# harnesses' timings are the GPU's; their host threads only queue launches).
if [ -n "${AB:-}" ]; then
  mkdir -p build/ab
  build_pid=
  if [ "${BUILD:-1}" = 1 ]; then
    build_t0=$SECONDS
    env MAX_JOBS=$((jobs > 8 ? jobs - 4 : jobs)) "${build[@]}" >"$out/build.log" 2>&1 &
    build_pid=$!
  fi
  nvcc_pids=()
  for h in $AB; do
    nvcc -std=c++17 -O3 -DNDEBUG --expt-relaxed-constexpr -arch=sm_90 -Ikernels/include -Ikernels/cuda \
      -Ikernels -o "build/ab/$h" "benchmarks/ab_$h.cu" kernels/cuda/common/launch.cu \
      kernels/cuda/common/device_caps.cu $(grep -q '<cublas_v2.h>' "benchmarks/ab_$h.cu" && echo -lcublas) \
      >"$out/ab_$h.build.log" 2>&1 &
    nvcc_pids+=($!)
  done
  for pid in "${nvcc_pids[@]}"; do wait "$pid"; done
  for h in $AB; do step "ab_$h" "ab_$h.log" timeout "${AB_TIMEOUT:-300}" "build/ab/$h"; done
  if [ -n "$build_pid" ]; then
    wait "$build_pid"
    rc=$?
    summary+=("$(printf '%-12s %-5s %4ss  %s' build "$([ $rc -eq 0 ] && echo ok || echo FAIL)" \
      $((SECONDS - build_t0)) build.log)")
    [ $rc -eq 0 ] || build_failed
  fi
elif [ "${BUILD:-1}" = 1 ]; then
  step build build.log env MAX_JOBS=$jobs "${build[@]}" || build_failed
fi
# The GoogleTest binaries run directly (one process per test, as ctest runs them, pays a CUDA
# context per test): the CPU kernels' at once, the CUDA launchers' in GTEST_SHARDS shards side by
# side.
run_gtests() {
  cmake -S . -B build/cmake -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_BUILD_TYPE=Release \
    && cmake --build build/cmake -j$jobs || return 1
  local rc=0 s shards=${GTEST_SHARDS:-4} pids=()
  build/cmake/bnb_kernel_tests || rc=1
  [ -x build/cmake/bnb_kernel_cuda_tests ] || return $rc
  for ((s = 0; s < shards; s++)); do
    GTEST_TOTAL_SHARDS=$shards GTEST_SHARD_INDEX=$s build/cmake/bnb_kernel_cuda_tests >"$out/gtest_cuda.$s.log" 2>&1 &
    pids+=($!)
  done
  for s in "${pids[@]}"; do wait "$s" || rc=1; done
  for ((s = 0; s < shards; s++)); do cat "$out/gtest_cuda.$s.log"; rm -f "$out/gtest_cuda.$s.log"; done
  return $rc
}
[ "${GTEST:-1}" = 1 ] && step gtest gtest.log run_gtests
step selfcheck selfcheck.log python3 -m bitsandbytes
# PYTEST_JOBS=J deals the collected tests round-robin over J processes sharing the GPU (each
# file's tests spread over all of them, so that no process holds the long files alone; their
# logs follow one another in pytest.log); the default is one process.
run_pytest() {
  local j=${PYTEST_JOBS:-1} i rc=0 pids=() targets=(tests) a
  # The whole suite unless the arguments name test files or tests of their own.
  for a in "$@"; do [ -e "${a%%::*}" ] && targets=(); done
  if [ "$j" -le 1 ]; then python3 -m pytest -q -rs -p no:cacheprovider "$@" "${targets[@]}"; return; fi
  python3 -m pytest --collect-only -q -p no:cacheprovider "$@" "${targets[@]}" | grep '::' >"$out/tests.txt" || return 1
  awk -v j="$j" -v dir="$out" '{ print > (dir "/tests." ((NR - 1) % j) ".txt") }' "$out/tests.txt"
  for ((i = 0; i < j; i++)); do
    [ -s "$out/tests.$i.txt" ] || continue
    local ids=()
    mapfile -t ids <"$out/tests.$i.txt"
    python3 -m pytest -q -rs -p no:cacheprovider "$@" "${ids[@]}" >"$out/pytest.$i.log" 2>&1 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
  for ((i = 0; i < j; i++)); do
    [ -f "$out/pytest.$i.log" ] && cat "$out/pytest.$i.log"
    rm -f "$out/pytest.$i.log" "$out/tests.$i.txt"
  done
  rm -f "$out/tests.txt"
  return $rc
}
[ "${PYTEST:-1}" = 1 ] && step pytest pytest.log run_pytest "$@"
if [ "${BENCH:-1}" = 1 ]; then
  for b in benchmarks/bench_*.py; do
    name=$(basename "$b" .py); name=${name#bench_}
    [ "$name" = common ] && continue
    if [ -n "${BENCHES:-}" ] && ! grep -qw "$name" <<<"$BENCHES"; then continue; fi
    step "$name" "bench_$name.log" python3 "$b" --out "$out"
  done
fi

echo "== gpu: $(cat "$out/gpu.txt")"
echo "== self-check: $(grep VERDICT "$out/selfcheck.log")"
echo "== pytest: $(grep -E '(passed|failed|error)' "$out/pytest.log" | grep -E '^[0-9=]|in [0-9.]+s' | tr '\n' ' ')"
grep -E "^(FAILED|ERROR)" "$out/pytest.log" | head -20
echo "== gtest: $(grep -E '^\[  PASSED  \]' "$out/gtest.log" 2>/dev/null | tr '\n' ' ')"
grep -E "^\[  FAILED  \]" "$out/gtest.log" 2>/dev/null | head -20
for f in "$out"/ab_*.log; do
  case $f in *.build.log) continue ;; esac
  echo "== $(basename "$f")"
  tail -6 "$f"
done
for f in "$out"/bench_*.log; do
  [ -f "$f" ] || continue
  echo "== $(basename "$f")"
  sed -n '/^device:/,$p' "$f" | tail -40
  grep -E "Error|error" "$f" | tail -3
done
printf '%s\n' "${summary[@]}"
