#!/usr/bin/env bash
# Runs kiln's libFuzzer fuzzers (test/fuzz/) from the clang ASan/UBSan build
# that scripts/sanitize.sh makes (build-asan/, KILN_FUZZ=ON):
#   import_fuzzer  ONNX bytes -> importer -> passes up to the memory plan
#   loader_fuzzer  mutated descriptors of a real model -> the loader
#   run_fuzzer     mutated requests -> kiln_run on a real model
# each for FUZZ_SECONDS (default 60: the smoke run of ./test.sh; the long
# run of docs/reliability.md sets more). Arguments name the fuzzers to run
# (import, loader, run; default all three), e.g. to run two side by side. Corpora grow in build-asan/fuzz/NAME/
# from seeds: every ONNX model of the tests (lit, unit, e2e) and of the zoo.
# A crash, leak, timeout or sanitizer report fails the script; libFuzzer
# leaves the input beside the corpus (crash-*, leak-*, timeout-*) and prints
# how to reproduce it.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}
build=build-asan
for f in import_fuzzer loader_fuzzer run_fuzzer; do
  [ -x "$build/test/fuzz/$f" ] || { echo "fuzz: build $build first (scripts/sanitize.sh)" >&2; exit 1; }
done
out=$build/fuzz
mkdir -p "$out"/{import,loader,run}/corpus

# Seeds: the tests' text models in binary form, and small zoo models.
if [ ! -f "$out/import/seeded" ]; then
  .venv/bin/python bench/models/zoo.py "$out/zoo" --models dlrm_kaggle din --batch 4 > /dev/null
  .venv/bin/python - "$out/import/corpus" "$out/zoo" <<'EOF'
import glob, hashlib, os, sys
import onnx, onnx.parser
corpus, zoo = sys.argv[1], sys.argv[2]
files = glob.glob("test/**/*.onnxtxt", recursive=True)
for path in files + glob.glob(f"{zoo}/*/model.onnx"):
    try:
        model = onnx.load(path, load_external_data=False) if path.endswith(".onnx") else \
            onnx.parser.parse_model(open(path).read())
    except Exception:
        continue  # a test of a malformed file
    data = model.SerializeToString()
    if len(data) <= 1 << 18:
        open(os.path.join(corpus, hashlib.sha1(data).hexdigest()), "wb").write(data)
EOF
  touch "$out/import/seeded"
fi
models=$build/test/unit/models
KILN_FUZZ_MODEL=$models/tiny.so KILN_FUZZ_WRITE_SEED=$out/loader/corpus/seed-tiny \
  "$build/test/fuzz/loader_fuzzer" -runs=0 > /dev/null 2>&1 || true

export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
run() { # name, fuzzer, extra libFuzzer flags...
  local name=$1 fuzzer=$2
  shift 2
  echo "fuzz: $name for ${seconds}s"
  (cd "$out/$name" && "../../test/fuzz/$fuzzer" corpus -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=4096 -print_final_stats=1 "$@" > log.txt 2>&1) || {
    tail -40 "$out/$name/log.txt"
    echo "fuzz: $name found a failure; its input is in $out/$name/" >&2
    return 1
  }
  grep -E "^stat::(number_of_executed_units|new_units_added|peak_rss_mb)|cov:" "$out/$name/log.txt" |
    tail -4 | sed "s/^/  /"
}
export KILN_FUZZ_MODEL=$PWD/$models/tiny.so
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(import loader run)
for name in "${names[@]}"; do
  case $name in
    import) run import import_fuzzer -max_len=262144 ;;
    loader) run loader loader_fuzzer ;;
    run) run run run_fuzzer -max_len=4096 ;;
    *) echo "fuzz: unknown fuzzer '$name' (import, loader, run)" >&2; exit 2 ;;
  esac
done
