# Sourced by the device suites (benchmarks/*.sh); device_env runs once their log file is known:
#   . benchmarks/device_env.sh; device_env "$LOG" || { note "wheel install failed"; exit 1; }
# device_env LOGFILE installs the carried wheels (.whl/: gsplat, webdataset, braceexpand for Python 3.12) into
# /tmp/site once per machine (/tmp/site/.installed: a suite started beside or after another must not replace
# them under its running processes), then sets the environment every suite runs under: the wheels and the
# checkout on PYTHONPATH, gsplat's kernel build for Hopper, unbuffered output, and NVLink multicast off in
# NCCL, PyTorch and NVSHMEM (a program using it can put the host's shared GPUs out of service).
device_env() {
  if [ ! -e /tmp/site/.installed ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      .whl/*.whl >>"$1" 2>&1 && touch /tmp/site/.installed || return 1
  fi
  export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 MAX_JOBS=16 TORCH_CUDA_ARCH_LIST=9.0
  export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
}

# random_lpips PATH: an LPIPS weights file of the real shape with random weights (lin weights made positive):
# the devices have no real VGG/LPIPS weights, and this gives the loss its real cost
random_lpips() {
  python3 -c "import sys, torch; from training.losses.lpips import LPIPS; n = LPIPS(); [l.weight.data.abs_() for l in n.lin]; torch.save(n.state_dict(), sys.argv[1])" "$1"
}

# The x2 suites' time budget and summary (x2_suite, x2_followup, x2_speed, x2_quality):
#   x2_begin DEFAULT_OUT DEFAULT_TOTAL_S  sets OUT (unless given) and END = now + TOTAL_S (or the default),
#     and defines `left` (seconds to END) and `say` (a timestamped line, also appended to $OUT/summary.txt);
#   x2_pack  puts everything under $OUT but summary.txt into $OUT/results.tgz (a device call brings back at
#     most 8 files).
x2_begin() {
  OUT=${OUT:-$1}
  mkdir -p "$OUT"
  END=$(( $(date +%s) + ${TOTAL_S:-$2} ))
  left() { echo $(( END - $(date +%s) )); }
  say() { echo "[$(date -u +%T)] $*" | tee -a "$OUT/summary.txt"; }
}
x2_pack() {
  local tgz="/tmp/$(basename "$OUT")_results.tgz"
  ( cd "$OUT" && tar -czf "$tgz" --exclude=./summary.txt . &&
    find . -mindepth 1 -maxdepth 1 ! -name summary.txt -exec rm -rf {} + ; mv "$tgz" results.tgz )
}
