#!/usr/bin/env bash
# Builds the release preset and runs the whole test suite; the last line is ctest's summary.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh >/dev/null
cmake --build --preset release -j "$(nproc)"
ctest --preset release -j "$(nproc)" "$@"
