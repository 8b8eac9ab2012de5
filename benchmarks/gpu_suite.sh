#!/bin/bash
# The trainer's GPU work in one command (one lease): install the carried wheels, compile gsplat, then
# the stages named in STAGES (default: all but learn), each writing under $OUT; a failing stage does
# not stop the next one, and a stage that would start after BUDGET_S seconds is skipped.
#
#   device run, carry [".whl", ".scratch/helper-gpu/before"]:  STAGES="speed e2e parity" bash benchmarks/gpu_suite.sh
#   .whl:    gsplat 1.5.3, webdataset 1.0.2, braceexpand 0.1.7 wheels for Python 3.12 (see README)
#   BEFORE:  an older checkout of training/ + contracts/ to measure "before" with the same benchmark
#            (default .scratch/helper-gpu/before: `git archive 6f07a44 training contracts`)
#   .trainpack: train/ and heldout/ dataset folders rendered by `pipeline render` (stage learn only)
#
# Stages:
#   before  bench_speed.py on the old checkout: its presets' steps, time split, loss curve
#   speed   bench_speed.py: ceilings, attention backends, the step variants in $VARIANTS, split, inference
#           ($INFER_MODES, default fast,graph: compiled blocks, and the same replayed from a CUDA graph)
#   curve   the same-seed loss curves (old checkout and this one, batch 4) for the numerics check
#   e2e     lrm4d-shaped shards (with member index: see bench_speed.py prep-lrm4d), the trainer's loader alone
#           per worker count, then `python -m training` (base, its default workers) reading them; compare its
#           samples_per_s and data_wait_s with the replayed-batch speed of the same settings (stage curve)
#   parity  gsplat vs torch rasteriser (tests/training/test_raster_parity.py)
#   fasttests  fast paths vs references (tests/training/test_fast.py)
#   learn   gpu_learn.py on .trainpack (if carried)
set -u
OUT=${OUT:-/tmp/gpu_suite_out}
STAGES=${STAGES:-"before speed parity curve e2e fasttests"}
BUDGET_S=${BUDGET_S:-570}
BEFORE=${BEFORE:-.scratch/helper-gpu/before}
VARIANTS=${VARIANTS:-"base small"}
SPLIT=${SPLIT:-"base"}
mkdir -p "$OUT"
START=$(date +%s)
LOG="$OUT/suite.log"
elapsed() { echo $(( $(date +%s) - START )); }
note() { echo "[$(elapsed)s] $*" | tee -a "$LOG"; }
want() { [[ " $STAGES " == *" $1 "* ]] && { [ "$(elapsed)" -lt "$BUDGET_S" ] || { note "skip $1: over budget"; false; }; }; }
left() { echo $(( BUDGET_S - $(elapsed) )); }

# the carried wheels, once per machine (a second suite running beside this one must not replace them mid-run)
. benchmarks/device_env.sh; device_env "$LOG" || { note "wheel install failed"; exit 1; }
DATA=/tmp/speed_data
LRM4D=/tmp/lrm4d_shards

{
  date -u; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  python3 -c "import torch, gsplat, webdataset, numpy, PIL; print('torch', torch.__version__, 'gsplat', gsplat.__version__, 'webdataset', webdataset.__version__, 'numpy', numpy.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), torch.cuda.get_device_name())"
  nproc; free -g | head -2; uptime
} >"$OUT/env.txt" 2>&1
note "env: $(tail -n +3 "$OUT/env.txt" | head -1)"

# CPU work in the background while gsplat compiles; skipped when an earlier command on this machine
# made it already (`$DIR/.made`, e.g. started by hand before two suites run side by side on two GPUs)
if want e2e; then
  ( [ -e $LRM4D/.made ] && echo "lrm4d shards: made before" ||
    { python3 benchmarks/bench_speed.py prep-lrm4d --data $LRM4D && touch $LRM4D/.made; } ) >"$OUT/lrm4d_prep.txt" 2>&1 &
  PREP_LRM4D=$!
fi
note "compiling gsplat; prep of replayed batches"
( [ -e $DATA/.made ] && echo "prep: made before" ||
  { nice -n 19 python3 benchmarks/bench_speed.py prep --data $DATA && touch $DATA/.made; } ) >"$OUT/prep.txt" 2>&1 &
PREP=$!
{ time python3 -c "from gsplat.cuda._backend import _C; print('gsplat CUDA extension:', _C)"; } >"$OUT/compile.txt" 2>&1
wait $PREP
note "compile: $(grep real "$OUT/compile.txt"); prep: $(tail -1 "$OUT/prep.txt")"

