#!/usr/bin/env bash
# Check the onnxruntime-cuda backend on a machine with an NVIDIA GPU, offline.
#
#   bash benchmarks/gpu_check.sh          # from the repository root
#
# Wheels the machine lacks travel in .whl/ (onnxruntime-gpu, the nvidia-* CUDA/cuDNN
# wheels it needs, numpy, onnx, protobuf, pluggy, msgspec, psutil, pytest and its
# dependencies, optionally magika): they are installed with --no-index --no-deps into
# /tmp/site, which goes first on PYTHONPATH. Runs nvidia-smi, the GPU tests
# (tests/test_cuda_backend.py -m gpu), then benchmarks/cuda_vs_cpu.py. Everything is
# printed and, when $OUT is set, also written to $OUT/gpu_check.log (plus
# $OUT/cuda_vs_cpu.json and $OUT/pytest-junit.xml). Exits non-zero if a step failed.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
PY=${PYTHON:-python3}
SITE=${SITE:-/tmp/site}
step() { echo; echo "=== $* ==="; }

main() {
status=0

step "python"
command -v "$PY" && "$PY" -VV || { echo "no $PY"; return 2; }

if compgen -G ".whl/*.whl" > /dev/null; then
  step "install .whl/ into $SITE (no index, no deps)"
  mkdir -p "$SITE"
  if "$PY" -m pip --version > /dev/null 2>&1; then
    "$PY" -m pip install --no-index --no-deps --disable-pip-version-check -q \
      --target "$SITE" .whl/*.whl || status=1
  else  # no pip: a wheel is a zip laid out for site-packages
    for whl in .whl/*.whl; do "$PY" -m zipfile -e "$whl" "$SITE" || status=1; done
  fi
  ls "$SITE"
fi
export PYTHONPATH="$SITE:$ROOT:$ROOT/plugins${PYTHONPATH:+:$PYTHONPATH}"
# CUDA/cuDNN from the nvidia-* wheels (carried or already installed), for libraries
# loaded by name. The backend also calls onnxruntime.preload_dlls(), but that looks only
# beside the onnxruntime package, not in another site-packages.
nvlibs=$("$PY" -c 'import glob, os, nvidia
print(":".join(d for p in nvidia.__path__ for d in sorted(glob.glob(os.path.join(p, "*", "lib")))))' \
  2> /dev/null)
export LD_LIBRARY_PATH="${nvlibs}${nvlibs:+${LD_LIBRARY_PATH:+:}}${LD_LIBRARY_PATH:-}"
echo "PYTHONPATH=$PYTHONPATH"
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"

step "nvidia-smi"
if nvidia-smi; then
  export APPLIANCE_REQUIRE_GPU=1  # a GPU is here: GPU tests must run, not skip
else
  echo "nvidia-smi failed or is absent"; status=1
fi

step "onnxruntime"
"$PY" - <<'EOF' || status=1
import importlib.metadata as md
import importlib.util as iu

for mod in ("numpy", "onnx", "onnxruntime", "pytest", "pytest_timeout", "pluggy",
            "msgspec", "psutil", "magika", "litestar", "httpx"):
    print(f"{mod:<15}", "ok" if iu.find_spec(mod) else "MISSING")
for dist in ("onnxruntime", "onnxruntime-gpu"):
    try:
        print(dist, md.version(dist))
    except md.PackageNotFoundError:
        print(dist, "not installed")
import onnxruntime as ort

print("providers:", ort.get_available_providers())
print("build:", ort.get_build_info())
from appliance_onnxruntime_cuda import OnnxRuntimeCudaBackend, both_runtimes_installed

print("both wheels:", both_runtimes_installed())
avail = OnnxRuntimeCudaBackend().availability()
print("availability:", avail)
raise SystemExit(0 if avail.available else 3)
EOF

step "pytest -m gpu"
args=(-m gpu -q -p no:cacheprovider -rA)
# conftest.py needs the server stack (litestar, httpx, ...); these tests do not.
"$PY" -c "import litestar, httpx, uvicorn, sqlite_utils" 2> /dev/null || args+=(--noconftest)
# pyproject sets 'timeout', an option only pytest-timeout knows; filterwarnings=error
# would turn the unknown-option warning into an internal error.
"$PY" -c "import pytest_timeout" 2> /dev/null || args+=(-W ignore::pytest.PytestConfigWarning)
[ -n "${OUT:-}" ] && args+=(--junitxml "$OUT/pytest-junit.xml")
"$PY" -m pytest tests/test_cuda_backend.py "${args[@]}" || status=1

step "latency: CPU vs CUDA"
bench=(--budget-s "${BUDGET_S:-3}")
[ -n "${OUT:-}" ] && bench+=(--json "$OUT/cuda_vs_cpu.json")
"$PY" benchmarks/cuda_vs_cpu.py "${bench[@]}" || status=1
if "$PY" -c "from appliance_onnxruntime_cuda import tensorrt_loadable as t; exit(not t())"; then
  step "latency: CUDA with TensorRT"
  "$PY" benchmarks/cuda_vs_cpu.py --tensorrt --budget-s "${BUDGET_S:-3}" || status=1
fi

step "done: status $status"
return "$status"
}

if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  main 2>&1 | tee "$OUT/gpu_check.log"
  exit "${PIPESTATUS[0]}"
fi
main
