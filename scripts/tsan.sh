#!/usr/bin/env bash
# ThreadSanitizer: the runtime and models built with -fsanitize=thread into
# build-tsan/, then N threads x sessions on one model (test/tsan/sessions.cpp),
# every output bit-identical to a serial run. Part of ./test.sh; needs the
# release build (build/bin/kiln) and .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build-tsan
mkdir -p "$out"
c++ -std=c++17 -O1 -g -fsanitize=thread -rdynamic -Iruntime/include -Iruntime/src \
  test/tsan/sessions.cpp runtime/src/runtime.cpp runtime/src/descriptor_check.cpp runtime/src/thread_pool.cpp \
  -ldl -pthread -o "$out/sessions"

models=("test/unit/models/tiny.onnxtxt" "test/unit/models/computed_ids.onnxtxt")
.venv/bin/python bench/models/zoo.py "$out/zoo" --models dlrm_kaggle din --batch 8 > /dev/null
models+=("$out/zoo/dlrm_kaggle/model.onnx" "$out/zoo/din/model.onnx")
if [ -f ../shared/models/din/model.onnx ]; then
  models+=("../shared/models/din/model.onnx")
fi
export TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1"
for i in "${!models[@]}"; do
  model=${models[$i]}
  so="$out/$i-$(basename "${model%.*}").so"
  CXX="$PWD/test/tsan/cxx" build/bin/kiln compile "$model" -o "$so" --batch 1,4,16 --quiet
  "$out/sessions" "$so" 6 24
done
