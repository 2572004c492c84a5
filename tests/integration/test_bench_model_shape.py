"""`acg2vec bench model --pack DIR --shape C,H,W` on a pack whose input height and width are open
(Real-CUGAN, committed under models/): the per-op profile runs at the given size, and a --shape of
the wrong rank or channel count is refused with one readable line."""
import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from packs import BUILD, SOURCE  # noqa: E402

BIN = os.environ.get("ACG2VEC_BIN", os.path.join(BUILD, "acg2vec"))
PACK = os.path.join(SOURCE, "models", "realcugan-pro-conservative")


def bench(*args):
    cmd = [BIN, "--log-level", "warn", "bench", "model", "--pack", PACK, "--peers", "none", "--skip-peak",
           "--batch", "1", "--seconds", "0.1", "--warmup", "1", "--threads", "1", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


class BenchModelShapeTest(unittest.TestCase):
    def test_open_sizes_need_shape(self):
        p = bench()
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("is not fixed (give --shape)", p.stderr)

    def test_profile_at_the_given_size(self):
        # 40 + 2*18 pre-padding: the smallest sizes the network's crops allow are far below this.
        p = bench("--shape", "3,76,76", "--profile")
        self.assertEqual(p.returncode, 0, p.stderr)
        rows = dict((m[0], int(m[1])) for m in re.findall(r"^  ([\w+]+)\s+(\d+)\s+[\d.]+\s+[\d.]+%$", p.stdout, re.M))
        # Four transposed convolutions: three 2x2 stride-2 upsamplings with their LeakyReLU and the
        # skip connection's add, and the 4x4 stride-2 output layer; 18 convolutions in all, the
        # last with the add of UNet1's output. No Identity or Add step is left on its own.
        self.assertEqual(rows.get("ConvTranspose+LeakyRelu+Add"), 3, p.stdout)
        self.assertEqual(rows.get("ConvTranspose"), 1, p.stdout)
        self.assertEqual(rows.get("Conv+Add"), 1, p.stdout)
        self.assertEqual(sum(n for op, n in rows.items() if op == "Conv" or op.startswith("Conv+")), 18, p.stdout)
        self.assertNotIn("Identity", rows, p.stdout)
        self.assertNotIn("Add", rows, p.stdout)
        self.assertRegex(p.stdout, r"(?m)^acg2vec\s+1\s+[\d.]+\s+[\d.]+\s+[\d.]+\s")

    def test_wrong_shapes_are_refused(self):
        # ncnn declares no input sizes at all: 4 channels reach the first convolution, which says so.
        p = bench("--shape", "4,76,76")
        self.assertNotEqual(p.returncode, 0)
        self.assertRegex(p.stderr.strip(), r"^acg2vec: .*expected input\[1, 4, 76, 76\] to have 3 channels")
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        p = bench("--shape", "76,76")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("takes 3 dimensions after the batch, not 2", p.stderr)


if __name__ == "__main__":
    unittest.main()
