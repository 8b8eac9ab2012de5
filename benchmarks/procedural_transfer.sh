#!/bin/bash
# Issue 22's measurement in one device call (one GPU, ~10 minutes): install the carried wheels, then
# benchmarks/procedural_transfer.py device (every arm x seed trained at once on the GPU for TRAIN_MIN minutes,
# each scored on the four held-out sets), then pack. What comes back under $OUT: summary.txt (the stage log and
# the tables) and results.tgz (table.md; per run: learn.json, learn.log, metrics per held-out set, grids).
#
#   device run, carry [".whl", ".scratch/procedural_transfer/data.tar.gz"]:  bash benchmarks/procedural_transfer.sh
#   (the archive from `python benchmarks/procedural_transfer.py pack`; unpacked here into .scratch/procedural_transfer/data)
#   env: TRAIN_MIN (default 4), ARMS (default old,new,new-notex,new-noaug,new-noart), SEEDS (default 0,1)
set -u
. benchmarks/device_env.sh
x2_begin /tmp/procedural_transfer_out 580
device_env "$OUT/summary.txt" || { say "wheel install failed"; exit 1; }
say "start: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader)"
if [ ! -d .scratch/procedural_transfer/data ]; then
  tar -xzf .scratch/procedural_transfer/data.tar.gz -C .scratch/procedural_transfer || { say "no data: carry .scratch/procedural_transfer/data.tar.gz"; exit 1; }
fi
say "data: $(du -sh .scratch/procedural_transfer/data | cut -f1)"
timeout $(( $(left) - 20 )) python3 benchmarks/procedural_transfer.py device --data .scratch/procedural_transfer/data \
  --out "$OUT/runs" --arms "${ARMS:-old,new,new-notex,new-noaug,new-noart}" --seeds "${SEEDS:-0,1}" \
  --train-minutes "${TRAIN_MIN:-4}" 2>&1 | tee -a "$OUT/summary.txt"
say "device stage exit ${PIPESTATUS[0]}"
python3 benchmarks/procedural_transfer.py table "$OUT/runs" > "$OUT/table.md" 2>&1
cat "$OUT/table.md" >> "$OUT/summary.txt"
x2_pack
say "done"
