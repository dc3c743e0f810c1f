#!/usr/bin/env bash
# bench/gpu_check.sh - kiln's CUDA target on a GPU machine, in under 5 minutes:
# builds every zoo model and real export for the CPU and for CUDA, checks the
# CUDA builds against the CPU builds, and times kiln-cuda against PyTorch
# eager and PyTorch CUDA-graph replay of the same graph (bench/gpu_check.py).
#
#   bench/gpu_check.sh --prepare   on the build machine (where LLVM 22 is):
#                                  builds a kiln binary that needs no LLVM
#                                  into bench/gpu/ (git-ignored) with the
#                                  libraries it needs and the real exports
#                                  of ../shared/models
#   bench/gpu_check.sh             on the GPU machine, from the repository
#                                  root with bench/gpu/ beside it: needs
#                                  nvcc, c++, python3 with torch, numpy,
#                                  onnx and onnxruntime; writes
#                                  $OUT/gpu_check.json (OUT defaults to WORK)
#
# WORK (default /tmp/kiln-gpu) holds the generated models and libraries.
set -euo pipefail
cd "$(dirname "$0")/.."
GPU=bench/gpu

if [ "${1:-}" = "--prepare" ]; then
  cmake -S . -B build-static -G Ninja -DCMAKE_BUILD_TYPE=Release -DKILN_STATIC_MLIR=ON \
    -DPython3_EXECUTABLE="$PWD/.venv/bin/python" >/dev/null
  cmake --build build-static --target kiln
  rm -rf "$GPU" && mkdir -p "$GPU/lib" "$GPU/real"
  strip -o "$GPU/kiln" build-static/bin/kiln
  # The shared libraries kiln needs that a CUDA image does not have.
  ldd build-static/bin/kiln | awk '/libonnx|libprotobuf/ { print $3 }' | xargs -I{} cp -L {} "$GPU/lib/"
  for m in ../shared/models/*/; do cp -r "$m" "$GPU/real/"; done
  du -sh "$GPU"
  exit 0
fi

[ -x "$GPU/kiln" ] || { echo "gpu_check: run 'bench/gpu_check.sh --prepare' on the build machine first" >&2; exit 1; }
WORK=${WORK:-/tmp/kiln-gpu}
export OUT=${OUT:-$WORK}
rm -rf "$WORK/so" && mkdir -p "$WORK/so" "$OUT"
export PATH="$PATH:/usr/local/cuda/bin"
export LD_LIBRARY_PATH="$PWD/$GPU/lib:$WORK:${LD_LIBRARY_PATH:-}"
export KILN_BIN="$PWD/$GPU/kiln" KILN_RUNTIME_LIB="$WORK/libkiln_runtime.so"
start=$(date +%s)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

# The runtime has no dependency on the compiler: built here from its sources.
c++ -std=c++17 -O2 -shared -fPIC -fvisibility=hidden -fno-exceptions -DKILN_RUNTIME_BUILD \
  -Iruntime/include runtime/src/*.cpp -o "$KILN_RUNTIME_LIB" -ldl -lpthread

python3 bench/models/zoo.py "$WORK/zoo" >/dev/null
# Calibration rows for the fp8 builds (their input scales).
python3 - "$WORK" <<'PY'
import os, sys
import numpy as np, onnx
sys.path.insert(0, "bench/models")
import zoo
work = sys.argv[1]
for name in ["dlrm_mlperf", "dcnv2", "minilm_l6_s128"]:
    model = onnx.load(os.path.join(work, "zoo", name, "model.onnx"), load_external_data=False)
    np.savez(os.path.join(work, "zoo", name, "calibration.npz"), **zoo.random_inputs(model, 256, seed=7))
PY
rm -rf "$WORK/real" && cp -r "$GPU/real" "$WORK/real"

# One line per compile: source, output, kiln compile options.
jobs="$WORK/jobs.txt"
: >"$jobs"
for dir in "$WORK"/zoo/*/; do
  name=$(basename "$dir")
  buckets=1,64,1024,8192
  case $name in minilm*) buckets=1,64,512 ;; esac
  echo "$dir/model.onnx $WORK/so/$name.cpu.so --batch 64" >>"$jobs"
  echo "$dir/model.onnx $WORK/so/$name.cuda.so --target cuda --batch $buckets" >>"$jobs"
  case $name in dlrm_mlperf|dcnv2|minilm_l6_s128)
    for p in tf32 bf16 fp16; do
      echo "$dir/model.onnx $WORK/so/$name.cuda-$p.so --target cuda --precision $p --batch 64" >>"$jobs"
    done
    echo "$dir/model.onnx $WORK/so/$name.cuda-fp8.so --target cuda --precision fp8 --calibration $dir/calibration.npz --batch 64" >>"$jobs"
    # The CPU's emulation of the same fp8 arithmetic, which the GPU's should match closely.
    echo "$dir/model.onnx $WORK/so/$name.cpu-fp8.so --precision fp8 --calibration $dir/calibration.npz --batch 64 --allow-accuracy-loss --validation-rows 16" >>"$jobs" ;;
  esac
  # Hybrid placement: some tables in host memory (deepfm, din), or all of them.
  case $name in
    deepfm|din) over=300KiB ;;
    dlrm_kaggle|dlrm_mlperf) over=0 ;;
    *) over= ;;
  esac
  [ -z "$over" ] || echo "$dir/model.onnx $WORK/so/$name.cuda-host.so --target cuda --host-tables-over $over --batch 1,64,1024" >>"$jobs"
done
for dir in "$WORK"/real/*/; do
  name=$(basename "$dir")
  echo "$dir/model.onnx $WORK/so/real_$name.cpu.so --batch 8" >>"$jobs"
  echo "$dir/model.onnx $WORK/so/real_$name.cuda.so --target cuda --batch 1,8,64" >>"$jobs"
done
echo "compiling $(wc -l <"$jobs") models on $(nproc) cores"
# A compile that fails is reported (gpu_check.py fails its row) and the others go on.
export FAILURES="$WORK/compile_failures.txt"
: >"$FAILURES"
# shellcheck disable=SC2016
xargs -P "$(nproc)" -L 1 bash -c '"$KILN_BIN" compile "$0" -o "$1" -q "${@:2}" || { echo "FAILED: kiln compile $0 $*" >&2; echo "$0 $*" >>"$FAILURES"; }' <"$jobs"
echo "compiled in $(( $(date +%s) - start )) s"

status=0
python3 bench/gpu_check.py "$WORK" --out "$OUT" || status=$?
echo "gpu_check took $(( $(date +%s) - start )) s"
exit $status
