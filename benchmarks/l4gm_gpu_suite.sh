#!/bin/bash
# The L4GM family's GPU session in one command (one lease): install the carried wheels, compile gsplat,
# run the L4GM render-path parity tests (gsplat vs the torch twin), measure training and 16-frame
# inference speed per preset, then (if a pack of rendered clips was carried) train both families for
# the same minutes and score them on the same held-out clips, each with its own protocol.
# At most 6 files come back under $OUT: suite.log, env.txt, parity.txt, l4gm_speed.json,
# learn_lrm4d.json, learn_l4gm.json. A failing stage does not stop the next one.
#
#   device run, carry [".whl", ".trainpack"]:  bash benchmarks/l4gm_gpu_suite.sh [BUDGET_S]
#   env: SKIP_PARITY=1 skips the parity tests; BENCH_ARGS adds to bench_l4gm_gpu.py's arguments (e.g.
#   "--presets l4gm-base --variants"); LEARN_MIN fixes each family's learning-run minutes; VARIANTS=1 also
#   times l4gm-base's attention variants (head dim 64/128 x flash/cuDNN) while gsplat compiles (variants.json)
#   .whl:       gsplat 1.5.3, webdataset 1.0.2, braceexpand 0.1.7 wheels for Python 3.12 (see README)
#   .trainpack: train/ and heldout/ dataset folders rendered by `pipeline render` (optional)
set -u
BUDGET=${1:-400}
OUT=${OUT:-/tmp/l4gm_suite_out}
mkdir -p "$OUT"
START=$(date +%s)
LOG="$OUT/suite.log"
elapsed() { echo $(( $(date +%s) - START )); }
note() { echo "[$(elapsed)s] $*" | tee -a "$LOG"; }

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  >>"$LOG" 2>&1 || { note "wheel install failed"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 MAX_JOBS=16 TORCH_CUDA_ARCH_LIST=9.0
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
{
  date -u; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  python3 -c "import torch, gsplat; print('torch', torch.__version__, 'gsplat', gsplat.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
} >"$OUT/env.txt" 2>&1

note "compiling gsplat"
if [ -n "${VARIANTS:-}" ]; then  # GPU work that needs no gsplat, on the GPU while the CPU compiles
  timeout 120 python3 benchmarks/bench_l4gm_gpu.py --only-variants --out "$OUT/variants.json" >>"$LOG" 2>&1 &
fi
{ time python3 -c "from gsplat.cuda._backend import _C; print('gsplat CUDA extension:', _C)"; } >>"$LOG" 2>&1
wait
if [ -z "${SKIP_PARITY:-}" ]; then
  note "parity tests (L4GM render path)"
  timeout 150 python3 -m pytest -q -p no:cacheprovider -o addopts="" tests/training/test_l4gm_gpu.py >"$OUT/parity.txt" 2>&1
  note "parity: $(tail -1 "$OUT/parity.txt")"
fi

note "speed benchmarks"
timeout 200 python3 benchmarks/bench_l4gm_gpu.py --out "$OUT/l4gm_speed.json" ${BENCH_ARGS:-} >>"$LOG" 2>&1
note "speed: $(test -s "$OUT/l4gm_speed.json" && echo ok || echo missing)"

if [ -d .trainpack/train ] && [ -d .trainpack/heldout ]; then
  LEFT=$(( BUDGET - $(elapsed) ))
  if [ "$LEFT" -gt 150 ]; then
    MIN=${LEARN_MIN:-$(python3 -c "print(round(($LEFT - 60) / 2 / 60, 2))")}  # the two families get the same minutes
    for fam in lrm4d l4gm; do
      if [ $fam = lrm4d ]; then P=small; else P=l4gm-small; fi
      note "learning run $fam ($P): $MIN minutes"
      timeout $(( LEFT / 2 )) python3 benchmarks/gpu_learn.py --train .trainpack/train --heldout .trainpack/heldout \
        --out /tmp/learn_$fam --run /tmp/learn_run_$fam --minutes "$MIN" --preset $P --set data.image_size=64 \
        --set data.num_workers=6 --set batch_size=16 >>"$LOG" 2>&1
      cp /tmp/learn_$fam/learn.json "$OUT/learn_$fam.json" 2>/dev/null
      note "learn $fam: $(test -s "$OUT/learn_$fam.json" && echo ok || echo missing)"
    done
  else
    note "learning runs skipped: only ${LEFT}s left"
  fi
fi
note "suite finished"
