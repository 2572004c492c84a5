"""`acg2vec upscale` runs the network with one intra-op thread per core: oneDNN's verbose mode
(ONEDNN_VERBOSE=1, read by the library at run time) reports the thread count it plans its
convolutions for, which was 1 before the CLI set it (libtorch's default on the 2-core machine)."""
import os
import re
import subprocess
import sys
import tempfile
import unittest

from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from acg2vec_harness import BIN  # noqa: E402

SOURCE = os.environ.get("ACG2VEC_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))


class UpscaleThreadsTest(unittest.TestCase):
    def threads_used(self, *extra):
        with tempfile.TemporaryDirectory() as d:
            models = os.path.join(d, "models")
            os.makedirs(models)
            os.symlink(os.path.join(SOURCE, "models", "realcugan-pro-conservative"),
                       os.path.join(models, "realcugan-pro-conservative"))
            src = os.path.join(d, "in.png")
            Image.new("RGB", (24, 20), (200, 120, 40)).save(src)
            env = dict(os.environ, ONEDNN_VERBOSE="1")
            env.pop("OMP_NUM_THREADS", None)
            r = subprocess.run([BIN, "--models-dir", models, *extra, "upscale", src, "-o", os.path.join(d, "out.png"),
                                "--model", "realcugan-pro-conservative"], capture_output=True, text=True,
                               timeout=300, env=env)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stderr.strip(), "")
            return set(re.findall(r"onednn_verbose,info,cpu,runtime:OpenMP,nthr:(\d+)", r.stdout)), r.stdout[:2000]

    def test_one_thread_per_core(self):
        counts, out = self.threads_used()
        self.assertEqual(counts, {str(len(os.sched_getaffinity(0)))}, out)

    def test_intra_op_threads_option(self):
        counts, out = self.threads_used("--intra-op-threads", "1")
        self.assertEqual(counts, {"1"}, out)


if __name__ == "__main__":
    unittest.main()
