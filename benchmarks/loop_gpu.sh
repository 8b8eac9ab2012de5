#!/bin/bash
# Issue 23's experiment (benchmarks/data_engine_arms.py) on a GPU host without Blender, from the render cache
# made on the CPU box (python benchmarks/data_engine_experiment.py loop-prepare --out .exp23 --assets .scratch/exp23/assets):
#   tar czf .exp23.tgz --exclude=.exp23/curated .exp23     (24.5 MiB; the folder itself is 43 MiB)
#   device run, carry [".whl", ".exp23.tgz"]:  SCENARIOS=shifted ARMS=random bash benchmarks/loop_gpu.sh
# One (scenario, arm) per call is the plain case; SCENARIOS and ARMS take space-separated lists and then run every
# (scenario, arm) at once, each with its SEEDS at once, processes spread round-robin over the GPUs.
# The runs write into WORK (a copy of .exp23 made once per machine, so a later call on the same warm machine
# reuses each seed's round 0); every call brings back report.md and results.tgz (results, metrics, logs of
# every run so far; no checkpoints, no shards): unpack them into one folder and run `loop-report --out` there.
# On the CPU box (a check of the flow, not a measurement):
#   DEVICE=cpu EXP=.scratch/exp23cpu WORK=/tmp/exp23cpu_work SCENARIOS=shifted ARMS=random SEEDS=0 bash benchmarks/loop_gpu.sh
set -u
OUT=${OUT:-/tmp/loop_gpu_out}
EXP=${EXP:-.exp23}                 # EXP.tgz when carried packed, else the folder
WORK=${WORK:-/tmp/exp23_work}
DEVICE=${DEVICE:-cuda}
SCENARIOS=${SCENARIOS:-shifted}
ARMS=${ARMS:-random}
SEEDS=${SEEDS:-0,1,2}
WORKERS=${WORKERS:-2}
BUDGET_S=${BUDGET_S:-570}
mkdir -p "$OUT"
START=$(date +%s)
LOG="$OUT/suite.log"
left() { local l=$(( BUDGET_S - ($(date +%s) - START) )); [ "$l" -gt 1 ] && echo "$l" || echo 1; }
note() { echo "[$(( $(date +%s) - START ))s] $*" | tee -a "$LOG"; }
NGPU=1
if [ "$DEVICE" = cuda ]; then
  python3 benchmarks/device.py setup --budget-s 150 --out "$OUT/setup" >>"$LOG" 2>&1 || { note "setup failed"; exit 1; }
  eval "$(python3 benchmarks/device.py exports)"  # the runner's job environment: wheels, checkout, multicast off
  NGPU=$(nvidia-smi -L | grep -c GPU)
fi
export OMP_NUM_THREADS=2
{ date -u; nvidia-smi --query-gpu=index,name,memory.total --format=csv 2>&1; nproc; git log -1 --format=%h 2>&1; } >"$OUT/env.txt" 2>&1
if [ ! -f "$WORK/loop_config.json" ]; then  # once per machine: a later call on a warm machine reuses round 0
  rm -rf "$WORK"; mkdir -p "$WORK"
  if [ -f "$EXP.tgz" ]; then tar xzf "$EXP.tgz" -C "$WORK" --strip-components=1; else cp -r "$EXP/." "$WORK"; fi
fi
note "device $DEVICE, $NGPU GPU(s); scenarios $SCENARIOS; arms $ARMS; seeds $SEEDS; work $WORK"
i=0; PIDS=()
NSEED=$(echo "$SEEDS" | tr ',' '\n' | wc -l)
export LOOP_CONCURRENT=$(( $(echo $SCENARIOS | wc -w) * $(echo $ARMS | wc -w) * NSEED ))  # recorded with GPU seconds
for s in $SCENARIOS; do
  for a in $ARMS; do
    timeout "$(left)" python3 benchmarks/data_engine_experiment.py loop-arm --out "$WORK" --scenario "$s" --arm "$a" \
      --seeds "$SEEDS" --device "$DEVICE" --num-workers "$WORKERS" --gpu-base $(( i * NSEED )) >"$OUT/$s-$a.txt" 2>&1 &
    PIDS+=($!); i=$((i + 1))
  done
done
rc=0; for p in "${PIDS[@]}"; do wait "$p" || rc=$?; done
note "arms: $i command(s) at once, last failing rc $rc; $(ls "$WORK"/*/seed*/*/result.json 2>/dev/null | wc -l) results"
python3 benchmarks/data_engine_experiment.py loop-report --salvage --out "$WORK" >"$OUT/report.md" 2>&1
note "report: rc $?"
( cd "$WORK" && tar czf "$OUT/results.tgz" --exclude='*.pt' --exclude='*.tar' --exclude='./*/data' --exclude='*/data/*' \
    --exclude=./cache --exclude=./curated --exclude=./assets --exclude=pool_data --exclude='events.out.*' --exclude='*.lock' . )
note "done: $(ls "$OUT" | tr '\n' ' ')"
