#!/usr/bin/env bash
# Issue 18's rehearsal on one GPU, inside one 10-minute command: a synthetic set the size of the release
# (3680 trainval + 3669 test images), notebooks 02, 03 and 04 under the `gpu` profile, and a table
# (seconds per notebook, images/s per epoch, GPU memory, evaluation seconds, Dice); then, when the real
# sample is there and the time allows, both models at the original's size on it with the original and
# the recommended recipe (notebook 06, fixed epochs), and their test Dice. Every table is printed and
# written to $OUT (fullscale.md, fullscale.json, log.txt) as soon as it is done.
#
# Usage from the repository root (docs/gpu.md says how to make the wheels and carry the sample):
#   SEGLIB_WHEELS=.whl bash benchmarks/gpu_workbook.sh
#   PARTS=sample SEGLIB_WHEELS=.whl bash benchmarks/gpu_workbook.sh     # the sample part alone
# Settings (environment): OUT (results/gpu-workbook), PARTS ("workbook" runs both parts; "sample"),
# SEGLIB_PROFILE (gpu), SEGLIB_DEVICE (auto), SEGLIB_N_TRAINVAL / SEGLIB_N_TEST (3680 / 3669),
# SEGLIB_WORKDIR (/tmp/seglib-gpu-workbook; a set already there is reused), SEGLIB_SAMPLE
# (data/oxford-pet-sample), SEGLIB_SAMPLE_EPOCHS (30), SEGLIB_SAMPLE_MODELS (unet,resnet34_unet),
# SEGLIB_DEADLINE_S (570: the sample part starts only if 240 s of it are left; 0: no limit), SEGLIB_PYTHON.
# Python: SEGLIB_PYTHON, else .venv if there is one, else python3 (an offline GPU box with CUDA PyTorch:
# seglib is taken from this tree, the missing pure packages from the wheels in SEGLIB_WHEELS).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/gpu-workbook}
mkdir -p "$OUT"
PY=${SEGLIB_PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [ -n "${SEGLIB_WHEELS:-}" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/seglib-site "$SEGLIB_WHEELS"/*.whl
  export PYTHONPATH="$PYTHONPATH:/tmp/seglib-site"
fi
# What the notebooks need, said before any work (the GPU image lacks the first four and their needs; it
# has the last row, which the carried wheels need).
"$PY" - <<'EOF'
import importlib.util
import sys

need = ["albumentations", "papermill", "ipykernel", "ipywidgets", "kornia", "nbclient", "nbformat", "jupyter_client",
        "zmq", "IPython", "pydantic", "albucore", "cv2", "torch", "pandas", "matplotlib", "seaborn", "tqdm",
        "scipy", "yaml", "attrs", "requests", "click", "pygments"]
missing = [name for name in need if importlib.util.find_spec(name) is None]
if missing:
    sys.exit(f"gpu_workbook: missing Python packages: {', '.join(missing)}. Make a folder of wheels with "
             "`bash benchmarks/gpu_wheels.sh` (on a machine with the package index) and pass SEGLIB_WHEELS=.whl")
import torch

print(f"gpu_workbook: {sys.executable} {sys.version.split()[0]}, torch {torch.__version__}, "
      f"CUDA {torch.version.cuda}, GPU: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}")
EOF
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
mode=workbook
[ "${PARTS:-workbook}" = sample ] && mode=sample
deadline=${SEGLIB_DEADLINE_S:-570}  # counted from this script's start; 0: none
[ "$deadline" != 0 ] && deadline=$(( deadline - SECONDS > 1 ? deadline - SECONDS : 1 ))
"$PY" -m seglib.fullscale "$mode" \
  --profile "${SEGLIB_PROFILE:-gpu}" --device "${SEGLIB_DEVICE:-auto}" \
  --n_trainval "${SEGLIB_N_TRAINVAL:-3680}" --n_test "${SEGLIB_N_TEST:-3669}" \
  --workdir "${SEGLIB_WORKDIR:-/tmp/seglib-gpu-workbook}" --out "$OUT" \
  --sample "${SEGLIB_SAMPLE-data/oxford-pet-sample}" --sample_epochs "${SEGLIB_SAMPLE_EPOCHS:-30}" \
  --sample_models "${SEGLIB_SAMPLE_MODELS:-unet,resnet34_unet}" \
  --deadline_s "$deadline" 2>&1 | tee "$OUT/log.txt"
