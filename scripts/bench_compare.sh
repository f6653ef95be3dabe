#!/usr/bin/env bash
# On a CUDA machine: builds a baseline tree beside this checkout and runs the same benchmarks on
# both, alternating base and new, in one run, so that every number has its same-run baseline.
#   git archive -o base.tar REF          # on a machine with the repository
#   bash scripts/bench_compare.sh base.tar OUT "optimizers" "int8 --quick" ...
# Each argument after OUT is a benchmark name (benchmarks/bench_NAME.py) and its arguments; logs
# go to OUT/{base,new}_NAME.log and the JSON each writes to OUT/{base,new}/. The checkout itself
# must be built already (scripts/gpu_check.sh, or setup.py build_ext --inplace).
set -u
tar=${1:?usage: bench_compare.sh BASE_TAR OUT BENCH...}
out=${2:?usage: bench_compare.sh BASE_TAR OUT BENCH...}
shift 2
cd "$(dirname "$0")/.."
mkdir -p "$out/base" "$out/new"
base=${BASE_DIR:-/tmp/bnb-base}
if [ ! -f "$base/bitsandbytes/_build_info.json" ]; then
  rm -rf "$base" && mkdir -p "$base" && tar -xf "$tar" -C "$base"
  (cd "$base" && TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=$(nproc) \
    python3 setup.py build_ext --inplace >"$out/base_build.log" 2>&1) || { tail -20 "$out/base_build.log"; exit 1; }
fi
export PYTHONUNBUFFERED=1
for spec in "$@"; do
  read -r name args <<<"$spec"
  for side in base new; do
    dir=$([ $side = base ] && echo "$base" || pwd)
    # shellcheck disable=SC2086
    (cd "$dir" && python3 "benchmarks/bench_$name.py" --out "$out/$side" $args) >"$out/${side}_$name.log" 2>&1 \
      || echo "bench $name ($side) failed: see ${side}_$name.log"
  done
done
