#!/usr/bin/env bash
# The paper-scale GPU figures in one prepared run (bench/gpu_check.py; a few minutes on one
# H200, stopped at 8): open_clip ViT-L-14 (random init, bf16, channels_last) images/s and
# texts/s through the embed stage against the forward alone, and one 290K x 768 Combiner
# epoch (goal: under 2 s). Writes one JSON.
#
# Uses only this repository and the wheels bench/gpu_wheels.txt lists (the GPU machine has
# torch and the rest, and no package registry). Once, on a machine with one, for the GPU
# machine's Python (3.12, x86_64; GPU_CHECK_PY / GPU_CHECK_PLATFORM override):
#     bench/gpu_check.sh --download          # the wheels -> .gpu-wheels/ (git-ignored; carry it)
# Then on the GPU machine, from the repository root:
#     bench/gpu_check.sh [OUT.json]          # default: $OUT/gpu_check.json, else ./gpu_check.json
# GPU_CHECK_ARGS passes flags to bench/gpu_check.py (sizes, --model, --device): with
# "--tiny --device cpu --images 64 ..." the same script runs on a CPU (tests/test_gpu_check.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WHEELS=${GPU_CHECK_WHEELS:-.gpu-wheels}

if [[ "${1:-}" == "--download" ]]; then
  exec "$PYTHON" -m pip download --no-deps --only-binary=:all: --dest "$WHEELS" \
    --python-version "${GPU_CHECK_PY:-3.12}" --platform "${GPU_CHECK_PLATFORM:-manylinux_2_17_x86_64}" \
    --platform manylinux2014_x86_64 --platform any -r bench/gpu_wheels.txt
fi

if ! "$PYTHON" -c "import open_clip, pydantic" 2>/dev/null; then
  echo "gpu_check: installing bench/gpu_wheels.txt from $WHEELS" >&2
  "$PYTHON" -m pip install --quiet --no-index --no-deps --find-links "$WHEELS" -r bench/gpu_wheels.txt
fi

out=${1:-${OUT:+$OUT/gpu_check.json}}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# shellcheck disable=SC2086  # GPU_CHECK_ARGS is a list of flags
exec timeout "${GPU_CHECK_TIMEOUT_S:-480}" "$PYTHON" -m bench.gpu_check --out "${out:-gpu_check.json}" ${GPU_CHECK_ARGS:-}
