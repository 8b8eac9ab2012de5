#!/bin/bash
# The L4GM family's GPU session in one command (one lease): install the carried wheels, compile gsplat
# once, then
#   1. (if a pack of rendered clips was carried) train both families for the SAME minutes of training wall
#      time and score each on the same held-out clips with its own protocol: 4D-LRM `small` from 4 sparse
#      views, `l4gm-small` from a monocular video + 3 t0 views, at 64 px, with the baselines; with 2+ GPUs
#      the two runs go at the same time, one per GPU (CUDA_VISIBLE_DEVICES=0 / 1), else one after the other;
#   2. speed: training step and 16-frame inference per preset (l4gm_speed.json), then the L4GM GPU tests
#      (render-path parity gsplat vs torch twin, compiled blocks vs eager: parity.txt), and beside them (2+
#      GPUs: on GPU 1) l4gm-base's head-dim question, 64 vs 128 under the attention backends (l4gm_headdim.json).
# Every stage is guarded by the budget (seconds of command wall time); a failing stage does not stop the
# next. At most 8 files come back under $OUT: suite.log, env.txt, learn_lrm4d.json, learn_l4gm.json,
# learn_table.md, parity.txt, l4gm_speed.json, l4gm_headdim.json.
#
#   device run, carry [".whl", ".trainpack"]:  bash benchmarks/l4gm_gpu_suite.sh [BUDGET_S]   (default 500)
#   env: LEARN_MIN fixes each family's training minutes (default: what the budget leaves, at most 2);
#   SKIP_LEARN=1, SKIP_PARITY=1, SKIP_SPEED=1 skip a stage; BENCH_ARGS adds to the per-preset speed run;
#   LRM4D_PRESET / L4GM_PRESET / LEARN_SETS / CALIB_STEPS replace the learning runs' presets, --set arguments
#   and calibration steps (40).
#   .whl:       gsplat 1.5.3, webdataset 1.0.2, braceexpand 0.1.7 wheels for Python 3.12 (see README)
#   .trainpack: train/ and heldout/ dataset folders rendered by `pipeline render` (optional)
set -u
BUDGET=${1:-500}
OUT=${OUT:-/tmp/l4gm_suite_out}
mkdir -p "$OUT"
START=$(date +%s)
LOG="$OUT/suite.log"
elapsed() { echo $(( $(date +%s) - START )); }
left() { echo $(( BUDGET - $(elapsed) )); }
note() { echo "[$(elapsed)s] $*" | tee -a "$LOG"; }

. benchmarks/device_env.sh; device_env "$LOG" || { note "wheel install failed"; exit 1; }
NGPU=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
# side by side on 2 GPUs, each side gets its own half of the cores (equal minutes should mean equal hosts)
NC=$(nproc --all); H=$(( NC / 2 )); PIN=("" "")
if [ "$NGPU" -ge 2 ] && command -v taskset >/dev/null && [ "$NC" -ge 4 ]; then
  PIN=("taskset -c 0-$(( H - 1 ))" "taskset -c $H-$(( NC - 1 ))")
  export TORCHINDUCTOR_COMPILE_THREADS=$(( H / 2 > 1 ? H / 2 : 1 ))
fi
{
  date -u; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv; nproc
  python3 -c "import torch, gsplat; print('torch', torch.__version__, 'gsplat', gsplat.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
  git log -1 --format='tree at %h %s' 2>/dev/null; git status --short 2>/dev/null | head -20
} >"$OUT/env.txt" 2>&1
note "$NGPU GPU(s), $NC cores (sides pinned: ${PIN[0]:-no} / ${PIN[1]:-no}); budget ${BUDGET}s"

note "compiling gsplat"
{ time python3 -c "from gsplat.cuda._backend import _C; print('gsplat CUDA extension:', _C)"; } >>"$LOG" 2>&1

