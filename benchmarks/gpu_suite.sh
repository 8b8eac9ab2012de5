#!/bin/bash
# The trainer's whole GPU session in one command (one lease): install the carried wheels, compile
# gsplat, run the gsplat/torch parity tests, measure training and inference speed, then (if a pack
# of rendered clips was carried) train on it and score held-out clips. Every stage writes under $OUT
# and a failing stage does not stop the next one.
#
#   device run, carry [".whl", ".trainpack"]:  bash benchmarks/gpu_suite.sh
#   .whl:       gsplat 1.5.3, webdataset 1.0.2, braceexpand 0.1.7 wheels for Python 3.12 (see README)
#   .trainpack: train/ and heldout/ dataset folders rendered by `pipeline render` (optional)
#
# Budget: about 9.5 minutes in all; the learning run gets what the earlier stages leave.
set -u
OUT=${OUT:-/tmp/gpu_suite_out}
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
  python3 -c "import torch, gsplat, webdataset, numpy, PIL; print('torch', torch.__version__, 'gsplat', gsplat.__version__, 'webdataset', webdataset.__version__, 'numpy', numpy.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
  nproc; free -g | head -2; uptime
} >"$OUT/env.txt" 2>&1
note "env: $(tail -n +3 "$OUT/env.txt" | head -1)"

note "compiling gsplat"
{ time python3 -c "from gsplat.cuda._backend import _C; print('gsplat CUDA extension:', _C)"; } >"$OUT/compile.txt" 2>&1
note "compile: $(grep real "$OUT/compile.txt")"

note "parity tests"
timeout 300 python3 -m pytest -q -p no:cacheprovider -o addopts="" tests/training/test_raster_parity.py >"$OUT/parity.txt" 2>&1
note "parity: $(tail -1 "$OUT/parity.txt")"

note "speed benchmarks"
timeout 240 python3 benchmarks/bench_train_gpu.py --out "$OUT/speed.json" >>"$LOG" 2>&1
note "speed: done ($(test -s "$OUT/speed.json" && echo ok || echo missing))"

if [ -d .trainpack/train ] && [ -d .trainpack/heldout ]; then
  LEFT=$(( 560 - $(elapsed) ))
  if [ "$LEFT" -gt 120 ]; then
    MIN=$(python3 -c "print(round(($LEFT - 75) / 60, 2))")  # leave ~75 s for start-up, evaluation and slack
    note "learning run: $MIN minutes of training"
    timeout $(( LEFT - 10 )) python3 benchmarks/gpu_learn.py --train .trainpack/train --heldout .trainpack/heldout \
      --out "$OUT" --minutes "$MIN" --preset small --set data.image_size=64 --set data.num_workers=12 \
      --set batch_size=16 >>"$LOG" 2>&1
    note "learn: $(test -s "$OUT/learn.json" && echo ok || echo missing)"
  else
    note "learning run skipped: only ${LEFT}s left"
  fi
fi
note "suite finished"
