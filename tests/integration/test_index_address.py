"""`--index faiss?...` as a user runs it: ingest and serve with FAISS parameters named in the address,
the parameters saved beside the index and reused by a later start that names none, a different
address rebuilding the index, and bad addresses refused with one readable line (docs/index-params.md)."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from acg2vec_harness import BIN, Server  # noqa: E402
from packs import real_images  # noqa: E402


class IndexAddressTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="acg2vec-index-address-")
        cls.data = os.path.join(cls.tmp, "data")
        cls.models = os.path.join(cls.tmp, "models")  # no packs: the signature space alone
        os.makedirs(cls.models)
        cls.folder = os.path.join(cls.tmp, "images")
        os.makedirs(cls.folder)
        cls.images = real_images()[:8]
        for p in cls.images:
            shutil.copy(p, cls.folder)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def saved(self):
        with open(os.path.join(self.data, "index", "faiss.json")) as f:
            return json.load(f)

    def serve_and_check(self, index, expect_kind):
        """Starts serve with `index` (None: the flag left out), checks the signature space's index kind in
        /v1/stats and that a stored image is found as its own nearest neighbour."""
        extra = ["--index", index] if index is not None else []
        # --index is a global option: the harness puts serve's own flags after the subcommand, and the
        # CLI lets global options follow it.
        with Server(*extra, data_dir=self.data, models_dir=self.models) as srv:
            srv.wait_ready()
            status, body = srv.json("GET", "/v1/stats")
            self.assertEqual(status, 200, body)
            stats = body["data"]
            self.assertEqual(stats["items"], len(self.images))
            space = stats["spaces"]["signature"]
            self.assertEqual(space["index"], expect_kind, stats)
            self.assertEqual(space["size"], len(self.images))
            with open(self.images[3], "rb") as f:
                status, body = srv.multipart("/v1/search", files={"image": ("q.png", f.read(), "image/png")},
                                             fields={"space": "signature", "k": "3"})
            self.assertEqual(status, 200, body)
            hits = body["data"]["hits"]
            self.assertGreater(len(hits), 0, body)
            self.assertTrue(hits[0]["id"].endswith(os.path.basename(self.images[3])), hits)
            self.assertGreater(hits[0]["score"], 0.99, hits)

    def test_a_ingest_and_serve_with_named_parameters(self):
        r = subprocess.run([BIN, "--data-dir", self.data, "--models-dir", self.models,
                            "--index", "faiss?kind=hnsw&m=8&ef_search=24", "ingest", self.folder],
                           capture_output=True, text=True, timeout=600)
        self.assertEqual(r.returncode, 0, r.stderr)
        saved = self.saved()
        self.assertEqual((saved["kind"], saved["hnsw_m"], saved["hnsw_ef_search"]), ("hnsw", 8, 24), saved)
        self.assertTrue(os.path.exists(os.path.join(self.data, "index", "signature.faiss")))
        # The same address again: kept as is.
        self.serve_and_check("faiss?kind=hnsw&m=8&ef_search=24", "hnsw")
        # No address: the parameters saved with the index apply.
        self.serve_and_check(None, "hnsw")
        self.serve_and_check("faiss", "hnsw")
        self.assertEqual(self.saved()["kind"], "hnsw")

    def test_b_other_parameters_rebuild_the_index(self):
        self.serve_and_check("faiss?kind=flat", "flat")
        self.assertEqual(self.saved()["kind"], "flat")
        self.serve_and_check(None, "flat")

    def test_c_bad_addresses_are_refused_in_one_line(self):
        before = self.saved()
        for address in ["faiss?kind=bogus", "faiss?m=abc", "faiss?nprobe=0", "faiss?colour=blue", "sqlite://x"]:
            with self.subTest(address=address):
                r = subprocess.run([BIN, "--data-dir", self.data, "--models-dir", self.models, "--index", address,
                                    "serve", "--host", "127.0.0.1", "--port", "0"],
                                   capture_output=True, text=True, timeout=120)
                self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
                # serve logs its start-up (timestamped lines); the refusal is one plain line.
                lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not re.match(r"\d{4}-\d\d-\d\dT", ln)]
                self.assertEqual(len(lines), 1, r.stderr)
                self.assertTrue(lines[0].startswith("acg2vec: ") and "index" in lines[0], r.stderr)
                self.assertEqual(r.returncode, 2, r.stderr)  # errc::bad_parameter's exit code
        # A refused address changes nothing that is stored.
        self.assertEqual(self.saved(), before)
        self.serve_and_check(None, before["kind"])


if __name__ == "__main__":
    unittest.main()
