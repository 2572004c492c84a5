#!/usr/bin/env bash
# Builds the release preset and runs the whole test suite, then accounts for skipped tests
# (scripts/check_skips.py: with CI=true a skip not in tests/skip-allowlist.txt fails the run).
# The last lines printed are ctest's summary.
set -euo pipefail
cd "$(dirname "$0")/.."
# Paths under the checkout's parent are hashed relative to it, so checkouts in other folders
# (CI's fresh clone) reuse the same ccache entries.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$(dirname "$PWD")}
./scripts/setup.sh >/dev/null
# OpenMP threads that spin while waiting steal the other core from parallel tests.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
cmake --build --preset release -j "$(nproc)"
build=build/release
junit="$PWD/$build/ctest-junit.xml"
log="$PWD/$build/ctest-output.log"
rm -f "$junit"
set +e
ctest --preset release -j "$(nproc)" --output-junit "$junit" "$@" | tee "$log"
ctest_rc=${PIPESTATUS[0]}
/usr/bin/python3 scripts/check_skips.py --junit "$junit"
skips_rc=$?
set -e
# ctest's summary again, so that it stays the last thing printed.
if summary=$(sed -n '/% tests passed/,$p' "$log") && [ -n "$summary" ]; then
  echo
  echo "$summary"
fi
if [ "$ctest_rc" -ne 0 ]; then exit "$ctest_rc"; fi
exit "$skips_rc"
