"""Every command that runs a model gets the same thread layout (README, `--intra-op-threads`): the
global option (or ACG2VEC_INTRA_OP_THREADS) sets the threads of each forward pass for `ingest` as for
`serve`, and by default a pass runs on every core. `ingest` reports what its compute thread used."""
import os
import re
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from packs import BUILD, SOURCE, installed_packs  # noqa: E402

BIN = os.environ.get("ACG2VEC_BIN", os.path.join(BUILD, "acg2vec"))
IMAGES = os.path.join(SOURCE, "tests", "data", "images")


def ingest(*args, env_set=None):
    env = {k: v for k, v in os.environ.items() if k != "ACG2VEC_INTRA_OP_THREADS"}
    env.update(env_set or {})
    models = installed_packs(["nsfw-mobilenet-v2"])
    with tempfile.TemporaryDirectory() as data:
        cmd = [BIN, "--log-level", "warn", "--models-dir", models, "--data-dir", data] + list(args)
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    if p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    m = re.search(r"model passes: \d+, [\d.]+ images per pass, (\d+) threads? each", p.stdout)
    if m is None:
        raise AssertionError("no model pass line:\n" + p.stdout)
    return int(m.group(1))


class ThreadLayout(unittest.TestCase):
    def test_default_is_every_core(self):
        self.assertEqual(ingest("ingest", IMAGES), os.cpu_count())

    def test_global_option_before_or_after_the_command_and_environment(self):
        self.assertEqual(ingest("--intra-op-threads", "1", "ingest", IMAGES), 1)
        self.assertEqual(ingest("ingest", IMAGES, "--intra-op-threads", "3"), 3)
        self.assertEqual(ingest("ingest", IMAGES, env_set={"ACG2VEC_INTRA_OP_THREADS": "2"}), 2)

    def test_out_of_range_is_one_readable_error(self):
        p = subprocess.run([BIN, "--intra-op-threads", "999", "version"], capture_output=True, text=True, timeout=60)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("--intra-op-threads", p.stderr)


if __name__ == "__main__":
    unittest.main()
