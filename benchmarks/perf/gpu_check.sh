#!/usr/bin/env bash
# The GPU check in one command, from the repository root (about 8 minutes on one GPU):
#   bash benchmarks/perf/gpu_check.sh [RESULTS_DIR]
# 1. tests/test_gpu.py (skipped, and said so, without CUDA);
# 2. benchmarks/perf/gpu_check.py: training and inference throughput at K = 2, 10, 50 in
#    float32 and bf16, a 60k-row MNIST-shaped epoch at K = 10, compile on/off, peak GPU
#    memory -> RESULTS_DIR/gpu_check.json (with the pytest log next to it).
# Without CUDA both steps still run: the tests report as skipped and the benchmark runs a
# tiny CPU mode that only checks the script. PYTHON picks the interpreter (default python).
set -u
cd "$(dirname "$0")/../.."
PY="${PYTHON:-python}"
OUT="${1:-benchmarks/results/perf/gpu_check_$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: torch sees no CUDA device: GPU tests will be skipped and the benchmark runs in CPU mode."
fi
echo "== tests/test_gpu.py"
"$PY" -m pytest tests/test_gpu.py -q -p no:cacheprovider -rs 2>&1 | tee "$OUT/test_gpu.log"
tests_rc=${PIPESTATUS[0]}
echo "== benchmarks/perf/gpu_check.py"
"$PY" -m benchmarks.perf.gpu_check --out "$OUT/gpu_check.json" 2>&1 | tee "$OUT/gpu_check.log"
bench_rc=${PIPESTATUS[0]}
echo "gpu_check: tests exit code $tests_rc, benchmark exit code $bench_rc; results in $OUT"
exit $(( tests_rc != 0 || bench_rc != 0 ))
