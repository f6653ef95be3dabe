#!/usr/bin/env bash
# The main job: sets up (scripts/setup.sh), shows what was built and self-checks every op, then
# trains a small language model twice (torch AdamW and bnb AdamW8bit) and compares them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python3 -m bitsandbytes
