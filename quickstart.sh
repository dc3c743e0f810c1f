#!/usr/bin/env bash
# Sets up and builds kiln, then compiles the bundled example ads model (a
# small DLRM) at batch buckets 1, 8, 64 and runs it on its reference inputs.
set -euo pipefail
cd "$(dirname "$0")"
scripts/bootstrap.sh

out=build/example
.venv/bin/python bench/models/dlrm_mlp.py "$out"
build/bin/kiln compile "$out/model.onnx" -o "$out/dlrm_mlp.so" --batch 1,8,64
build/bin/kiln inspect "$out/dlrm_mlp.so"
build/bin/kiln run "$out/dlrm_mlp.so" --inputs "$out/test_data_set_0" --output "$out/outputs.npz"
build/bin/kiln verify "$out/model.onnx" --inputs "$out/test_data_set_0"
