"""The GEMM kernel that the binary runs, checked in the environment a user has (no OPENBLAS_*
variables): on a CPU with AVX2 it must never be OpenBLAS's generic SSE/AVX1 kernels, whatever
OpenBLAS's own table of CPU models says; a user's OPENBLAS_CORETYPE still wins, and a generic
choice is warned about at start-up."""
import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from packs import BUILD  # noqa: E402

BIN = os.environ.get("ACG2VEC_BIN", os.path.join(BUILD, "acg2vec"))
VECTOR_CORES = {"haswell", "zen", "skylakex", "cooperlake", "sapphirerapids"}
AVX512_CORES = {"skylakex", "cooperlake", "sapphirerapids"}


def cpu_flags():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def version(**env_set):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("OPENBLAS_") and k not in ("ACG2VEC_BLAS_CORE", "GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(env_set)
    p = subprocess.run([BIN, "version"], capture_output=True, text=True, timeout=60, env=env)
    if p.returncode != 0:
        raise AssertionError(f"acg2vec version exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    m = re.search(r"^BLAS: (.*)$", p.stdout, re.M)
    if m is None:
        raise AssertionError("no BLAS line in `acg2vec version`:\n" + p.stdout)
    return m.group(1), p.stderr


class BlasKernelTest(unittest.TestCase):
    def test_default_environment_uses_a_vector_kernel(self):
        line, err = version()
        flags = cpu_flags()
        m = re.search(r"kernel (\S+) \(([^;]+);", line)
        self.assertIsNotNone(m, "the BLAS is not OpenBLAS or reports no kernel: " + line)
        core, origin = m.group(1).lower(), m.group(2)
        if {"avx2", "fma"} <= flags:
            self.assertIn(core, VECTOR_CORES, f"generic GEMM kernel on a CPU with AVX2: {line}")
            self.assertEqual(origin, "chosen from CPU features", line)
            self.assertNotIn("generic", err)
        if {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"} <= flags:
            self.assertIn(core, AVX512_CORES, f"AVX-512 CPU without an AVX-512 GEMM kernel: {line}")

    def test_idle_openblas_threads_sleep_soon_unless_told_otherwise(self):
        # OpenBLAS reads OPENBLAS_THREAD_TIMEOUT once, when it loads: the line reports what the
        # library itself holds (openblas_thread_timeout()), not the environment.
        line, _ = version()
        if "OpenBLAS" in line:
            self.assertRegex(line, r", idle threads sleep after 2\^20 cycles$")
            line, _ = version(OPENBLAS_THREAD_TIMEOUT="25")
            self.assertRegex(line, r", idle threads sleep after 2\^25 cycles$")
            line, _ = version(OPENBLAS_THREAD_TIMEOUT="2")  # clamped by OpenBLAS
            self.assertRegex(line, r", idle threads sleep after 2\^4 cycles$")

    def test_user_choice_wins_and_generic_kernel_is_warned_about(self):
        line, err = version(OPENBLAS_CORETYPE="Prescott")
        self.assertRegex(line, r"kernel Prescott \(set by OPENBLAS_CORETYPE;")
        if {"avx2", "fma"} <= cpu_flags():
            self.assertRegex(err, r"warn.*generic 'Prescott' GEMM kernel on a CPU with AVX2")
        line, err = version(OPENBLAS_CORETYPE="Haswell")
        if "avx2" in cpu_flags():
            self.assertRegex(line, r"kernel Haswell \(set by OPENBLAS_CORETYPE;")
            self.assertNotIn("generic", err)


if __name__ == "__main__":
    unittest.main()
