#!/usr/bin/env bash
# The wheels that benchmarks/gpu_workbook.sh (and gpu.sh) install on an offline GPU machine whose image has
# CUDA PyTorch, OpenCV, pandas, matplotlib and seaborn but not albumentations, papermill, ipykernel or
# ipywidgets (or kornia, torchcodec). Run here (where the package index is reached), from the repository root:
#   bash benchmarks/gpu_wheels.sh            # -> .whl/ (git-ignored), 44 wheels, 29 MB
#   SKIP=torchcodec bash benchmarks/gpu_wheels.sh   # 43 wheels, 19.5 MB: room for the real sample (38 MB)
#                                                   # in a run's 64 MiB; Pillow then decodes every file
# Each package at the version .venv has (the versions the tests run with), for CPython 3.12 on x86-64
# Linux (GPU_PYTHON=3.11 for another). The list is the four packages and what they need, less what that
# image already holds (docs/gpu.md).
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${DEST:-.whl}
PACKAGES="albumentations albucore pydantic pydantic-core annotated-types typing-inspection typing-extensions
simsimd stringzilla kornia kornia-rs torchcodec
papermill nbclient nbformat fastjsonschema jsonschema jsonschema-specifications referencing rpds-py
jupyter-client jupyter-core platformdirs pyzmq tornado traitlets entrypoints tenacity
ipykernel comm ipython ipython-pygments-lexers matplotlib-inline nest-asyncio2 pexpect
ptyprocess prompt-toolkit wcwidth stack-data asttokens executing pure-eval ipywidgets jupyterlab-widgets"
# Left out, to stay inside a device run's 64 MiB with the real sample (38 MB): debugpy, jedi and
# widgetsnbextension (12 MB together), which ipykernel, IPython and ipywidgets import only when present.
pins=()
for name in $PACKAGES; do
  case " ${SKIP:-} " in *" $name "*) continue ;; esac
  version=$(.venv/bin/python -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")
  pins+=("$name==$version")
done
mkdir -p "$DEST"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version "${GPU_PYTHON:-3.12}" \
  --implementation cp "${platforms[@]}" -d "$DEST" "${pins[@]}"
du -sh "$DEST"
