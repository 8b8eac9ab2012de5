#!/bin/bash
# Several GPUs of one host (issue 14), in one device call on `nvidia-h200-x2`:
#   device run, kind nvidia-h200-x2, carry [".whl"]:  bash benchmarks/ddp_suite.sh
# Stages (each writes under $OUT; a failing stage does not stop the next):
#   scale   pipeline train (python -m training) on analytic shards, 1 GPU then torchrun 2 GPUs, presets
#           $PRESETS at their defaults: samples/s (last log windows), step time, per-rank data-wait spread.
#           LPIPS on (a random-weight VGG of the real shape, /tmp/lpips_random.pt, as gpu_suite.sh's e2e:
#           the same cost as real weights), so a step is what the single-GPU MFU counts.
#           SCALE_GPUS ("1 2"): which world sizes to run. DDP_VARIANTS ("default"): the 2-GPU runs of `base`
#           once per variant, each a +-joined list of: default, bucketN (ddp.bucket_cap_mb=N), gradview
#           (ddp.gradient_as_bucket_view), static (ddp.static_graph), bf16hook (ddp.comm_hook=bf16),
#           nosplit (ddp.split_compiled=false), torch (PyTorch's own DDP settings: bucket 25 MB, grads copied
#           out of the buckets, fp32 all-reduce, compiled blocks split at buckets: the trainer's defaults
#           before 2026-11-29); e.g. DDP_VARIANTS="default torch bucket100+bf16hook"
#   uneven  2 ranks on shards of 24, 3 and 1 samples with --follow while a shard is added mid-run:
#           both ranks end on the same step, nobody waits forever (timeout), the new shard is picked up
#   resume  2 ranks killed (SIGKILL) after a checkpoint, resumed on 2 GPUs, then on 1: steps without gaps
#   eval    pipeline eval of that checkpoint on 1 GPU and on 2 (torchrun --no-python): same metrics
#   gputests the GPU-only tests of the suite (pytest -m gpu) on one GPU
set -u
OUT=${OUT:-/tmp/ddp_suite_out}
PRESETS=${PRESETS:-"base small"}
STEPS=${STEPS:-20}
STAGES=${STAGES:-"scale uneven resume eval gputests"}
SCALE_GPUS=${SCALE_GPUS:-"1 2"}
DDP_VARIANTS=${DDP_VARIANTS:-"default"}
BUDGET_S=${BUDGET_S:-300}
mkdir -p "$OUT"
START=$(date +%s)
LOG="$OUT/suite.log"
elapsed() { echo $(( $(date +%s) - START )); }
note() { echo "[$(elapsed)s] $*" | tee -a "$LOG"; }
want() { [[ " $STAGES " == *" $1 "* ]] && { [ "$(elapsed)" -lt "$BUDGET_S" ] || { note "skip $1: over budget"; false; }; }; }

# the carried wheels, once per machine (a second suite running beside this one must not replace them mid-run)
. benchmarks/device_env.sh; device_env "$LOG" || { note "wheel install failed"; exit 1; }
export OMP_NUM_THREADS=4
TRAIN="python3 -m training"
TORCHRUN="python3 -m torch.distributed.run --standalone --nproc-per-node 2"
{ date -u; nvidia-smi --query-gpu=index,name,memory.total --format=csv; nvidia-smi topo -m; nproc --all; } >"$OUT/env.txt" 2>&1
note "env: $(grep -c H200 "$OUT/env.txt") H200 listed, $(nproc --all) cores, CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-all}"

D=/tmp/ddp_data  # made once per machine (a second invocation of the suite reuses it)
( if [ ! -e $D/even256/.made ]; then python3 benchmarks/ddp_data.py even $D/even256 --shards 8 --per-shard 16 --size 256 &&
    touch $D/even256/.made; fi
  if [[ "$STAGES" =~ uneven|resume|eval ]] && [ ! -e $D/uneven/.made ]; then
    python3 benchmarks/ddp_data.py uneven $D/uneven --sizes 24,3,1 --size 64 && touch $D/uneven/.made; fi
  random_lpips /tmp/lpips_random.pt
) >>"$OUT/data.txt" 2>&1 &
DATA=$!
note "compiling gsplat (data in the background)"
python3 -c "from gsplat.cuda._backend import _C; print(_C)" >"$OUT/compile.txt" 2>&1
wait $DATA; note "data: $(ls $D/even256/*.stats.json 2>/dev/null | wc -l) + $(ls $D/uneven/*.stats.json 2>/dev/null | wc -l) shards"

summ() {  # summ RUN LABEL: mean samples/s and step time of the log lines after the first (compile, warm-up)
  python3 - "$1" "$2" <<'PY' | tee -a "$OUT/summary.txt"
import json, sys
lines = [json.loads(x) for x in open(sys.argv[1] + "/metrics.jsonl")]
w = lines[1:] or lines
f = lambda k: sum(x.get(k, 0) for x in w) / len(w)
print(f"{sys.argv[2]}: steps {lines[-1]['step']}, samples/s {f('samples_per_s'):.1f}, step {f('step_time_s')*1000:.0f} ms, "
      f"data wait {f('data_wait_s')*1000:.1f} ms (ranks {f('data_wait_min_s')*1000:.1f}-{f('data_wait_max_s')*1000:.1f} ms), "
      f"last loss {lines[-1]['loss']:.4f} mse {lines[-1]['mse']:.5f}")
PY
}

