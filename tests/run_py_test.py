#!/usr/bin/python3
"""Runs one Python test script for ctest and turns its result into an exit code ctest understands.

    run_py_test.py tests/integration/test_x.py

- Scripts built on unittest keep calling `unittest.main(...)`; here that call runs the tests without
  exiting, then exits 1 when a test failed or when no test ran at all, 77 when any test was skipped
  (ctest's SKIP_RETURN_CODE, see tests/CMakeLists.txt) and 0 otherwise. Python's own unittest exits 0 on
  a skip, which ctest would count as a pass.
- Other scripts skip with acg2vec_harness.skip(reason), which exits 77.
Under CI=true, scripts/test.sh fails the run for every skip that tests/skip-allowlist.txt does not list.
"""
import os
import runpy
import sys
import unittest

SKIP_EXIT = 77


class _Program(unittest.TestProgram):
    """unittest.main with the exit policy above (and the script's own keyword arguments)."""

    def __init__(self, *args, **kwargs):
        kwargs["exit"] = False
        super().__init__(*args, **kwargs)
        result = self.result
        sys.stdout.flush()
        if not result.wasSuccessful():
            sys.exit(1)
        if result.testsRun == 0:
            print("FAIL: no test ran", file=sys.stderr)
            sys.exit(1)
        if result.skipped:
            for test, reason in result.skipped:
                print(f"SKIP: {test.id()}: {reason}")
            sys.exit(SKIP_EXIT)
        sys.exit(0)


def main():
    if len(sys.argv) < 2:
        print("usage: run_py_test.py <script.py> [args...]", file=sys.stderr)
        return 2
    script = os.path.abspath(sys.argv[1])
    sys.argv = [script] + sys.argv[2:]
    sys.path.insert(0, os.path.dirname(script))
    unittest.main = _Program
    runpy.run_path(script, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
