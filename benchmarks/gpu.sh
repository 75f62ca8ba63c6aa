#!/usr/bin/env bash
# The GPU benchmark, for a machine with CUDA (never needed by the tests): about 8 minutes, 5 with
# PROFILE=0 (H200, 2026-12-04: about 300 s with the CUDA-graphs rows; ONLY=eval about 90 s).
# Usage from the repository root: bash benchmarks/gpu.sh   (writes results/bench-gpu.json and
# results/profile-*.csv; PROFILE=0 leaves the profiles out; on a device machine set SEGLIB_COMMIT to the
# commit the tree holds, which the profiles' CSV rows name; ONLY=eval (or steps,data,epochs) runs those rows)
# Python: .venv if there is one; else a python3 that already has CUDA PyTorch (an offline GPU box),
# with seglib taken from this tree and any missing pure dependencies installed from SEGLIB_WHEELS
# (a folder of wheels, e.g. albumentations and its needs); else a new .venv from the package index.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
if [ ! -x "$PY" ]; then
  if python3 -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
    PY=python3
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    if [ -n "${SEGLIB_WHEELS:-}" ] && ! python3 -c 'import albumentations' 2>/dev/null; then
      python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/seglib-site "$SEGLIB_WHEELS"/*.whl
      export PYTHONPATH="$PYTHONPATH:/tmp/seglib-site"
    fi
  else
    python3.11 -m venv .venv && .venv/bin/pip install -q -e '.[dev]'
  fi
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
"$PY" -c 'from seglib.data.decode import DECODER; print("images decoded by", DECODER)'
"$PY" -m seglib.bench --device cuda --compile --reps "${REPS:-5}" --json "${JSON:-results/bench-gpu.json}" \
  --only "${ONLY:-steps,data,epochs,eval}"
# Where the step's time goes (torch.profiler), at the bench's batch sizes: about a minute for both.
if [ "${PROFILE:-1}" = 1 ]; then
  for spec in "resnet34_unet 64" "unet 32"; do
    set -- $spec
    "$PY" benchmarks/profile_step.py --device cuda --model "$1" --image_size 256 --batch_size "$2" \
      --csv "results/profile-$1-256.csv"
  done
fi
