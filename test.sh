#!/usr/bin/env bash
# Builds kiln (installing what is missing) and runs every test: lit and
# GoogleTest through ctest, the same under ASan/UBSan, concurrent sessions
# under TSan, then the end-to-end pytest suite.
set -euo pipefail
cd "$(dirname "$0")"
scripts/bootstrap.sh

ctest --test-dir build --output-on-failure
scripts/sanitize.sh
scripts/tsan.sh
.venv/bin/python -m pytest -q --durations=15 test/e2e  # the slowest tests, to keep CI inside its budget
