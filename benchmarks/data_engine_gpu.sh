#!/bin/bash
# Issue 13's experiment (benchmarks/data_engine_experiment.py, --size gpu) in ONE device call on 2 x H200:
#   device run, kind nvidia-h200-x2, carry [".whl", ".exp13"]:  bash benchmarks/data_engine_gpu.sh
# The GPU host has no Blender, so every render is made beforehand on the CPU box:
#   nice python benchmarks/data_engine_experiment.py prepare --out .exp13 --size gpu --assets .scratch/exp13/assets
#   nice python benchmarks/data_engine_experiment.py cache --out .exp13
# (round 0 + held-out clips in .exp13/data; every pool clip at base density and every round-0 clip at the
# denser re-render settings in .exp13/cache, so `arm --render-cache` copies the clips mining chose.)
# Stages, each bounded by what is left of BUDGET_S (a stage that does not finish leaves the report partial):
#   install  the carried wheels into /tmp/site (as benchmarks/ddp_suite.sh)
#   compile  gsplat's kernels once (nothing else can use gsplat meanwhile)
#   round0   one round-0 run per seed (train STEPS0 + eval on its own clips), all seeds at once over the GPUs
#   arms     every (arm, seed) at once, several processes per GPU (small at 64 px is launch-bound): mine from
#            the seed's round-0 metrics, new shards from the render cache, STEPS1 more steps, eval on held-out
#   report   experiment.json + report.md; logs, results and metrics of every run in runs.tgz
# train_s under concurrency is inflated by the sharing: each result records `concurrent_runs`. No LPIPS weights
# file exists on the device, so training has no LPIPS term and eval reports no LPIPS.
# On the CPU box (a check of the whole script, not a measurement):
#   DEVICE=cpu EXP=DIR WORK=DIR2 STEPS0=30 STEPS1=10 WORKERS=0 nice bash benchmarks/data_engine_gpu.sh
set -u
OUT=${OUT:-/tmp/data_engine_gpu_out}
EXP=${EXP:-.exp13}                 # prepare + cache output (read only: copied to WORK)
WORK=${WORK:-/tmp/exp13_work}      # the experiment folder the runs write into
DEVICE=${DEVICE:-cuda}
SEEDS=${SEEDS:-"0 1 2"}
ARMS=${ARMS:-"control reweight rerender pool combo"}
STEPS0=${STEPS0:-1000}             # round-0 steps (small, 64 px, batch 16)
STEPS1=${STEPS1:-400}              # further steps of every arm from the round-0 checkpoint
WORKERS0=${WORKERS0:-4}            # DataLoader workers per round-0 run (3 runs)
WORKERS=${WORKERS:-1}              # DataLoader workers per arm run (15 runs: 15 x (1 + 1) processes on 32 cores)
BUDGET_S=${BUDGET_S:-450}          # wall seconds for everything; the report always runs
mkdir -p "$OUT"
START=$(date +%s)
LOG="$OUT/suite.log"
elapsed() { echo $(( $(date +%s) - START )); }
left() { local l=$(( BUDGET_S - $(elapsed) )); [ "$l" -gt 1 ] && echo "$l" || echo 1; }  # never `timeout 0` (= none)
note() { echo "[$(elapsed)s] $*" | tee -a "$LOG"; }

if [ "$DEVICE" = cuda ]; then
  . benchmarks/device_env.sh; device_env "$LOG" || { note "wheel install failed"; exit 1; }
  NGPU=$(nvidia-smi -L | grep -c GPU)
else
  NGPU=1
fi
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2 TORCHINDUCTOR_COMPILE_THREADS=${TORCHINDUCTOR_COMPILE_THREADS:-4}
PY="python3 benchmarks/data_engine_experiment.py"
{ date -u; nvidia-smi --query-gpu=index,name,memory.total --format=csv 2>&1; nproc; git log -1 --format=%h 2>&1; } >"$OUT/env.txt" 2>&1
note "env: device $DEVICE, $NGPU GPU(s), $(nproc) cores; steps $STEPS0 + $STEPS1; seeds $SEEDS; arms $ARMS"
[ -f "$EXP/experiment_config.json" ] && [ -f "$EXP/cache/manifest.parquet" ] || { note "no prepared experiment + cache in $EXP"; exit 1; }
rm -rf "$WORK"; mkdir -p "$(dirname "$WORK")"; cp -r "$EXP" "$WORK"
GPUMON=
if [ "$DEVICE" = cuda ]; then
  nvidia-smi --query-gpu=timestamp,index,utilization.gpu,memory.used --format=csv -l 5 >"$WORK/gpu_util.csv" 2>&1 &
  GPUMON=$!
  note "compiling gsplat"
  timeout "$(left)" python3 -c "from gsplat.cuda._backend import _C; print(_C)" >"$OUT/compile.txt" 2>&1
  note "gsplat: rc $?"
fi

gpu_env() {  # gpu_env I: CUDA_VISIBLE_DEVICES=I % NGPU for run I (nothing on CPU)
  if [ "$DEVICE" = cuda ]; then echo "CUDA_VISIBLE_DEVICES=$(( $1 % NGPU ))"; else echo "CUDA_VISIBLE_DEVICES="; fi
}

i=0; PIDS=()
for s in $SEEDS; do
  env $(gpu_env $i) timeout "$(left)" $PY round0 --out "$WORK" --seed "$s" --device "$DEVICE" --num-workers "$WORKERS0" \
    --steps0 "$STEPS0" --steps1 "$STEPS1" >"$WORK/round0-seed$s.txt" 2>&1 &
  PIDS+=($!); i=$((i + 1))
done
rc=0; for p in "${PIDS[@]}"; do wait "$p" || rc=$?; done
note "round0: $i run(s) at once, last failing rc $rc; $(ls "$WORK"/seed*/round0_metrics.parquet 2>/dev/null | wc -l) scored"

N=0; for s in $SEEDS; do for a in $ARMS; do [ -f "$WORK/seed$s/round0_metrics.parquet" ] && N=$((N + 1)); done; done
i=0; PIDS=()
for s in $SEEDS; do
  [ -f "$WORK/seed$s/round0_metrics.parquet" ] || { note "seed $s: no round 0, its arms skipped"; continue; }
  for a in $ARMS; do
    env $(gpu_env $i) timeout "$(left)" $PY arm --out "$WORK" --arm "$a" --seed "$s" --device "$DEVICE" \
      --render-cache "$WORK/cache" --num-workers "$WORKERS" --concurrent "$N" --steps0 "$STEPS0" --steps1 "$STEPS1" \
      >"$WORK/arm-$a-seed$s.txt" 2>&1 &
    PIDS+=($!); i=$((i + 1))
  done
done
rc=0; for p in "${PIDS[@]}"; do wait "$p" || rc=$?; done
note "arms: $i run(s) at once over $NGPU GPU(s), last failing rc $rc; $(ls "$WORK"/seed*/*/result.json 2>/dev/null | wc -l) results"

[ -n "$GPUMON" ] && kill "$GPUMON" 2>/dev/null
python3 benchmarks/data_engine_experiment.py report --out "$WORK" >"$OUT/report.md" 2>&1
note "report: rc $?"
cp "$WORK/experiment.json" "$OUT/" 2>/dev/null
( cd "$WORK" && tar czf "$OUT/runs.tgz" --exclude='*.pt' --exclude='*.tar' --exclude='data' --exclude='cache' \
    --exclude='events.out.*' *.txt gpu_util.csv seed* 2>/dev/null )
note "done: $(ls "$OUT" | tr '\n' ' ')"
