"""Smoke run of `acg2vec bench serve` with tiny sizes: model-only, served and ingest rows are all
printed with their ratios, every served request succeeded, and the header names the BLAS kernel.
Not a benchmark: no figure is compared with a target here."""
import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from packs import BUILD, SOURCE, installed_packs  # noqa: E402

BIN = os.environ.get("ACG2VEC_BIN", os.path.join(BUILD, "acg2vec"))


class BenchServeTest(unittest.TestCase):
    def test_model_only_served_and_ingest_in_one_run(self):
        models = installed_packs(["nsfw-mobilenet-v2"])
        env = dict(os.environ, ACG2VEC_SOURCE_DIR=os.path.abspath(SOURCE))
        p = subprocess.run([BIN, "--log-level", "warn", "bench", "serve", "--pack",
                            os.path.join(models, "nsfw-mobilenet-v2"), "--seconds", "0.4", "--clients", "1,3",
                            "--max-files", "4", "--workers", "2"],
                           capture_output=True, text=True, timeout=300, env=env)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        out = p.stdout
        self.assertRegex(out, re.compile(r"^BLAS: .*kernel \S+ \(", re.M))
        self.assertRegex(out, re.compile(r"^CPU: ", re.M))
        num = r"[\d.]+"
        self.assertRegex(out, rf"model-only batch 1\s+-\s+{num}\s+{num}\s+{num}")
        self.assertRegex(out, rf"model-only batch 8\s+-\s+{num}\s+{num}\s+{num}")
        self.assertRegex(out, rf"POST /v1/classify\s+1\s+{num}\s+{num}\s+{num}\s+{num}x of 1/\(batch-1 pass \+ decode\)")
        row3 = re.search(rf"^POST /v1/classify\s+3\s+({num})\s+.*x of model-only batch 8(.*)$", out, re.M)
        self.assertIsNotNone(row3, out)
        self.assertGreater(float(row3.group(1)), 0.0)
        self.assertNotIn("errors", row3.group(2), out)
        self.assertRegex(out, rf"ingest, \d+ images, 2 workers\s+-\s+{num}\s+-\s+-\s+{num}x of model-only batch 8")
        self.assertRegex(out, rf"CPU bound with decoding on the same \d+ cores: {num}/s = {num}x of model-only batch 8")
        # What one ingested image cost the CPU, as `acg2vec ingest` measured itself, against its forward.
        cpu = re.search(rf"^  ingest CPU: ({num}) core-seconds, ({num}) of (\d+) cores busy, ({num}) core-ms per image; "
                        rf"model-only batch 8 costs ({num}) core-ms per image, so at most ({num})x of it", out, re.M)
        self.assertIsNotNone(cpu, out)
        self.assertGreater(float(cpu.group(1)), 0.0)
        self.assertLessEqual(float(cpu.group(2)), int(cpu.group(3)) + 0.05)
        self.assertGreater(float(cpu.group(4)), 0.0)
        self.assertLessEqual(float(cpu.group(6)), 1.0)
        # The Server-Timing breakdown of each client level: every span, and the handler holds the
        # decode, preprocess and forward of its request.
        for clients in ("1 client", "3 clients"):
            line = re.search(rf"^  {clients}, mean ms per request:(.*); outside the server ({num}) of ({num})$", out, re.M)
            self.assertIsNotNone(line, out)
            spans = dict((k, float(v)) for k, v in re.findall(rf"(\w+) ({num})", line.group(1)))
            for name in ("decode", "preprocess", "batch_wait", "compute_wait", "forward", "worker_wait", "parse",
                         "handler"):
                self.assertIn(name, spans, line.group(0))
            self.assertGreater(spans["forward"], 0.0)
            self.assertLessEqual(spans["decode"] + spans["preprocess"] + spans["forward"], spans["handler"] + 0.01)


if __name__ == "__main__":
    unittest.main()
