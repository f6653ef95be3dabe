#!/usr/bin/env bash
# On a CUDA machine, after a cmake build (build/cmake, as scripts/gpu_check.sh makes it): the CUDA
# kernels' GoogleTests under compute-sanitizer, each tool's run split into shards that run side by
# side. Logs go to OUT_DIR; a line per shard and tool is printed last (tests passed, errors or
# hazards reported, whether the shard finished).
#   bash scripts/sanitize.sh OUT_DIR [TOOLS] [SHARDS] [LIMIT_S]
# TOOLS defaults to "memcheck initcheck racecheck", SHARDS to 6, LIMIT_S (per shard) to 600.
set -u
out=${1:?usage: sanitize.sh OUT_DIR [TOOLS] [SHARDS] [LIMIT_S]}
tools=${2:-memcheck initcheck racecheck}
shards=${3:-6}
limit=${4:-600}
cd "$(dirname "$0")/.."
bin=build/cmake/bnb_kernel_cuda_tests
[ -x "$bin" ] || { echo "no $bin: build with cmake first (scripts/gpu_check.sh does)"; exit 1; }
mkdir -p "$out"
for tool in $tools; do
  for ((s = 0; s < shards; s++)); do
    GTEST_TOTAL_SHARDS=$shards GTEST_SHARD_INDEX=$s timeout "$limit" \
      compute-sanitizer --tool "$tool" --print-limit 20 "$bin" >"$out/$tool.$s.log" 2>&1 &
  done
  wait  # one tool at a time: the shards of one tool already fill the GPU and the cores
done
for tool in $tools; do
  for ((s = 0; s < shards; s++)); do
    f="$out/$tool.$s.log"
    summary=$(grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$f" | tail -1)
    printf '%-9s shard %d: %4d tests passed, %s\n' "$tool" "$s" "$(grep -c '\[       OK \]' "$f")" \
      "${summary:-no summary (stopped by the time limit)}"
  done
done
