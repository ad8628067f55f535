#!/usr/bin/env bash
# DIP's nine-image denoising benchmark at full size on one GPU (H100/H200), in about 8 minutes: 4 images
# at a time on the GPU (each fit a CUDA graph), F16, kodim03 and peppers first; no image starts after
# 7 minutes, and the table holds every image that finished. Writes $OUT/standard-gpu/table.md (and .json).
#   OUT=/tmp/out bash benchmarks/gpu_standard.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python benchmarks/standard.py --device cuda --jobs 4 --deadline 420 --out "${OUT:-runs}/standard-gpu" "$@"