if want before; then
  timeout $(left) python3 benchmarks/bench_speed.py run --tree "$BEFORE" --data $DATA --out "$OUT/before.json" \
    --parts train,split --variants small base --split base --steps 8 >>"$LOG" 2>&1
  note "before: done"
fi
if want speed; then
  timeout $(left) python3 benchmarks/bench_speed.py run --data $DATA --out "$OUT/after.json" \
    --parts ${SPEED_PARTS:-hw,attn,train,split,infer,profile} --variants $VARIANTS --split $SPLIT \
    --profile ${PROFILE:-base} --infer-modes ${INFER_MODES:-fast,graph} --infer-views ${INFER_VIEWS:-4,24} --infer-heads "${INFER_HEADS:-}" --infer-tiles "${INFER_TILES:-0}" --steps 8 >>"$LOG" 2>&1
  note "speed: done"
fi
if want parity; then
  timeout $(left) python3 -m pytest -q -p no:cacheprovider -o addopts="" tests/training/test_raster_parity.py \
    >"$OUT/parity.txt" 2>&1
  note "parity: $(tail -1 "$OUT/parity.txt")"
fi
if want curve; then  # same seed, same batches: the old checkout's defaults against this one's
  timeout $(left) python3 benchmarks/bench_speed.py run --tree "$BEFORE" --data $DATA --out "$OUT/curve_before.json" \
    --parts curve --curve ${CURVE:-base:bs=8} --curve-steps ${CURVE_STEPS:-30} >>"$LOG" 2>&1
  timeout $(left) python3 benchmarks/bench_speed.py run --data $DATA --out "$OUT/curve_after.json" \
    --parts curve --curve ${CURVE:-base:bs=8} --curve-steps ${CURVE_STEPS:-30} >>"$LOG" 2>&1
  note "curve: done"
fi
if want e2e; then
  wait $PREP_LRM4D
  note "lrm4d shards: $(tail -1 "$OUT/lrm4d_prep.txt")"
  timeout $(left) python3 benchmarks/bench_speed.py loader --data $LRM4D --out "$OUT/loader.json" \
    --workers ${LOADER_WORKERS:-1,2,4,8} --batches 12 >>"$LOG" 2>&1
  random_lpips /tmp/lpips_random.pt
  T=$(( $(left) - 20 )); [ "$T" -gt 30 ] || T=30  # never a negative timeout (it was one when the compile ran long)
  timeout $T python3 -m training --shards $LRM4D --out /tmp/e2e_run --preset base \
    --steps ${E2E_STEPS:-120} --log-every 10 --grid-every 0 --ckpt-every 100000 \
    --lpips-weights /tmp/lpips_random.pt >"$OUT/e2e_train.log" 2>&1
  cp /tmp/e2e_run/metrics.jsonl "$OUT/e2e_metrics.jsonl" 2>/dev/null
  note "e2e: $(tail -1 "$OUT/e2e_metrics.jsonl" 2>/dev/null | cut -c1-300)"
fi
if want fasttests; then
  timeout $(left) python3 -m pytest -q -p no:cacheprovider -o addopts="" tests/training/test_fast.py \
    >"$OUT/fasttests.txt" 2>&1
  note "fast-path tests: $(tail -1 "$OUT/fasttests.txt")"
fi
if want learn && [ -d .trainpack/train ] && [ -d .trainpack/heldout ]; then
  LEFT=$(left)
  if [ "$LEFT" -gt 120 ]; then
    MIN=$(python3 -c "print(round(($LEFT - 75) / 60, 2))")  # leave ~75 s for start-up, evaluation and slack
    note "learning run: $MIN minutes of training"
    timeout $(( LEFT - 10 )) python3 benchmarks/gpu_learn.py --train .trainpack/train --heldout .trainpack/heldout \
      --out "$OUT" --minutes "$MIN" --preset small --set data.image_size=64 --set data.num_workers=12 \
      --set batch_size=16 >>"$LOG" 2>&1
    note "learn: $(test -s "$OUT/learn.json" && echo ok || echo missing)"
  fi
fi
note "suite finished"
grep -E "MFU|reconstruct_ms|\"backend\"|transformer_fwd_bwd_ms|samples_per_s_per_worker|\"loss\"" "$LOG" | cut -c1-600
# at most 8 files come back from a device call: everything but the log goes into one archive
# (written outside $OUT first: tar fails with "file changed as we read it" on an archive inside the folder)
( cd "$OUT" && tar -czf "/tmp/gpu_suite_$$.tgz" --exclude=./suite.log --exclude=./results.tgz . && \
  find . -maxdepth 1 -type f ! -name suite.log -delete && mv "/tmp/gpu_suite_$$.tgz" results.tgz )
