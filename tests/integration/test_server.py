"""The foundation's server behaviour, driven over loopback against the real binary."""
import os
import re
import signal
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from acg2vec_harness import Server, raw_get  # noqa: E402

SOURCE = os.environ.get("ACG2VEC_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))



class ServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server("--max-upload-mb", "1", "--max-request-mb", "2")
        cls.srv.start()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.srv.tmp.cleanup()

    def test_health(self):
        status, body = self.srv.json("GET", "/health")
        self.assertEqual(status, 200)
        self.assertEqual(body["status"], "ready")
        self.assertIn("models", body)

    def test_second_server_on_the_same_port_is_refused(self):
        import subprocess
        import tempfile
        from acg2vec_harness import BIN
        with tempfile.TemporaryDirectory() as d:
            r = subprocess.run([BIN, "--data-dir", os.path.join(d, "data"), "--models-dir", d, "serve", "--host",
                                "127.0.0.1", "--port", str(self.srv.port)], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 7, r.stderr)  # unavailable
        self.assertIn("address in use", r.stderr)
        # The first server still answers every request (no connection went to the refused one).
        for _ in range(20):
            status, _, _ = self.srv.request("GET", "/health")
            self.assertEqual(status, 200)

    def test_request_id_generated_and_echoed(self):
        _, headers, _ = self.srv.request("GET", "/health")
        self.assertTrue(headers.get("X-Request-Id"))
        _, headers, _ = self.srv.request("GET", "/health", headers={"X-Request-Id": "abc-123"})
        self.assertEqual(headers.get("X-Request-Id"), "abc-123")

    def test_metrics_counts_requests(self):
        self.srv.request("GET", "/health")
        status, headers, body = self.srv.request("GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/plain"))
        text = body.decode()
        self.assertIn('acg2vec_http_requests_total{route="health",method="GET",status="200"}', text)
        self.assertIn("acg2vec_http_request_duration_seconds_bucket", text)

    def test_unknown_route_is_json_404(self):
        status, body = self.srv.json("POST", "/no/such/route", {"a": 1})
        self.assertEqual(status, 404)
        self.assertIn("message", body)
        status, body = self.srv.json("GET", "/no-such-file.txt")
        self.assertEqual(status, 404)
        self.assertIn("message", body)

    def test_body_over_limit_is_413(self):
        big = b"x" * (3 << 20)  # limit is 1 MB per file part, 2 MB per request
        try:
            status, body = self.srv.json("POST", "/no/such/route", big, {"Content-Type": "application/octet-stream"})
        except (ConnectionResetError, BrokenPipeError):
            self.fail("server reset the connection instead of answering 413")
        self.assertEqual(status, 413)
        self.assertIn("message", body)

    def test_static_index(self):
        status, headers, body = self.srv.request("GET", "/")
        self.assertEqual(status, 200)
        self.assertIn("text/html", headers["Content-Type"])
        self.assertIn(b"acg2vec", body)

    def test_path_escape_refused(self):
        for path in ["/../CMakeLists.txt", "/%2e%2e/CMakeLists.txt", "/..%2fCMakeLists.txt", "/./../../etc/passwd",
                     "/%2e%2e%2f%2e%2e%2fetc%2fpasswd"]:
            status, body = raw_get(self.srv.port, path)
            self.assertIn(status, (400, 404), path)
            self.assertNotIn(b"cmake_minimum_required", body, path)
            self.assertNotIn(b"root:", body, path)

    def test_openapi_lists_routes(self):
        status, body = self.srv.json("GET", "/openapi.json")
        self.assertEqual(status, 200)
        self.assertEqual(body["openapi"], "3.0.3")
        for path in ["/v1/search", "/images/similarImages", "/v1/models/{name}:predict", "/health"]:
            self.assertIn(path, body["paths"])

    def test_openapi_is_the_route_table_and_matches_the_readme(self):
        """/openapi.json is generated from the routes the server registered; every one must have a
        documentation entry, and README's route tables must list exactly the same routes."""
        status, body = self.srv.json("GET", "/openapi.json")
        self.assertEqual(status, 200)
        served = set()
        for path, ops in body["paths"].items():
            for method, op in ops.items():
                self.assertNotEqual(op["summary"], "(undocumented)", f"{method} {path} has no OpenAPI entry")
                self.assertIn(op["x-access"], ("open", "read", "write"))
                served.add((method.upper(), re.sub(r"\{[^}]*\}", "{}", path)))
        readme = open(os.path.join(SOURCE, "README.md"), encoding="utf-8").read()
        section = readme[readme.index("## HTTP API"):]
        section = section[:section.index("\n## ", 5)]
        listed = set()
        for methods, path in re.findall(r"`((?:GET|POST|PUT|DELETE|PATCH)(?:/(?:GET|POST|PUT|DELETE|PATCH))*) (/[^`\s?]*)", section):
            for m in methods.split("/"):
                listed.add((m, re.sub(r"\{[^}]*\}", "{}", re.sub(r"\[/versions/\{v\}\]", "", path))))
        # The optional version segment is written once in README for both predict paths.
        if ("POST", "/v1/models/{}:predict") in listed:
            listed.add(("POST", "/v1/models/{}/versions/{}:predict"))
        self.assertEqual(sorted(served - listed), [], "served but missing from README")
        self.assertEqual(sorted(listed - served), [], "in README but not served")

    def test_version(self):
        status, body = self.srv.json("GET", "/v1/version")
        self.assertEqual(status, 200)
        self.assertEqual(body["data"]["name"], "acg2vec")


class ShutdownTest(unittest.TestCase):
    def test_sigterm_stops_cleanly(self):
        srv = Server()
        srv.start()
        # /health answers 503 until loading is over (asynchronous by design); wait, then check it.
        srv.wait_ready()
        self.assertEqual(srv.request("GET", "/health")[0], 200)
        self.assertEqual(srv.stop(signal.SIGTERM), 0)
        self.assertIn("stopped", srv.read_log())
        srv.tmp.cleanup()


class CliTest(unittest.TestCase):
    def test_errors_are_one_readable_line_and_nonzero(self):
        import subprocess
        import tempfile
        from acg2vec_harness import BIN
        with tempfile.TemporaryDirectory() as empty:
            image = os.path.join(os.environ.get("ACG2VEC_SOURCE_DIR", "."), "tests", "data", "nsfw", "demo_bg_cave.png")
            r = subprocess.run([BIN, "--models-dir", empty, "tag", image], capture_output=True, text=True)
            self.assertEqual(r.returncode, 7, r.stderr)  # unavailable: no tagger installed
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
            self.assertIn("tagger", r.stderr)
            r = subprocess.run([BIN, "--log-level", "error", "--data-dir", empty, "--models-dir", empty, "search", "--id", "x"], capture_output=True, text=True)
            self.assertEqual(r.returncode, 5, r.stderr)  # not found
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)

    def test_help_lists_subcommands(self):
        import subprocess
        from acg2vec_harness import BIN
        r = subprocess.run([BIN, "--help"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0)
        for sub in ["serve", "ingest", "tag", "embed", "search", "models", "bench", "version"]:
            self.assertIn(sub, r.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