variant_sets() {  # DDP_VARIANTS name -> --set flags
  local out="" part
  for part in ${1//+/ }; do
    case $part in
      default) ;;
      bucket[0-9]*) out+=" --set ddp.bucket_cap_mb=${part#bucket}" ;;
      gradview) out+=" --set ddp.gradient_as_bucket_view=true" ;;
      static) out+=" --set ddp.static_graph=true" ;;
      bf16hook) out+=" --set ddp.comm_hook=bf16" ;;
      nosplit) out+=" --set ddp.split_compiled=false" ;;
      torch) out+=" --set ddp.bucket_cap_mb=25 --set ddp.gradient_as_bucket_view=false --set ddp.comm_hook=none --set ddp.split_compiled=true" ;;
      *) echo "unknown DDP variant part $part" >&2; return 1 ;;
    esac
  done
  echo "$out"
}

if want scale; then
  for P in $PRESETS; do
    for N in $SCALE_GPUS; do
      VS="default"; [ "$N" != 1 ] && [ "$P" = base ] && VS=$DDP_VARIANTS
      for V in $VS; do
        want scale || break
        SETS=$(variant_sets "$V") || continue
        R=/tmp/runs/$P-$N-$V; rm -rf "$R"
        L="--shards $D/even256 --out $R --preset $P --steps $STEPS --log-every 5 --grid-every 0 --ckpt-every 1000 --set data.image_size=256 --lpips-weights /tmp/lpips_random.pt $SETS"
        F="$OUT/scale-$P-$N-$V.txt"
        if [ $N = 1 ]; then timeout 200 $TRAIN $L >"$F" 2>&1; else timeout 200 $TORCHRUN -m training $L >"$F" 2>&1; fi
        note "scale $P x$N $V: rc $? $(summ $R "$P on $N GPU, $V${SETS:+ ($SETS)}, LPIPS on" 2>&1 | tail -1)"
      done
    done
  done
fi

if want uneven; then
  R=/tmp/runs/uneven
  ( sleep 25; python3 benchmarks/ddp_data.py add $D/uneven --shard 3 --count 6 --size 64 ) >"$OUT/add.txt" 2>&1 &
  timeout 150 $TORCHRUN -m training --shards $D/uneven --out $R --preset small --steps 60 --log-every 10 --grid-every 0 \
    --ckpt-every 1000 --follow --follow-interval 5 --set data.image_size=64 --set data.batches_per_epoch=10 >"$OUT/uneven.txt" 2>&1
  note "uneven+follow: rc $? (124 = a rank waited), last step $(tail -1 $R/metrics.jsonl | python3 -c 'import json,sys; print(json.load(sys.stdin)["step"])'), $(grep -c 'shard' $OUT/uneven.txt) shard log lines; added: $(grep -F -- "--follow: +" $OUT/uneven.txt | head -2 | tr '\n' ' ')"
fi

if want resume; then
  R=/tmp/runs/resume; A="--shards $D/uneven --out $R --preset small --log-every 5 --grid-every 0 --ckpt-every 10 --set data.image_size=64"
  $TORCHRUN -m training $A --steps 200 >"$OUT/resume-a.txt" 2>&1 &
  PID=$!
  for i in $(seq 1 120); do ls $R/checkpoints/step-00000020.pt >/dev/null 2>&1 && break; sleep 1; done
  pkill -KILL -f "training --shards $D/uneven --out $R" ; kill -KILL $PID 2>/dev/null; wait $PID 2>/dev/null
  note "killed at checkpoints: $(ls $R/checkpoints | tr '\n' ' ')"
  timeout 120 $TORCHRUN -m training $A --steps 40 >"$OUT/resume-b.txt" 2>&1; note "resumed on 2 GPUs to 40: rc $?"
  timeout 120 $TRAIN $A --steps 50 >"$OUT/resume-c.txt" 2>&1; note "resumed on 1 GPU to 50: rc $?"
  python3 -c "import json; s=[json.loads(x)['step'] for x in open('$R/metrics.jsonl')]; print('metric steps', s, 'ok' if s==sorted(set(s)) and s==list(range(s[0], s[-1]+1, 5)) else 'GAPS/DUPLICATES')" 2>&1 | tee -a "$OUT/summary.txt"
fi

if want eval; then
  R=/tmp/runs/resume
  timeout 100 python3 -m pipeline.cli eval --checkpoint $R --shards $D/uneven --out /tmp/e1.parquet --no-progress >"$OUT/eval1.txt" 2>&1
  timeout 100 $TORCHRUN -m pipeline.cli eval --checkpoint $R --shards $D/uneven --out /tmp/e2.parquet --no-progress >"$OUT/eval2.txt" 2>&1
  python3 - <<'PY' 2>&1 | tee -a "$OUT/summary.txt"
import pandas as pd
a, b = pd.read_parquet("/tmp/e1.parquet"), pd.read_parquet("/tmp/e2.parquet")
num = [c for c in a.columns if a[c].dtype.kind == "f"]
same = list(a["key"]) == list(b["key"]) and all((a[c].isna() == b[c].isna()).all() for c in num)
diff = max(float((a[c] - b[c]).abs().max()) for c in num if a[c].notna().any())
print(f"eval 1 GPU vs 2 GPUs: rows {len(a)} vs {len(b)}, same keys/order/nulls {same}, pairs equal {bool((a['pairs'] == b['pairs']).all())}, max |diff| over float columns {diff:.3g}")
PY
fi

if want gputests; then
  timeout 240 python3 -m pytest -q -p no:cacheprovider -o addopts="" -m gpu tests/training >"$OUT/gputests.txt" 2>&1
  note "gpu tests: $(tail -1 $OUT/gputests.txt)"
fi
note "suite finished"; cat "$OUT/summary.txt" 2>/dev/null
