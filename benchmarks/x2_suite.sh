#!/bin/bash
# Issues 11 and 14 in one device call on `nvidia-h200-x2` (TOTAL_S, default 510 s, of wall time):
#   device run, kind nvidia-h200-x2, carry [".whl"]:  bash benchmarks/x2_suite.sh
# 1. the carried wheels; the CPU data sets (replayed batches, lrm4d-shaped shards, the DDP shards) in the
#    background while gsplat compiles once (the extension cache is shared: two compiles at once took 137 s)
# 2. both GPUs: ddp_suite.sh scale for `base` on 2 GPUs, once per $DDP_VARIANTS (LPIPS on)
# 3. side by side, with the time left:
#    GPU 0  gpu_suite.sh speed: inference ($INFER_MODES, default graph: CUDA graph and direct call, at
#           $INFER_VIEWS, default 4 input views), then the `base` training
#           variants $VARIANTS0 (bench_speed.py variant syntax)
#    GPU 1  ddp_suite.sh scale for `base` on 1 GPU (the baseline of step 2), gpu_suite.sh e2e (real lrm4d-layout
#           shards read by `python -m training`), then the `small` training variants $VARIANTS1
# Results: $OUT/summary.txt (the headline lines) and $OUT/results.tgz (every log and JSON).
set -u
. benchmarks/device_env.sh
x2_begin /tmp/x2_out 510
# default; nosplit: compiled blocks not split at DDP buckets (dynamo's DDPOptimizer splits every compiled
# block at the 1 MB first bucket and each 25 MB); then also bigger buckets, grads as bucket views, bf16
# all-reduce. Each 2-GPU run takes ~55 s: a 4th variant (e.g. bucket100+gradview) costs the small variants
DDP_VARIANTS=${DDP_VARIANTS:-"default nosplit nosplit+bucket100+gradview+bf16hook"}
# in order of interest (what the time left does not reach is skipped)
VARIANTS0=${VARIANTS0:-"base base:lpsize=128 base:head=1 base:bs=12 base:lpevery=2 base:bs=12:head=1:lpsize=128 base:cudnnbench=1"}
VARIANTS1=${VARIANTS1:-"small small:lpsize=64 small:head=1:lpsize=64:cudnnbench=1"}

device_env "$OUT/install.txt" || { say "wheel install failed"; exit 1; }
( nice python3 benchmarks/bench_speed.py prep --data /tmp/speed_data && touch /tmp/speed_data/.made ) >"$OUT/prep_speed.txt" 2>&1 &
( nice python3 benchmarks/bench_speed.py prep-lrm4d --data /tmp/lrm4d_shards && touch /tmp/lrm4d_shards/.made ) >"$OUT/prep_lrm4d.txt" 2>&1 &
( nice python3 benchmarks/ddp_data.py even /tmp/ddp_data/even256 --shards 8 --per-shard 16 --size 256 &&
  touch /tmp/ddp_data/even256/.made ) >"$OUT/prep_ddp.txt" 2>&1 &
{ time python3 -c "from gsplat.cuda._backend import _C; print('gsplat CUDA extension:', _C)"; } >"$OUT/compile.txt" 2>&1
say "gsplat compile: $(grep real "$OUT/compile.txt"); $(nproc --all) cores"
wait
say "data made: $(ls -a /tmp/speed_data/.made /tmp/lrm4d_shards/.made /tmp/ddp_data/even256/.made 2>&1 | tr '\n' ' ')"

OUT=$OUT/ddp2 STAGES=scale PRESETS=base SCALE_GPUS=2 DDP_VARIANTS="$DDP_VARIANTS" BUDGET_S=$(( $(left) - 290 )) \
  bash benchmarks/ddp_suite.sh >"$OUT/ddp2.out" 2>&1
say "2-GPU scale done, $(left) s left"

# each side on its own half of the cores (a 16-core GPU host each, as issue 11's loader question asks)
NC=$(nproc --all); H=$(( NC / 2 )); PIN0=""; PIN1=""
if command -v taskset >/dev/null && [ "$NC" -ge 4 ]; then PIN0="taskset -c 0-$(( H - 1 ))"; PIN1="taskset -c $H-$(( NC - 1 ))"; fi
say "side by side: GPU 0 ${PIN0:-unpinned}, GPU 1 ${PIN1:-unpinned}"
( CUDA_VISIBLE_DEVICES=0 OUT=$OUT/g0 STAGES=speed SPEED_PARTS=infer,train VARIANTS="$VARIANTS0" \
    INFER_MODES=${INFER_MODES:-graph} INFER_VIEWS=${INFER_VIEWS:-4} TORCHINDUCTOR_COMPILE_THREADS=8 BUDGET_S=$(left) \
    $PIN0 bash benchmarks/gpu_suite.sh >"$OUT/g0.out" 2>&1 ) &
(
  export CUDA_VISIBLE_DEVICES=1
  OUT=$OUT/ddp1 STAGES=scale PRESETS=base SCALE_GPUS=1 BUDGET_S=30 $PIN1 bash benchmarks/ddp_suite.sh >"$OUT/ddp1.out" 2>&1
  OUT=$OUT/g1 STAGES=e2e LOADER_WORKERS=${LOADER_WORKERS:-2,4,8,16} E2E_STEPS=${E2E_STEPS:-80} \
    BUDGET_S=$(( $(left) - 60 )) $PIN1 bash benchmarks/gpu_suite.sh >"$OUT/g1.out" 2>&1
  OUT=$OUT/g1s STAGES=speed SPEED_PARTS=train VARIANTS="$VARIANTS1" BUDGET_S=$(left) \
    $PIN1 bash benchmarks/gpu_suite.sh >"$OUT/g1s.out" 2>&1
) &
wait
say "all done, $(left) s left"
cat "$OUT"/ddp2/summary.txt "$OUT"/ddp1/summary.txt 2>/dev/null | grep -v "^metric" >>"$OUT/summary.txt"
grep -h "e2e:\|lrm4d shards\|reconstruct_ms\|MFU\|skip\|Error" "$OUT"/g0/suite.log "$OUT"/g1/suite.log "$OUT"/g1s/suite.log \
  2>/dev/null | cut -c1-700 >>"$OUT/summary.txt"
cat "$OUT/summary.txt"
x2_pack
