#!/usr/bin/env bash
# Builds kiln with clang, AddressSanitizer + UndefinedBehaviorSanitizer and
# libFuzzer's coverage instrumentation into build-asan/ (-O1, NDEBUG as in
# the LLVM/MLIR release libraries it links: their headers' layouts depend
# on it), runs the lit and GoogleTest suites there, then a smoke run of
# each fuzzer (scripts/fuzz.sh). Part of ./test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f build-asan/build.ninja ]; then
  CC=clang-22 CXX=clang++-22 cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O1 -g -DNDEBUG" "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g -DNDEBUG" \
    -DKILN_SANITIZE=ON -DKILN_FUZZ=ON
fi
cmake --build build-asan
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure
scripts/fuzz.sh
