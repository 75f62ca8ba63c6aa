#!/usr/bin/env bash
# Issues 22 and 23 on the 2-core CPU at hand, in one prepared script (never needed by the tests). Each part
# writes into $OUT/<part>/ and a line (rc, seconds) to $OUT/log.txt; then
#   .venv/bin/python benchmarks/cpu_kind_rows.py        # the issues' goals checked, rows for docs/ CSVs
# Parts, in the order given (default: all, most wanted first; about 3 hours on the fp32 kind, so split
# them over sessions where needed):
#   epochs    the epochs a 12-minute budget buys per model (benchmarks/budget_epochs.py), ~5 min
#   pace      an epoch's seconds per model and size, 64-160 px (benchmarks/epoch_pace.py): what the
#             fp32 proxy rows of docs/experiments/recipe_study.md assumed, ~6 min
#   unet      notebook 06 for the UNet: the study side by side (seed 42, budgets 1-12 min), then the
#             recommended 12-minute run of seeds 7 and 1, ~70 min
#   bench     python -m seglib.bench, full (issue 23's table), ~15-25 min
#   workbook  the quick workbook (make workbook's command) with a fresh probe cache, ~5-15 min
#   resnet    as unet, for the ResNet34-UNet, ~70 min
#   tta       the recommended runs of unet and resnet scored on validation with and without multi-scale
#             TTA (benchmarks/tta_scales.py --evaluate: $OUT/tta.csv; the test images not read), ~2 min
# Usage from the repository root, on a quiet machine (budgets are minutes of this machine's time):
#   bash benchmarks/cpu_kind.sh [PART ...]
# Settings (environment): OUT (results/cpu-kind), SAMPLE (../shared/data/oxford-pet-sample),
# SEEDS (7 1: the seeds after the study's 42), BUDGETS (the study's: 1,2,3,6,12) and SEED_BUDGET (12);
# BENCH_ARGS (e.g. --quick). A rehearsal of every part in about 25 minutes:
#   BUDGETS=0.5,1 SEED_BUDGET=0.5 SEEDS=7 BENCH_ARGS=--quick OUT=/tmp/cpu-kind bash benchmarks/cpu_kind.sh
set -uo pipefail
cd "$(dirname "$0")/.."
# absolute: the notebooks run in notebooks/, where a relative SEGLIB_PROBE_CACHE would land
OUT=$(realpath -m "${OUT:-results/cpu-kind}")
SAMPLE=${SAMPLE:-../shared/data/oxford-pet-sample}
PY=.venv/bin/python
[ -x "$PY" ] || { echo "cpu_kind: no .venv; run make test-fast (or make workbook) once first" >&2; exit 2; }
[ -d "$SAMPLE" ] || { echo "cpu_kind: the real sample is not at $SAMPLE; set SAMPLE=..." >&2; exit 2; }
mkdir -p "$OUT"
ALLOC=$("$PY" -m seglib.jemalloc)  # jemalloc where installed, as make workbook and make lab run
study=(--profile recommended --dataset oxford-pet --data_root "$SAMPLE" --only 06_recipe_study.ipynb)
[ -n "${BUDGETS:-}" ] && study+=(--param "budgets=$BUDGETS")

step() {  # step NAME COMMAND...: run it, its output to $OUT/NAME.log, one line to $OUT/log.txt
  local name=$1 t0=$SECONDS rc
  shift
  echo "cpu_kind: $name ($(date -u +%H:%M:%S) UTC)"
  env $ALLOC "$@" >"$OUT/$name.log" 2>&1
  rc=$?
  echo "$name rc=$rc seconds=$((SECONDS - t0)) ended $(date -u +%FT%TZ)" >>"$OUT/log.txt"
  [ $rc = 0 ] || echo "cpu_kind: $name failed (rc $rc); see $OUT/$name.log" >&2
}

model_part() {  # model_part unet|resnet34_unet
  local m=$1 extra=()
  [ "$m" = unet ] && extra=(--param model_name=unet)
  step "$m-study" "$PY" -m seglib.workbook "${study[@]}" "${extra[@]}" --results_dir "$OUT/$m-study"
  for seed in ${SEEDS:-7 1}; do
    step "$m-seed$seed" "$PY" -m seglib.workbook "${study[@]}" "${extra[@]}" --results_dir "$OUT/$m-seed$seed" \
      --param recipes=recommended --param "budgets=${SEED_BUDGET:-12}" --param "seed=$seed" --param checkpoint_every=1000
  done
}

"$PY" -c 'from seglib.engine.runtime import cpu_kind; print("cpu_kind:", cpu_kind())' | tee "$OUT/machine.txt"
echo "flags: $(grep -m1 -o -w 'avx512_bf16\|amx_bf16' /proc/cpuinfo | tr '\n' ' ')" >>"$OUT/machine.txt"
# the code measured: this commit, "+changes" where the tree differs from it
echo "start $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo +changes)" >>"$OUT/log.txt"
for part in "${@:-epochs pace unet bench workbook resnet tta}"; do
  for p in $part; do
    case $p in
      epochs) step epochs "$PY" benchmarks/budget_epochs.py auto "$SAMPLE/oxford-iiit-pet" ;;
      pace) step pace "$PY" benchmarks/epoch_pace.py "$SAMPLE/oxford-iiit-pet" ;;
      unet) model_part unet ;;
      resnet) model_part resnet34_unet ;;
      bench) step bench "$PY" -m seglib.bench ${BENCH_ARGS:-} --json "$OUT/bench.json" ;;
      workbook) rm -f "$OUT/probe.json"
        step workbook env SEGLIB_PROBE_CACHE="$OUT/probe.json" "$PY" -m seglib.workbook --profile quick \
          --results_dir "$OUT/workbook" ;;
      tta) step tta "$PY" benchmarks/tta_scales.py "$OUT/*-study/runs/recipe-recommended-*/" \
          "$OUT/*-seed*/runs/recipe-recommended-*/" \
          --root "$SAMPLE/oxford-iiit-pet" --evaluate --csv "$OUT/tta.csv" ;;
      *) echo "cpu_kind: unknown part $p (epochs, pace, unet, bench, workbook, resnet, tta)" >&2; exit 2 ;;
    esac
  done
done
echo "cpu_kind: done; $OUT/log.txt; next: $PY benchmarks/cpu_kind_rows.py $OUT"
