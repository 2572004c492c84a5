"""Smoke run of every `acg2vec bench` instrument with tiny sizes: each exits 0 and prints its
table. Not a benchmark (CI only checks that the instruments work); the peers (onnxruntime-node,
PyTorch eager) must be installed, and their outputs must match acg2vec's on the same input."""
import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from packs import BUILD, SOURCE, installed_packs  # noqa: E402

BIN = os.environ.get("ACG2VEC_BIN", os.path.join(BUILD, "acg2vec"))


def run(*args, models_dir=None, timeout=300):
    env = dict(os.environ, ACG2VEC_SOURCE_DIR=os.path.abspath(SOURCE))
    cmd = [BIN, "--log-level", "warn"]
    if models_dir:
        cmd += ["--models-dir", models_dir]
    p = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=timeout, env=env)
    if p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd + list(args))} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p.stdout


def tiny_onnx():
    """A reduced ResNet-50 exported by python3-torch (tools/export_onnx_models.py), made once."""
    out = os.path.join(BUILD, "bench-smoke", "onnx")
    path = os.path.join(out, "resnet50.onnx")
    if not os.path.exists(os.path.join(out, "manifest.json")):
        subprocess.run(["/usr/bin/python3", os.path.join(SOURCE, "tools", "export_onnx_models.py"), "--out", out,
                        "--profile", "ci", "--models", "resnet50"], check=True, capture_output=True)
    return path


