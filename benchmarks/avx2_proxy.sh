#!/usr/bin/env bash
# Runs a command as on a CPU with AVX2 and without native bf16 (the Zen 3 kind), on a CPU with more:
# oneDNN and ATen take their AVX2 kernels, and every Python process it starts sees no native bf16, so
# seglib picks fp32 and probes the memory formats among those kernels. What it reproduces is which
# kernels run and which format wins, not that CPU's speed (docs/performance.md, "The same kernels on an
# AVX-512 CPU"): never report its times as the Zen 3 kind's.
#
#   bash benchmarks/avx2_proxy.sh .venv/bin/python -m seglib.workbook --profile quick --results_dir /tmp/wbq
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export PYTHONPATH="$here/avx2_proxy${PYTHONPATH:+:$PYTHONPATH}" ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2
# the memory-format probe's answers under the proxy are kept apart from this CPU's own
export SEGLIB_PROBE_CACHE="${SEGLIB_PROBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/seglib/fastpath-avx2-proxy.json}"
exec "$@"
