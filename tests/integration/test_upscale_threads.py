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


class ServedUpscaleThreadsTest(unittest.TestCase):
    def served_threads(self, *extra):
        """The OpenMP thread counts oneDNN planned for while the server upscaled one image."""
        import io
        from acg2vec_harness import Server
        with tempfile.TemporaryDirectory() as d:
            models = os.path.join(d, "models")
            os.makedirs(models)
            os.symlink(os.path.join(SOURCE, "models", "realcugan-pro-conservative"),
                       os.path.join(models, "realcugan-pro-conservative"))
            srv = Server(*extra, models_dir=models, env={"ONEDNN_VERBOSE": "1"})
            srv.env.pop("OMP_NUM_THREADS", None)
            srv.env.pop("ACG2VEC_INTRA_OP_THREADS", None)
            with srv:
                srv.wait_ready()
                buf = io.BytesIO()
                Image.new("RGB", (24, 20), (200, 120, 40)).save(buf, "PNG")
                boundary = "b0undary"
                body = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="in.png"\r\n'
                        f'Content-Type: image/png\r\n\r\n').encode() + buf.getvalue() + f"\r\n--{boundary}--\r\n".encode()
                status, _, data = srv.request("POST", "/v1/upscale", body,
                                              {"Content-Type": f"multipart/form-data; boundary={boundary}"})
                self.assertEqual(status, 200, data[:300])
                self.assertEqual(Image.open(io.BytesIO(data)).size, (48, 40))
                with open(srv.log_path, encoding="utf-8", errors="replace") as f:
                    log = f.read()
            return set(re.findall(r"onednn_verbose,info,cpu,runtime:OpenMP,nthr:(\d+)", log)), log[-2000:]

    def test_served_upscale_uses_the_compute_team(self):
        # POST /v1/upscale runs where every forward runs: on the compute thread, with the team that
        # --intra-op-threads sizes (an HTTP worker thread would use its own OpenMP default).
        counts, log = self.served_threads()
        self.assertEqual(counts, {str(len(os.sched_getaffinity(0)))}, log)
        counts, log = self.served_threads("--intra-op-threads", "1")
        self.assertEqual(counts, {"1"}, log)


if __name__ == "__main__":
    unittest.main()