# -- 1. learning runs at equal training minutes --------------------------------------------------------
learn() {  # family preset gpu minutes timeout
  CUDA_VISIBLE_DEVICES=$3 timeout "$5" ${PIN[$3]:-} python3 benchmarks/gpu_learn.py --train .trainpack/train \
    --heldout .trainpack/heldout --out /tmp/learn_$1 --run /tmp/learn_run_$1 --train-minutes "$4" \
    --calib-steps "${CALIB_STEPS:-40}" \
    --preset "$2" ${LEARN_SETS:---set data.image_size=64 --set data.num_workers=10 --set batch_size=16} \
    >/tmp/learn_$1.log 2>&1
  echo "exit $?" >>/tmp/learn_$1.log
}
LRM4D_PRESET=${LRM4D_PRESET:-small} L4GM_PRESET=${L4GM_PRESET:-l4gm-small}
SPEED_RESERVE=$([ -n "${SKIP_SPEED:-}" ] && echo 0 || echo 170)
if [ -z "${SKIP_LEARN:-}" ] && [ -d .trainpack/train ] && [ -d .trainpack/heldout ]; then
  # per run: ~60 s calibration (compiles) + the minutes + ~70 s set-up and scoring of held-out and training clips
  MIN=${LEARN_MIN:-$(python3 -c "print(round(max(0.0, min(2.0, ($(left) - $SPEED_RESERVE - 130) / 60)), 2))")}
  if [ -z "${LEARN_MIN:-}" ] && [ "$NGPU" -lt 2 ]; then MIN=$(python3 -c "print(round($MIN / 2, 2))"); fi
  LIMIT=$(python3 -c "print(int($MIN * 60 + 240))")
  if python3 -c "import sys; sys.exit(0 if $MIN >= 0.5 else 1)"; then
    if [ "$NGPU" -ge 2 ]; then
      note "learning runs in parallel, $MIN training minutes each: $LRM4D_PRESET on GPU 0, $L4GM_PRESET on GPU 1"
      learn lrm4d "$LRM4D_PRESET" 0 "$MIN" "$LIMIT" & learn l4gm "$L4GM_PRESET" 1 "$MIN" "$LIMIT" & wait
    else
      note "learning runs one after the other on one GPU, $MIN training minutes each"
      learn lrm4d "$LRM4D_PRESET" 0 "$MIN" "$LIMIT"; learn l4gm "$L4GM_PRESET" 0 "$MIN" "$LIMIT"
    fi
    for fam in lrm4d l4gm; do
      { echo "----- learning run $fam"; tail -60 /tmp/learn_$fam.log; } >>"$LOG"
      cp /tmp/learn_$fam/learn.json "$OUT/learn_$fam.json" 2>/dev/null
      note "learn $fam: $(test -s "$OUT/learn_$fam.json" && echo ok || echo missing) ($(tail -1 /tmp/learn_$fam.log))"
    done
    python3 benchmarks/gpu_learn.py --table "$OUT/learn_table.md" "$OUT"/learn_lrm4d.json "$OUT"/learn_l4gm.json \
      >>"$LOG" 2>&1
  else
    note "learning runs skipped: ${MIN} minutes would be too short ($(left)s left)"
  fi
fi

# -- 2. speed, parity, head dim ----------------------------------------------------------------------------
parity() {
  local L; L=$(left)
  if [ -z "${SKIP_PARITY:-}" ] && [ "$L" -gt 60 ]; then
    CUDA_VISIBLE_DEVICES=$1 timeout $(( L < 125 ? L - 5 : 120 )) python3 -m pytest -q -p no:cacheprovider -o addopts="" \
      tests/training/test_l4gm_gpu.py >"$OUT/parity.txt" 2>&1
    note "parity: $(tail -1 "$OUT/parity.txt")"
  fi
}
speed() {  # gpu timeout
  CUDA_VISIBLE_DEVICES=$1 timeout "$2" ${PIN[$1]:-} python3 benchmarks/bench_l4gm_gpu.py --out "$OUT/l4gm_speed.json" \
    ${BENCH_ARGS:-} >/tmp/speed.log 2>&1
  note "speed: $(test -s "$OUT/l4gm_speed.json" && echo ok || echo missing)"
}
headdim() {  # gpu timeout
  CUDA_VISIBLE_DEVICES=$1 timeout "$2" ${PIN[$1]:-} python3 benchmarks/bench_l4gm_gpu.py --out "$OUT/l4gm_headdim.json" \
    --only-variants --variants l4gm-base >/tmp/headdim.log 2>&1
  note "head-dim variants: $(test -s "$OUT/l4gm_headdim.json" && echo ok || echo missing)"
}
if [ -z "${SKIP_SPEED:-}" ]; then
  T=$(( $(left) - 10 ))
  if [ "$T" -gt 60 ]; then
    if [ "$NGPU" -ge 2 ]; then
      note "speed + parity (GPU 0) beside head-dim variants (GPU 1), ${T}s at most"
      { speed 0 "$T"; parity 0; } & headdim 1 "$T" & wait
    else
      parity 0
      note "speed, then head-dim variants, ${T}s at most"
      speed 0 $(( T * 5 / 10 )); headdim 0 $(( $(left) - 10 ))
    fi
    { echo "----- speed"; grep -v '^\s*$' /tmp/speed.log | tail -40; echo "----- head dim"; tail -40 /tmp/headdim.log; } \
      >>"$LOG" 2>&1
  else
    note "speed skipped: ${T}s left"
  fi
else
  parity 0
fi
note "suite finished"
