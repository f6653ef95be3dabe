#!/usr/bin/env bash
# On a CUDA machine, after the extension is built: Nsight Compute on the fused 4-bit product,
# one launch of the kernel that linear_4bit picks for M tokens through an N x K layer (bf16, NF4,
# blocks of 64, nested scales), with the sections that say what bounds it: each unit's share of
# its peak, occupancy, the warps' stall reasons, shared-memory and cache traffic. A report per
# case goes to OUT_DIR (open it with ncu-ui); the key lines of each are printed.
#   bash scripts/profile_4bit.sh OUT_DIR [M:N:K ...]   (default: 1:8192:8192 16:8192:8192 64:4096:4096)
# NCU_SET=full collects every section instead (each unit's breakdown, the source counters); either
# way each report's details and raw metrics are also written as text beside it.
set -u
out=${1:?usage: profile_4bit.sh OUT_DIR [M:N:K ...]}
shift
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(1:8192:8192 16:8192:8192 64:4096:4096)
cd "$(dirname "$0")/.."
mkdir -p "$out"
# The product profiled: M tokens through an N x K layer, three calls.
program='
import sys
import torch
import bitsandbytes.functional as F

m, n, k = map(int, sys.argv[1:4])
g = torch.Generator(device="cuda").manual_seed(0)
W = torch.randn(n, k, device="cuda", dtype=torch.bfloat16, generator=g)
packed, state = F.quantize_4bit(W, blocksize=64, quant_type="nf4", compress_statistics=True)
A = torch.randn(m, k, device="cuda", dtype=torch.bfloat16, generator=g)
for _ in range(3):
    F.linear_4bit(A, packed, state)
torch.cuda.synchronize()
'
for c in "${cases[@]}"; do
  IFS=: read -r m n k <<<"$c"
  name="linear4bit_m${m}_n${n}_k${k}"
  # Two launches warm up (tables, caches, lazy module loading); the third is profiled. The
  # stall-reason metrics are asked for by pattern; where this ncu does not know it, the run
  # goes again without them.
  stalls=(--metrics 'regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio')
  sections=(--section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats
    --section MemoryWorkloadAnalysis --section SchedulerStats)
  [ -n "${NCU_SET:-}" ] && sections=(--set "$NCU_SET")
  for attempt in 1 2; do
    ncu --kernel-name regex:gemm_4bit --launch-skip 2 --launch-count 1 \
      "${sections[@]}" "${stalls[@]}" -o "$out/$name" -f \
      python3 -c "$program" "$m" "$n" "$k" >"$out/$name.log" 2>&1 && break
    stalls=()
  done
  echo "== $name"
  # The kernel, its time, each unit's share of its peak, occupancy, issue, and the stall reasons
  # that cost at least a tenth of a cycle an issued instruction.
  ncu --import "$out/$name.ncu-rep" --print-units base 2>/dev/null | grep -E \
    "gemm_4bit|Duration|Throughput|Registers Per Thread|Achieved Occupancy|Issue Slots Busy|Warp Cycles|issue_stalled" \
    | awk '!/issue_stalled/ || $NF + 0 >= 0.1' | sed 's/smsp__average_warps_issue_stalled_//; s/_per_issue_active.ratio//'
  tail -3 "$out/$name.log" | grep -iE "error|warn" || true
  ncu --import "$out/$name.ncu-rep" --page details --print-details all >"$out/$name.details.txt" 2>&1
  ncu --import "$out/$name.ncu-rep" --page raw --csv >"$out/$name.raw.csv" 2>&1
done
