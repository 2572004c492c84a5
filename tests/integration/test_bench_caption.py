"""Smoke run of `acg2vec bench caption` on a tiny WD-style tagger pack (tools/make_wd_tagger_pack.py)
and the 11 drawings of tests/data/images/real (PNG with transparency and JPEG): the model-only row,
`tag --captions` over every image with its ratio, and the ONNX Runtime image-by-image row from
bench/ort_caption_peer.js, all in one run. The two captioning paths ran the same graph on the same
files, so their captions must agree (mean Jaccard of the tag sets; they differ only in the resize
filter, PIL bicubic against area averaging). Not a benchmark: no rate is compared with a target."""
import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from fixture_cache import cached_dir  # noqa: E402
from packs import BUILD, SOURCE  # noqa: E402

BIN = os.environ.get("ACG2VEC_BIN", os.path.join(BUILD, "acg2vec"))
IMAGES = os.path.join(SOURCE, "tests", "data", "images", "real")


def tiny_wd_pack():
    script = os.path.join(SOURCE, "tools", "make_wd_tagger_pack.py")
    args = ["--image", "64", "--patch", "16", "--dim", "32", "--depth", "1", "--heads", "2", "--general", "300",
            "--characters", "60", "--name", "wd-tiny"]
    d = cached_dir(os.path.join(BUILD, "test-packs", "wd-tiny"),
                   [script, os.path.join(SOURCE, "tools", "export_onnx_models.py")],
                   lambda d: subprocess.run(["/usr/bin/python3", script, "--out", d, *args], check=True,
                                            stdout=subprocess.DEVNULL),
                   extra=args)
    return d


class BenchCaptionTest(unittest.TestCase):
    def test_captions_model_only_and_onnx_runtime_in_one_run(self):
        pack = tiny_wd_pack()
        env = dict(os.environ, ACG2VEC_SOURCE_DIR=os.path.abspath(SOURCE))
        p = subprocess.run([BIN, "--log-level", "warn", "bench", "caption", "--pack", pack, "--dir", IMAGES,
                            "--seconds", "0.3"], capture_output=True, text=True, timeout=300, env=env)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        out = p.stdout
        num = r"[\d.]+"
        self.assertRegex(out, re.compile(r"^BLAS: .*kernel \S+ \(", re.M))
        self.assertRegex(out, rf"bench caption: pack wd-tiny \(max_batch 8\), 11 images from .*load average")
        self.assertRegex(out, rf"model-only batch 8 \(acg2vec\)\s+-\s+{num}")
        self.assertRegex(out, rf"tag --captions\s+11\s+{num}\s+{num}x of model-only batch 8")
        self.assertRegex(out, rf"ONNX Runtime image by image \(node\)\s+11\s+{num}\s+tag --captions = {num}x of it")
        self.assertRegex(out, rf"session.run only, batch 1\s+11\s+{num}\s+per image: decode \+ preprocess {num} ms")
        m = re.search(r"mean Jaccard of the tag sets: ([\d.]+)", out)
        self.assertIsNotNone(m, out)
        self.assertGreaterEqual(float(m.group(1)), 0.9, out)

    def test_a_pack_the_peer_cannot_feed_leaves_out_its_row(self):
        # The peer feeds WD's input (NHWC, 0..255); a pack normalised another way gets no peer row.
        import json
        import shutil
        import tempfile
        src = tiny_wd_pack()
        with tempfile.TemporaryDirectory(prefix="acg2vec-bench-caption-") as tmp:
            pack = os.path.join(tmp, "wd-tiny")
            shutil.copytree(src, pack)
            with open(os.path.join(pack, "manifest.json")) as f:
                m = json.load(f)
            m["input"]["scale"] = 255
            with open(os.path.join(pack, "manifest.json"), "w") as f:
                json.dump(m, f)
            p = subprocess.run([BIN, "--log-level", "warn", "bench", "caption", "--pack", pack, "--dir", IMAGES,
                                "--seconds", "0.2", "--max-files", "3"], capture_output=True, text=True, timeout=300,
                               env=dict(os.environ, ACG2VEC_SOURCE_DIR=os.path.abspath(SOURCE)))
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            self.assertRegex(p.stdout, r"tag --captions\s+3\s")
            self.assertIn("ONNX Runtime row left out", p.stdout)
            self.assertNotIn("image by image", p.stdout)


if __name__ == "__main__":
    unittest.main()
