#!/usr/bin/env bash
# The GPU check: everything a lent GPU should measure, in one script, under 10 minutes on one GPU.
#   make setup && bash benchmarks/gpu_check.sh        one GPU: CUDA tests, population benchmark at
#                                                     N = 1000, trainer step, a short ntune run of the
#                                                     sparsity study through Ray with fractional GPUs
#   bash benchmarks/gpu_check.sh --cpu                the same four steps at tiny sizes on CPU (the
#                                                     test suite runs it: tests/test_gpu_check.py)
# Each step prints its figures under a "== k." header; the run's experiment goes to $OUT (a temporary
# folder unless set). Record the figures in benchmarks/README.md ("GPU check").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-$(mktemp -d)}
export RAY_AUTH_MODE=disabled

if [ "${1:-}" = "--cpu" ]; then
  device=cpu sizes="60" ks="1 2" frames=400 iterations=10
  run_set=(--set simulation.n_neurons=30 --set simulation.n_frames=400 --set training.data_augmentation_loop=1
           --set resources.cpu=1 --set resources.gpu=0 --set max_concurrent_trials=2)
elif [ -z "${1:-}" ]; then
  device=cuda sizes="1000" ks="1 16 64" frames=20000 iterations=300
  run_set=(--set simulation.n_frames=20000 --set training.data_augmentation_loop=2
           --set resources.cpu=1 --set resources.gpu=0.25 --set max_concurrent_trials=4)
else
  echo "usage: bash benchmarks/gpu_check.sh [--cpu]" >&2
  exit 2
fi
start=$(date +%s)

echo "== 1. CUDA tests (pytest -m gpu)"
if [ "$device" = cuda ]; then
  $PY -m pytest -q -m gpu -p no:cacheprovider
else
  echo "skipped: no GPU"
fi

echo "== 2. population benchmark ($device, N = $sizes)"
$PY benchmarks/population_speed.py --device "$device" --sizes $sizes --ks $ks --frames "$frames" \
  --iterations "$iterations"

echo "== 3. training step ($device)"
$PY benchmarks/trainer_speed.py --device "$device" --sizes $sizes --min-time 1 --upstream-max-n 0

echo "== 4. ntune run of the sparsity study, 2 trials per level, through Ray ($device)"
run_start=$(date +%s)
$PY -m ntune.cli.app run configs/sparsity_study.yaml --name gpu_check --storage "$OUT" --fresh \
  --set n_iter_block=2 --set robustness_repeats=1 --set held_out=0 --set 'block_trials={}' \
  --set training.n_log_points=2 "${run_set[@]}"
echo "study wall time: $(( $(date +%s) - run_start )) s"

echo "== done in $(( $(date +%s) - start )) s; experiment in $OUT"
