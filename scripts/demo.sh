#!/usr/bin/env bash
# The main job: sets up (scripts/setup.sh), shows what was built and self-checks every op, then
# trains a small GPT-style language model on the Python standard library's own source files
# once per seed with each of torch.optim.AdamW, bnb.optim.AdamW8bit and bnb.optim.AdamW4bit, and compares loss curves
# and optimizer-state memory (plot and numbers under examples/out). Runs on CUDA when present.
# Extra arguments go to examples/train_lm.py (e.g. --steps 300 --seeds 0).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python3 -m bitsandbytes
python3 examples/train_lm.py "$@"
