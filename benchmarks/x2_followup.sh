#!/bin/bash
# What issues 10, 14 and 11 still needed on GPUs after the data-engine call, in one `nvidia-h200-x2` call
# (TOTAL_S, default 510 s, of wall time):
#   device run, kind nvidia-h200-x2, carry [".whl", ".trainpack"]:  bash benchmarks/x2_followup.sh
# 1. the carried wheels (once per machine); replayed batches, lrm4d-layout shards and the DDP shards made in
#    the background (niced) while gsplat compiles (once per machine: the extension cache is kept while warm)
# 2. issue 10: 4D-LRM `small` on GPU 0 and `l4gm-small` on GPU 1 for the same $LEARN_MIN training minutes,
#    each scored on .trainpack/heldout with its own protocol (l4gm_gpu_suite.sh, learning stage only)
# 3. issue 14: `base` on 2 GPUs with LPIPS on, once per $DDP_VARIANTS (ddp_suite.sh scale)
# 4. side by side, each on its own half of the cores:
#    GPU 0  `base` on 1 GPU (the baseline of 3), then issue 11's e2e (gpu_suite.sh e2e: real lrm4d-layout
#           shards read by `python -m training`, the loader alone per worker count first)
#    GPU 1  l4gm-base head dim 64 vs 128 (issue 10), then 4-view `base` inference through a CUDA graph
#           beside the direct call (issue 11)
# Results: $OUT/summary.txt (headline lines) and $OUT/results.tgz (every log and JSON).
set -u
. benchmarks/device_env.sh
x2_begin /tmp/x2f_out 510
DDP_VARIANTS=${DDP_VARIANTS:-"default nosplit+bucket100+gradview+bf16hook"}
PARTS=${PARTS:-"learn ddp side"}  # any of: learn (2), ddp (3), side (4); SIDE="ddp1 e2e headdim infer" picks within 4
SIDE=${SIDE:-"ddp1 e2e headdim infer"}
part() { [[ " $PARTS " == *" $1 "* ]]; }
side() { part side && [[ " $SIDE " == *" $1 "* ]]; }

device_env "$OUT/install.txt" || { say "wheel install failed"; exit 1; }
side infer && { [ -e /tmp/speed_data/.made ] || ( nice -n 19 python3 benchmarks/bench_speed.py prep --data /tmp/speed_data &&
  touch /tmp/speed_data/.made ) >"$OUT/prep_speed.txt" 2>&1 & }
side e2e && { [ -e /tmp/lrm4d_shards/.made ] || ( nice -n 19 python3 benchmarks/bench_speed.py prep-lrm4d --data /tmp/lrm4d_shards &&
  touch /tmp/lrm4d_shards/.made ) >"$OUT/prep_lrm4d.txt" 2>&1 & }
{ part ddp || side ddp1; } && { [ -e /tmp/ddp_data/even256/.made ] || ( nice -n 19 python3 benchmarks/ddp_data.py even /tmp/ddp_data/even256 --shards 8 \
  --per-shard 16 --size 256 && touch /tmp/ddp_data/even256/.made ) >"$OUT/prep_ddp.txt" 2>&1 & }
{ time python3 -c "from gsplat.cuda._backend import _C; print('gsplat CUDA extension:', _C)"; } >"$OUT/compile.txt" 2>&1
say "gsplat ready: $(grep real "$OUT/compile.txt"); $(nproc --all) cores; $(left) s left"

if part learn; then
  OUT=$OUT/learn SKIP_SPEED=1 SKIP_PARITY=1 LEARN_MIN=${LEARN_MIN:-1.5} bash benchmarks/l4gm_gpu_suite.sh $(left) \
    >"$OUT/learn.out" 2>&1
  say "learning runs done ($(left) s left): $(grep 'learn l4gm\|learn lrm4d' "$OUT/learn/suite.log" | cut -c1-160 | tr '\n' ' ')"
  cat "$OUT/learn/learn_table.md" >>"$OUT/summary.txt" 2>/dev/null
fi
wait  # the data sets
say "data made: $(ls -a /tmp/speed_data/.made /tmp/lrm4d_shards/.made /tmp/ddp_data/even256/.made 2>&1 | tr '\n' ' ')"

if part ddp; then
  OUT=$OUT/ddp2 STAGES=scale PRESETS=base SCALE_GPUS=2 DDP_VARIANTS="$DDP_VARIANTS" BUDGET_S=$(( $(left) - 130 )) \
    bash benchmarks/ddp_suite.sh >"$OUT/ddp2.out" 2>&1
  say "2-GPU scale done, $(left) s left"
fi

NC=$(nproc --all); H=$(( NC / 2 )); PIN0=""; PIN1=""
if command -v taskset >/dev/null && [ "$NC" -ge 4 ]; then PIN0="taskset -c 0-$(( H - 1 ))"; PIN1="taskset -c $H-$(( NC - 1 ))"; fi
(
  export CUDA_VISIBLE_DEVICES=0
  side ddp1 && OUT=$OUT/ddp1 STAGES=scale PRESETS=base SCALE_GPUS=1 BUDGET_S=30 $PIN0 bash benchmarks/ddp_suite.sh >"$OUT/ddp1.out" 2>&1
  side e2e && OUT=$OUT/e2e STAGES=e2e LOADER_WORKERS=${LOADER_WORKERS:-2,4,8} E2E_STEPS=${E2E_STEPS:-60} BUDGET_S=$(( $(left) - 15 )) \
    $PIN0 bash benchmarks/gpu_suite.sh >"$OUT/e2e.out" 2>&1
) &
(
  export CUDA_VISIBLE_DEVICES=1
  side headdim && timeout $(( $(left) / 2 )) $PIN1 python3 benchmarks/bench_l4gm_gpu.py --out "$OUT/l4gm_headdim.json" --only-variants \
    --variants l4gm-base >"$OUT/headdim.log" 2>&1
  side infer && OUT=$OUT/infer STAGES=speed SPEED_PARTS=infer INFER_MODES=graph INFER_VIEWS=4 VARIANTS=base BUDGET_S=$(( $(left) - 15 )) \
    $PIN1 bash benchmarks/gpu_suite.sh >"$OUT/infer.out" 2>&1
) &
wait
say "all done, $(left) s left"
cat "$OUT"/ddp2/summary.txt "$OUT"/ddp1/summary.txt 2>/dev/null | grep -v "^metric" >>"$OUT/summary.txt"
grep -h "e2e:\|lrm4d shards\|reconstruct_ms\|graph\|skip\|Error" "$OUT"/e2e/suite.log "$OUT"/infer/suite.log 2>/dev/null \
  | cut -c1-700 >>"$OUT/summary.txt"
tail -30 "$OUT/headdim.log" >>"$OUT/summary.txt" 2>/dev/null
cat "$OUT/summary.txt"
x2_pack
