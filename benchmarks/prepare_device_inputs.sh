#!/bin/bash
# The ignored inputs that the prepared device calls in BENCHMARKS.md carry, rebuilt on the CPU box from a fresh
# checkout (a new session's checkout holds none of them): the wheels, issue 22's 4x pack and issue 23's category
# experiment. Every piece is made from fixed seeds, so a rebuild is the same data (2026-12-08: the category counts
# of the three training sets matched the first build's).
#
#   bash benchmarks/prepare_device_inputs.sh [whl] [pt-scale4] [exp23cat]     (no argument: all three)
#
#   whl        .whl/: gsplat, webdataset, braceexpand, torchao (fp8), nvidia-cudnn-frontend (FP8 attention) for
#              the device's Python 3.12                                         (seconds; 11.4 MiB)
#   pt-scale4  .scratch/pt-scale4/data.tar.xz: train/new, new-x, new-x23 (724 clips of the default mix, seed 100)
#              and heldout/gltf, gltf-val (benchmarks/procedural_transfer.py render, 64 px; ~15 min on 2 idle
#              cores: 384 assets generated once, the smaller folders linked from them)       (40.8 MiB)
#   exp23cat   .exp23cat.tgz: issue 23's category scenario (data_engine_experiment.py loop-prepare; ~5 min)
#                                                                                          (11.3 MiB)
# Needs the project's environment (README's set-up) and ../shared/assets (or OBJAVERSE4D_SHARED).
set -euo pipefail
cd "$(dirname "$0")/.."
what=("$@")
[ ${#what[@]} -gt 0 ] || what=(whl pt-scale4 exp23cat)
for w in "${what[@]}"; do
  case "$w" in
    whl)
      python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl \
        gsplat==1.5.3 webdataset==1.0.2 braceexpand==0.1.7 torchao==0.18.0 nvidia-cudnn-frontend==1.16.0
      ls -la .whl ;;
    pt-scale4)
      nice python benchmarks/procedural_transfer.py render --data .scratch/pt-scale/data --assets 96 \
        --sets train/new,train/new-x,train/new-x23,heldout/gltf,heldout/gltf-val
      S=.scratch/pt-scale4
      rm -rf "$S/data"; mkdir -p "$S/data/train" "$S/data/heldout"
      for x in new new-x new-x23; do cp -al ".scratch/pt-scale/data/train/$x" "$S/data/train/"; done
      for x in gltf gltf-val; do cp -al ".scratch/pt-scale/data/heldout/$x" "$S/data/heldout/"; done
      python benchmarks/procedural_transfer.py size --data "$S/data"
      python benchmarks/procedural_transfer.py pack --data "$S/data" ;;
    exp23cat)
      python benchmarks/data_engine_experiment.py loop-prepare --out .exp23cat --assets .scratch/exp23cat/assets \
        --size gpu --scenarios category
      tar czf .exp23cat.tgz --exclude=.exp23cat/curated .exp23cat
      ls -la .exp23cat.tgz ;;
    *) echo "prepare_device_inputs.sh: unknown input '$w' (whl, pt-scale4, exp23cat)" >&2; exit 2 ;;
  esac
done
