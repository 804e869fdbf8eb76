#!/usr/bin/env bash
# On a GPU node, from the repository root: the GPU tests, then the GPU benchmark.
#   DLHPC_DATA=/path/to/mnist benchmarks/gpu_check.sh [OUTDIR]
# Writes OUTDIR/pytest.log, OUTDIR/bench.log and OUTDIR/gpu.json (every figure, machine-readable).
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR=${1:-gpu-results}
mkdir -p "$OUTDIR"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 DLHPC_SITE=${DLHPC_SITE:-/nonexistent}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
timeout "${TEST_TIMEOUT:-240}" "$PY" -m pytest -q -p no:cacheprovider -o faulthandler_timeout=120 tests/live/test_gpu.py 2>&1 \
  | tee "$OUTDIR/pytest.log"
timeout "${BENCH_TIMEOUT:-400}" "$PY" benchmarks/gpu.py --out "$OUTDIR/gpu.json" --budget-s "${BENCH_BUDGET:-300}" ${BENCH_ARGS:-} 2>&1 \
  | tee "$OUTDIR/bench.log"
