#!/usr/bin/env bash
# Builds the release preset and runs the whole test suite; the last line is ctest's summary.
set -euo pipefail
cd "$(dirname "$0")/.."
# Paths under the checkout's parent are hashed relative to it, so checkouts in other folders
# (CI's fresh clone) reuse the same ccache entries.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$(dirname "$PWD")}
./scripts/setup.sh >/dev/null
# OpenMP threads that spin while waiting steal the other core from parallel tests.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
cmake --build --preset release -j "$(nproc)"
ctest --preset release -j "$(nproc)" "$@"
