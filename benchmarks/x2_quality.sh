#!/bin/bash
# Issue 11's quality checks for the speed defaults, beside the inference and step rows they decide, in one
# `nvidia-h200-x2` call (TOTAL_S, default 540 s, of wall time):
#   device run, kind nvidia-h200-x2, carry [".whl", ".trainpack"]:  bash benchmarks/x2_quality.sh
# GPU 1  learning runs, all at once on one GPU (equal steps, so sharing the GPU changes their speed, not their
#        result; one summary line per run): `small` at 64 px on .trainpack for $LEARN_STEPS steps per (arm, seed), arms $ARMS (--set lists,
#        ',' between settings), seeds $SEEDS, LPIPS on with a random-weight VGG file (the device has no real
#        weights); each scored on .trainpack/heldout by gpu_learn.py (sparse4 protocol); then the GPU tests
# GPU 0  `base` inference through a CUDA graph beside the direct call ($INFER_VIEWS views, $INFER_HEADS heads),
#        the `base` step variants $VARIANTS0, then l4gm-base / l4gm-small 16-frame inference ($L4GM_MODES)
# Results: $OUT/summary.txt (headline lines, the learning table) and $OUT/results.tgz (every log and JSON).
set -u
. benchmarks/device_env.sh
x2_begin /tmp/x2q_out 540
LEARN_STEPS=${LEARN_STEPS:-500}
SEEDS=${SEEDS:-"0 1"}
ARMS=${ARMS:-"hd64:model.heads=8 hd128:model.heads=4 hd128every2:model.heads=4,loss.lpips_every=2"}
INFER_HEADS=${INFER_HEADS:-"16,8"}
INFER_VIEWS=${INFER_VIEWS:-"4,24"}
VARIANTS0=${VARIANTS0:-"base:nh=8:lpevery=2 base:nh=8:lpevery=3"}
L4GM_MODES=${L4GM_MODES:-"graph,compiled"}

device_env "$OUT/install.txt" || { say "wheel install failed"; exit 1; }
[ -e /tmp/speed_data/.made ] || ( nice -n 19 python3 benchmarks/bench_speed.py prep --data /tmp/speed_data &&
  touch /tmp/speed_data/.made ) >"$OUT/prep_speed.txt" 2>&1 &
random_lpips /tmp/lpips_random.pt
{ time python3 -c "from gsplat.cuda._backend import _C; print('gsplat CUDA extension:', _C)"; } >"$OUT/compile.txt" 2>&1
say "gsplat ready: $(grep real "$OUT/compile.txt"); $(nproc --all) cores; $(left) s left"

NC=$(nproc --all); H=$(( NC / 2 )); PIN0=""; PIN1=""
if command -v taskset >/dev/null && [ "$NC" -ge 4 ]; then PIN0="taskset -c 0-$(( H - 1 ))"; PIN1="taskset -c $H-$(( NC - 1 ))"; fi
(
  export CUDA_VISIBLE_DEVICES=1 TORCHINDUCTOR_COMPILE_THREADS=2
  n=0
  for arm in $ARMS; do
    name=${arm%%:*}; sets=${arm#*:}
    for seed in $SEEDS; do
      extra=""; for kv in ${sets//,/ }; do extra="$extra --set $kv"; done
      timeout $(( $(left) - 150 )) $PIN1 python3 benchmarks/gpu_learn.py --train .trainpack/train --heldout .trainpack/heldout \
        --out "$OUT/learn/$name-s$seed" --run "/tmp/learn_run_$name-s$seed" --steps "$LEARN_STEPS" --preset small \
        --set data.image_size=64 --set data.num_workers=2 --set batch_size=16 --set seed=$seed \
        --set loss.lpips_weights=/tmp/lpips_random.pt $extra >"$OUT/learn_$name-s$seed.log" 2>&1 &
      n=$(( n + 1 ))
    done
  done
  wait
  say "learning runs done ($(left) s left): $(ls "$OUT"/learn/*/learn.json 2>/dev/null | wc -l) of $n"
  python3 benchmarks/x2_summary.py "$OUT" learn >>"$OUT/summary.txt" 2>&1
  timeout $(( $(left) - 5 )) $PIN1 python3 -m pytest -q -p no:cacheprovider -o addopts="" -m gpu tests/training \
    >"$OUT/gputests.txt" 2>&1
  say "GPU tests: $(tail -1 "$OUT/gputests.txt") ($(left) s left)"
) &
(
  export CUDA_VISIBLE_DEVICES=0 TORCHINDUCTOR_COMPILE_THREADS=8
  while [ ! -e /tmp/speed_data/.made ] && [ "$(left)" -gt 60 ]; do sleep 2; done
  OUT=$OUT/g0 STAGES=speed SPEED_PARTS=infer,train VARIANTS="$VARIANTS0" INFER_MODES=graph \
    INFER_VIEWS="$INFER_VIEWS" INFER_HEADS="$INFER_HEADS" BUDGET_S=$(( $(left) - 130 )) \
    $PIN0 bash benchmarks/gpu_suite.sh >"$OUT/g0.out" 2>&1
  say "base inference and steps done ($(left) s left)"
  timeout $(( $(left) - 10 )) $PIN0 python3 benchmarks/bench_l4gm_gpu.py --out "$OUT/l4gm_infer.json" \
    --presets l4gm-base,l4gm-small --infer-only --infer-modes "$L4GM_MODES" >"$OUT/l4gm_infer.log" 2>&1
  say "l4gm inference: $(grep -c '^inference' "$OUT/l4gm_infer.log") rows ($(left) s left)"
) &
wait
say "all done, $(left) s left"
grep -h "MFU\|skip\|Error" "$OUT"/g0/suite.log 2>/dev/null | cut -c1-400 >>"$OUT/summary.txt"
python3 benchmarks/x2_summary.py "$OUT" infer >>"$OUT/summary.txt" 2>&1
grep -h "passed\|failed\|error" "$OUT/gputests.txt" 2>/dev/null | tail -5 >>"$OUT/summary.txt"
cat "$OUT/summary.txt"
x2_pack
