#!/bin/bash
# The GPU checks, in one run on a machine with CUDA, CuPy and PyTorch but no network
# (the `device` machines): the whole suite under MPNN_BACKEND=cupy, then the CNN and
# MLP workloads against PyTorch on CUDA. Run from the repository root; logs go to $OUT
# (or ./gpu-logs). A .pth file makes the package importable as if installed, so the
# tests that start a fresh interpreter find it too.
set -u
OUT=${OUT:-gpu-logs}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MPNN_BACKEND=cupy
SITE=$(python3 -c "import site; print(site.getsitepackages()[0])")
echo "$PWD/src" > "$SITE/mpnn_dev.pth"
{
    nvidia-smi -L
    python3 -c "import sys, numpy, cupy, torch; print(sys.version.split()[0], 'numpy', numpy.__version__, 'cupy', cupy.__version__, 'torch', torch.__version__)"
    python3 -c "import mpneuralnetwork as m; print('backend', m.xp.__name__)"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
start=$SECONDS
timeout "${SUITE_TIMEOUT:-300}" python3 -m pytest -q -p no:cacheprovider tests > "$OUT/pytest.txt" 2>&1
echo "pytest rc=$? in $((SECONDS - start)) s"
tail -30 "$OUT/pytest.txt"
start=$SECONDS
timeout "${BENCH_TIMEOUT:-170}" python3 benchmark/run.py --backend cupy --rounds 2 \
    --workloads cnn,supercnn,cifar,mlp --no-predict --wait-idle 0 > "$OUT/bench.txt" 2>&1
echo "benchmark rc=$? in $((SECONDS - start)) s"
tail -8 "$OUT/bench.txt"
