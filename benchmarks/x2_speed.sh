#!/bin/bash
# Issues 11 and 10 in one `nvidia-h200-x2` call (TOTAL_S, default 540 s, of wall time), one GPU per side:
#   device run, kind nvidia-h200-x2, carry [".whl"]:  bash benchmarks/x2_speed.sh
# 1. the carried wheels (once per machine); replayed batches and lrm4d-layout shards made in the background
#    (niced) while gsplat compiles once
# 2. side by side, each side pinned to its own half of the cores (a 16-core GPU host each):
#    GPU 0  issue 11: `base` inference ($INFER_VIEWS input views, CUDA graph beside the direct call) at
#           $INFER_HEADS attention heads, then the `base` training-step variants $VARIANTS0 (bench_speed.py
#           variant syntax; nh = heads), then the time split of $SPLIT0
#    GPU 1  ($SIDE1 picks) l4gm: issue 10's l4gm-base 16-frame inference eager / compiled / CUDA graph
#           ($L4GM_MODES); tests: pytest -m gpu tests/training; e2e: issue 11's `python -m training` on real
#           lrm4d-layout shards (the loader alone per worker count first); small: the `small` variants
#           $VARIANTS1 (and the time split of $SPLIT1 when set)
# Results: $OUT/summary.txt (the headline lines) and $OUT/results.tgz (every log and JSON).
set -u
. benchmarks/device_env.sh
x2_begin /tmp/x2s_out 540
INFER_HEADS=${INFER_HEADS:-"16,8"}
INFER_VIEWS=${INFER_VIEWS:-"4,24"}
VARIANTS0=${VARIANTS0:-"base:nh=8 base base:nh=8:bs=12 base:nh=8:lpsize=128 base:lpsize=128 base:nh=8:cudnnbench=1 base:nh=8:head=1 base:lpevery=2"}
SPLIT0=${SPLIT0:-"base:nh=8"}
VARIANTS1=${VARIANTS1:-"small small:nh=4 small:lpsize=64 small:nh=4:lpsize=64:cudnnbench=1 small:nh=4:lpevery=2"}
L4GM_MODES=${L4GM_MODES:-"eager,compiled,graph"}
SIDES=${SIDES:-"0 1"}
SIDE1=${SIDE1:-"l4gm tests e2e small"}  # what GPU 1 runs, in this order
INFER_MODES=${INFER_MODES:-graph}
in1() { [[ " $SIDE1 " == *" $1 "* ]]; }

device_env "$OUT/install.txt" || { say "wheel install failed"; exit 1; }
[ -e /tmp/speed_data/.made ] || ( nice -n 19 python3 benchmarks/bench_speed.py prep --data /tmp/speed_data &&
  touch /tmp/speed_data/.made ) >"$OUT/prep_speed.txt" 2>&1 &
in1 e2e && { [ -e /tmp/lrm4d_shards/.made ] || ( nice -n 19 python3 benchmarks/bench_speed.py prep-lrm4d --data /tmp/lrm4d_shards &&
  touch /tmp/lrm4d_shards/.made ) >"$OUT/prep_lrm4d.txt" 2>&1 & }
{ time python3 -c "from gsplat.cuda._backend import _C; print('gsplat CUDA extension:', _C)"; } >"$OUT/compile.txt" 2>&1
say "gsplat ready: $(grep real "$OUT/compile.txt"); $(nproc --all) cores; $(left) s left"

NC=$(nproc --all); H=$(( NC / 2 )); PIN0=""; PIN1=""
if command -v taskset >/dev/null && [ "$NC" -ge 4 ]; then PIN0="taskset -c 0-$(( H - 1 ))"; PIN1="taskset -c $H-$(( NC - 1 ))"; fi
if [[ " $SIDES " == *" 0 "* ]]; then
(
  export CUDA_VISIBLE_DEVICES=0
  while [ ! -e /tmp/speed_data/.made ] && [ "$(left)" -gt 60 ]; do sleep 2; done
  OUT=$OUT/g0 STAGES=speed SPEED_PARTS=infer,train,split VARIANTS="$VARIANTS0" SPLIT="$SPLIT0" INFER_MODES="$INFER_MODES" \
    INFER_VIEWS="$INFER_VIEWS" INFER_HEADS="$INFER_HEADS" TORCHINDUCTOR_COMPILE_THREADS=8 BUDGET_S=$(( $(left) - 10 )) \
    $PIN0 bash benchmarks/gpu_suite.sh >"$OUT/g0.out" 2>&1
) &
fi
if [[ " $SIDES " == *" 1 "* ]]; then
(
  export CUDA_VISIBLE_DEVICES=1 TORCHINDUCTOR_COMPILE_THREADS=8
  if in1 l4gm; then
    timeout 150 $PIN1 python3 benchmarks/bench_l4gm_gpu.py --out "$OUT/l4gm_infer.json" --presets l4gm-base \
      --infer-only --infer-modes "$L4GM_MODES" >"$OUT/l4gm_infer.log" 2>&1
    say "l4gm inference: $(grep -c '^inference' "$OUT/l4gm_infer.log") rows ($(left) s left)"
  fi
  if in1 tests; then
    timeout 150 $PIN1 python3 -m pytest -q -p no:cacheprovider -o addopts="" -m gpu tests/training >"$OUT/gputests.txt" 2>&1
    say "GPU tests: $(tail -1 "$OUT/gputests.txt") ($(left) s left)"
  fi
  if in1 e2e; then
    while [ ! -e /tmp/lrm4d_shards/.made ] && [ "$(left)" -gt 60 ]; do sleep 2; done
    OUT=$OUT/e2e STAGES=e2e LOADER_WORKERS=${LOADER_WORKERS:-2,4,8} E2E_STEPS=${E2E_STEPS:-60} \
      BUDGET_S=$(( $(left) > 400 ? $(left) - 150 : $(left) * 2 / 3 )) $PIN1 bash benchmarks/gpu_suite.sh >"$OUT/e2e.out" 2>&1
    say "e2e done ($(left) s left)"
  fi
  if in1 small; then
    while [ ! -e /tmp/speed_data/.made ] && [ "$(left)" -gt 60 ]; do sleep 2; done
    OUT=$OUT/g1s STAGES=speed SPEED_PARTS=train${SPLIT1:+,split} VARIANTS="$VARIANTS1" SPLIT="${SPLIT1:-small}" \
      BUDGET_S=$(( $(left) - 10 )) $PIN1 bash benchmarks/gpu_suite.sh >"$OUT/g1s.out" 2>&1
  fi
) &
fi
wait
say "all done, $(left) s left"
grep -h "e2e:\|lrm4d shards\|MFU\|skip\|Error" "$OUT"/g0/suite.log "$OUT"/e2e/suite.log "$OUT"/g1s/suite.log \
  2>/dev/null | cut -c1-400 >>"$OUT/summary.txt"
python3 benchmarks/x2_summary.py "$OUT" infer >>"$OUT/summary.txt" 2>&1
grep -h "passed\|failed\|error" "$OUT/gputests.txt" 2>/dev/null | tail -5 >>"$OUT/summary.txt"
cat "$OUT/summary.txt"
x2_pack