class BenchSmokeTest(unittest.TestCase):
    def test_model_against_both_peers(self):
        out = run("bench", "model", "--onnx", tiny_onnx(), "--batch", "1,2", "--seconds", "0.3")
        for col in ("RUNTIME", "BATCH", "ITEMS/S", "P50_MS", "P95_MS", "REL_DIFF", "GFLOP/S"):
            self.assertIn(col, out)
        self.assertRegex(out, r"measured peak \(after the models\): conv2d .* [\d.]+ GFLOP/s, mm .* [\d.]+ GFLOP/s")
        for batch in (1, 2):
            self.assertRegex(out, rf"ratio batch {batch}: acg2vec / onnxruntime-node [\d.]+ = [\d.]+x")
            self.assertRegex(out, rf"ratio batch {batch}: acg2vec / pytorch [^=]+ = [\d.]+x")
        # The peers ran the same file on the same input: their outputs agree with ours to 1e-4 of
        # the output's largest magnitude (fp32 with different summation orders).
        diffs = re.findall(r"^(?:onnxruntime-node|pytorch)\S*(?: \S+)*?\s+\d+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+(\S+)", out, re.M)
        self.assertEqual(len(diffs), 4, out)
        for d in diffs:
            self.assertLessEqual(float(d), 1e-4, out)

    def test_model_profile_by_op_type(self):
        out = run("bench", "model", "--onnx", tiny_onnx(), "--batch", "2", "--seconds", "0.2", "--peers", "none",
                  "--skip-peak", "--profile")
        self.assertRegex(out, r"profile batch 2 \(acg2vec, mean of 3 runs, [\d.]+ ms per run in kernels\):")
        rows = dict((m[0], (int(m[1]), float(m[3]))) for m in
                    re.findall(r"^  ([\w+]+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)%$", out, re.M))
        # The tiny ResNet's convolutions (BatchNormalization folded into them) are all counted, under
        # the names of what runs: a convolution with its ReLU and residual Add fused is one step
        # named "Conv+Relu" / "Conv+Add+Relu".
        self.assertNotIn("BatchNormalization", rows, out)
        self.assertNotIn("Relu", rows, out)
        convs = {op: calls for op, (calls, _) in rows.items() if op == "Conv" or op.startswith("Conv+")}
        self.assertIn("Conv+Relu", convs, out)
        self.assertIn("Conv+Add+Relu", convs, out)
        self.assertGreater(sum(convs.values()), 10, out)
        self.assertAlmostEqual(sum(share for _, share in rows.values()), 100.0, delta=0.5)
        # The executor's own cost between kernels, per run and per step; the step count is what runs.
        m = re.search(r"^  dispatch between kernels: ([\d.]+) ms per run of ([\d.]+) ms \(([\d.]+)%\), "
                      r"([\d.]+) us per step over (\d+) steps$", out, re.M)
        self.assertIsNotNone(m, out)
        self.assertLessEqual(float(m[1]), float(m[2]), out)
        self.assertEqual(int(m[5]), sum(calls for calls, _ in rows.values()), out)

    def test_search_all_kinds(self):
        out = run("bench", "search", "--n", "5000", "--dim", "32", "--queries", "100", "--brute-seconds", "0.5")
        for col in ("INDEX", "BUILD_S", "RSS_MB", "QPS_1T", "QPS/CORE", "RECALL@1", "RECALL@10"):
            self.assertIn(col, out)
        rows = {m.group(1): m.group(0).split() for m in re.finditer(r"^(brute|flat|hnsw|ivf_pq)\s.*$", out, re.M)}
        self.assertEqual(set(rows), {"brute", "flat", "hnsw", "ivf_pq"}, out)
        # Flat search is exact: its recall against the independent matrix-product top-k is 1.
        self.assertEqual(rows["flat"][6:8], ["1.000", "1.000"], out)

    def test_http_plain_and_batched(self):
        models = installed_packs(["nsfw-mobilenet-v2"])
        out = run("bench", "http", "--seconds", "0.5", "--concurrency", "2", "--max-batch", "1,4", "--pack",
                  os.path.join(models, "nsfw-mobilenet-v2"))
        for col in ("SCENARIO", "CLIENTS", "REQ/S", "P50_MS", "P95_MS", "P99_MS", "ERRORS"):
            self.assertIn(col, out)
        for scenario in ("GET /health", "POST /v1/classify max_batch=1", "POST /v1/classify max_batch=4"):
            m = re.search(rf"^{re.escape(scenario)}\s+2\s+(\d+)\s+\S+\s+\S+\s+\S+\s+\S+\s+(\d+)$", out, re.M)
            self.assertIsNotNone(m, out)
            self.assertGreater(int(m.group(1)), 0, out)
            self.assertEqual(int(m.group(2)), 0, out)
        self.assertRegex(out, r"batching gain at 2 clients \(max_batch=4 vs max_batch=1\): [\d.]+x")

    def test_ingest_split(self):
        models = installed_packs(["nsfw-mobilenet-v2"])
        out = run("bench", "ingest", os.path.join(SOURCE, "tests", "data", "nsfw"), "--max-files", "4",
                  "--workers", "2", models_dir=models)
        for phase in ("decode", "preprocess", "inference", "store, index", "model-only", "ingest end to end"):
            self.assertIn(phase, out)
        self.assertRegex(out, r"ingest / model-only throughput: \d+%")

    def test_dedup_join_against_pair_scan(self):
        # Every tenth synthetic signature is a noisy copy of the one before: n/10 true pairs, all of
        # which the self-join must find (recall against the exact pair scan).
        num = r"[\d.]+"
        out = run("bench", "dedup", "--n", "2000", "--brute-max", "2000", "--threads", "1", "--neighbours", "1")
        self.assertIn("1 OpenMP threads", out)
        self.assertIn("k=1,", out)  # one neighbour per query still finds each planted copy
        self.assertRegex(out, r"BLAS: .*kernel")
        row = re.search(rf"^\s+2000\s+exact\s+{num}\s+{num}\s+{num}\s+(\d+)\s+(\d+)\s+{num}\s+({num}) \(all\)\s", out, re.M)
        self.assertIsNotNone(row, out)
        self.assertEqual(int(row.group(1)), 200, out)
        self.assertEqual(int(row.group(2)), 200, out)
        self.assertEqual(float(row.group(3)), 1.0, out)
        # --join-sample queries only the first vectors and says that its time is scaled; past --brute-max
        # the scan runs on sampled rows (here the 1000 queried ones) against all n, which gives the recall
        # and the scan's time estimate.
        out = run("bench", "dedup", "--n", "4000", "--brute-max", "2000", "--join-sample", "1000", "--threads", "1")
        self.assertIn("join: 1000 of 4000 queried, time x4;", out)
        self.assertIn("scan: 1000 rows x 4000 timed, x4 for all rows;", out)
        # The first 1000 vectors hold 100 of the planted pairs, all found.
        self.assertRegex(out, rf"(?m)^\s+4000\s+exact\s+{num}\s+{num}\s+{num}\s+100\s+100\s+~{num} \(from 1000 rows\)\s+"
                              r"1\.0000 \(1000 rows\)\s")
        # Past --exact-max the join clusters: with every cluster probed it must still find every pair,
        # and each query then meets all 3000 rows; with fewer probes it meets fewer.
        out = run("bench", "dedup", "--n", "3000", "--brute-max", "1000", "--recall-sample", "500", "--exact-max", "1000",
                  "--clusters", "10", "--probes", "10", "--threads", "1")
        self.assertIn("scan: 500 rows x 3000 timed, x6 for all rows;", out)
        self.assertIn(" 3000 rows compared per query;", out)
        self.assertRegex(out, rf"(?m)^\s+3000\s+10c/10p\s+{num}\s+{num}\s+{num}\s+300\s+300\s+~{num} \(from 500 rows\)\s+"
                              r"1\.0000 \(500 rows\)\s")
        out = run("bench", "dedup", "--n", "3000", "--brute-max", "3000", "--exact-max", "1000", "--clusters", "10",
                  "--probes", "3", "--threads", "1")
        compared = re.search(r" (\d+) rows compared per query;", out)
        self.assertIsNotNone(compared, out)
        self.assertLess(int(compared.group(1)), 1500, out)
        self.assertRegex(out, rf"(?m)^\s+3000\s+10c/3p\s+.*\s({num}) \(all\)\s")

    def test_soak_mixed_load(self):
        import json
        import tempfile
        models = installed_packs(["nsfw-mobilenet-v2"])
        with tempfile.TemporaryDirectory() as tmp:
            report = os.path.join(tmp, "soak.json")
            out = run("bench", "soak", "--pack", os.path.join(models, "nsfw-mobilenet-v2"), "--clients", "4",
                      "--seconds", "4", "--warmup", "0.25", "--report", report)
            for op in ("classify", "embed/image", "search", "insert"):
                self.assertIsNotNone(re.search(rf"^{re.escape(op)}\s+\d+", out, re.M), out)
            self.assertRegex(out, r"server RSS after warm-up [\d.]+ MiB")
            with open(report) as f:
                r = json.load(f)
        # Every request was answered without a server error; at least the reads got answers.
        self.assertEqual(r["no_answer"], 0, r)
        self.assertFalse([s for s in r["statuses"] if int(s) >= 500], r)
        self.assertGreater(r["operations"]["classify"]["requests"] + r["operations"]["search"]["requests"], 0, r)
        self.assertGreaterEqual(len(r["rss_samples"]), 3, r)


if __name__ == "__main__":
    unittest.main()
