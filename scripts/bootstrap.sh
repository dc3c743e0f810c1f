#!/usr/bin/env bash
# Installs what is missing (Debian packages, the Python virtualenv) and builds
# kiln into build/. Idempotent: a second run only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  cmake ninja-build ccache g++ python3-venv zlib1g-dev
  llvm-22-dev llvm-22-tools libmlir-22-dev mlir-22-tools
  libonnx-dev libprotobuf-dev protobuf-compiler libcli11-dev libgtest-dev libbenchmark-dev
  nlohmann-json3-dev
  # The sanitizer build and the fuzzers (scripts/sanitize.sh, scripts/fuzz.sh).
  clang-22 libclang-rt-22-dev
  # libMLIR's CMake config checks for these.
  libzstd-dev libedit-dev libcurl4-openssl-dev libxml2-dev libffi-dev
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  python3 -m venv .venv
fi
stamp=.venv/.requirements.stamp
if [ ! -f "$stamp" ] || ! cat requirements.txt requirements-serving.txt | cmp -s - "$stamp"; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements.txt
  .venv/bin/pip install -q --no-deps -r requirements-serving.txt
  .venv/bin/pip install -q -e python
  cat requirements.txt requirements-serving.txt > "$stamp"
fi

if [ ! -f build/build.ninja ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DPython3_EXECUTABLE="$PWD/.venv/bin/python"
fi
cmake --build build

# The CUDA target needs the CUDA toolkit (nvcc, cuBLASLt), which Debian does
# not package at version 13: it is used where it is installed.
if ! command -v nvcc >/dev/null && [ ! -x /usr/local/cuda/bin/nvcc ]; then
  echo "bootstrap: nvcc not found: 'kiln compile --target cuda' and its tests need the CUDA 13 toolkit"
fi
