#!/usr/bin/env bash
# The GPU benchmark, for a machine with CUDA (never needed by the tests): about 3-5 minutes.
# Usage from the repository root: bash benchmarks/gpu.sh   (writes results/bench-gpu.json)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3.11 -m venv .venv && .venv/bin/pip install -q -e '.[dev]'
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
.venv/bin/python -m seglib.bench --device cuda --reps 5 --json results/bench-gpu.json
