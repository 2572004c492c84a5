"""Access control over loopback against the real binary: API keys on write routes (and on reads
with --protect-reads), CORS answers for allowed and refused origins, the per-client rate limit, and
static files that must not leave the web root through dots, encodings, backslashes or symlinks."""
import json
import os
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from acg2vec_harness import Server, raw_get  # noqa: E402
from packs import real_images  # noqa: E402

PNG = open(real_images()[0], "rb").read()
KEYS = ["first-key-0123456789abcdef", "second-key-fedcba9876543210"]
SECRET = b"this text lives outside the web root"


def write_key_file(directory):
    path = os.path.join(directory, "keys")
    with open(path, "w") as f:
        f.write("# keys for the access control test\n\n" + KEYS[0] + "\n   " + KEYS[1] + "  \n")
    return path


def bearer(key):
    return {"Authorization": "Bearer " + key}



def multipart(files=None, fields=None):
    boundary = "acg2vecaccesstestboundary"
    out = b""
    for name, value in (fields or {}).items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value.encode() + b"\r\n"
    for name, (filename, content) in (files or {}).items():
        out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f'Content-Type: image/png\r\n\r\n').encode() + content + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def image_body(**fields):
    return multipart({"file": ("a.png", PNG)}, fields)


def json_body(obj):
    return json.dumps(obj).encode(), {"Content-Type": "application/json"}


NO_BODY = (None, {})


def write_routes():
    """Every route that changes the collection, with a request that would succeed given a key."""
    return [
        ("POST", "/v1/items", image_body(id="w1")),
        ("POST", "/v1/items/batch", image_body()),
        ("PUT", "/v1/items/w1", json_body({"metadata": {"a": 1}})),
        ("DELETE", "/v1/items/w1", NO_BODY),
        ("POST", "/images/77", image_body()),
        ("PUT", "/images/77", image_body()),
        ("DELETE", "/images/77", NO_BODY),
    ]


# Read routes that answer without any model installed (200), or 404 for an unknown model.
READ_ROUTES = [
    ("GET", "/v1/stats", NO_BODY, 200),
    ("GET", "/v1/items", NO_BODY, 200),
    ("GET", "/v1/models", NO_BODY, 200),
    ("GET", "/v1/version", NO_BODY, 200),
    ("GET", "/metrics", NO_BODY, 200),
    ("GET", "/v1/models/no-such-model", NO_BODY, 404),
    ("POST", "/v1/search", json_body({"id": "no-such-item"}), 404),
]


class Base(unittest.TestCase):
    server_args = ()
    server_env = None

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory(prefix="acg2vec-access-")
        cls.key_file = write_key_file(cls.dir.name)
        cls.prepare(cls.dir.name)
        env = {k: v.format(key_file=cls.key_file) for k, v in (cls.server_env or {}).items()}
        args = [a.format(key_file=cls.key_file, web_root=os.path.join(cls.dir.name, "web")) for a in cls.server_args]
        cls.srv = Server(*args, env=env)
        cls.srv.start()
        cls.srv.wait_ready(timeout=60)

    @classmethod
    def prepare(cls, directory):
        pass

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.srv.tmp.cleanup()
        cls.dir.cleanup()

    def call(self, method, path, body_and_headers=NO_BODY, headers=None):
        body, base = body_and_headers
        status, hdrs, data = self.srv.request(method, path, body, dict(base, **(headers or {})))
        return status, hdrs, data

    def assert_json_error(self, data, kind):
        answer = json.loads(data)
        self.assertEqual(answer.get("error"), kind, answer)
        self.assertTrue(answer.get("message"), answer)


class KeysAndCorsTest(Base):
    """Keys from --api-key-file; reads open; two CORS origins (repeated flag and a comma list);
    a web root with escape attempts."""
    server_args = ("--api-key-file", "{key_file}", "--cors-origin", "http://allowed.test",
                   "--cors-origin", "http://other.test, http://third.test:8080", "--web-root", "{web_root}")

    @classmethod
    def prepare(cls, directory):
        web = os.path.join(directory, "web")
        outside = os.path.join(directory, "outside")
        os.makedirs(os.path.join(web, "sub"))
        os.makedirs(outside)
        with open(os.path.join(web, "index.html"), "w") as f:
            f.write("<html>access test page</html>")
        with open(os.path.join(web, "sub", "inner.txt"), "w") as f:
            f.write("inner file")
        with open(os.path.join(outside, "secret.txt"), "wb") as f:
            f.write(SECRET)
        with open(os.path.join(directory, "secret.txt"), "wb") as f:
            f.write(SECRET)
        # Links inside the root: to a file outside, to a directory outside, and one that stays inside.
        os.symlink(os.path.join(outside, "secret.txt"), os.path.join(web, "leak.txt"))
        os.symlink(outside, os.path.join(web, "outdir"))
        os.symlink(os.path.join(web, "sub", "inner.txt"), os.path.join(web, "alias.txt"))

    def item_count(self):
        return self.srv.json("GET", "/v1/stats")[1]["data"]["items"]

    def test_write_routes_without_a_key_are_401(self):
        before = self.item_count()
        for method, path, body in write_routes():
            with self.subTest(method=method, path=path):
                status, hdrs, data = self.call(method, path, body)
                self.assertEqual(status, 401, data[:200])
                self.assertTrue(hdrs.get("WWW-Authenticate", "").startswith("Bearer"), hdrs)
                self.assert_json_error(data, "unauthorized")
        self.assertEqual(self.item_count(), before)

    def test_write_routes_with_a_wrong_key_are_401(self):
        before = self.item_count()
        wrong = [bearer("nope"), bearer(KEYS[0][:-1]), bearer(KEYS[0] + "x"), bearer(KEYS[0].upper()),
                 {"X-API-Key": KEYS[1] + KEYS[0]}, {"Authorization": "Basic " + KEYS[0]}]
        for headers in wrong:
            for method, path, body in write_routes():
                with self.subTest(method=method, path=path, headers=headers):
                    status, hdrs, data = self.call(method, path, body, headers)
                    self.assertEqual(status, 401, data[:200])
                    self.assertIn("Bearer", hdrs.get("WWW-Authenticate", ""))
                    self.assert_json_error(data, "unauthorized")
        self.assertEqual(self.item_count(), before)

    def test_write_routes_with_a_key_succeed(self):
        expected = [201, 200, 200, 200, 200, 200, 200]
        for i, ((method, path, body), want) in enumerate(zip(write_routes(), expected)):
            # Both keys and both header forms are accepted.
            headers = bearer(KEYS[i % 2]) if i % 3 else {"X-API-Key": KEYS[i % 2]}
            with self.subTest(method=method, path=path):
                status, _, data = self.call(method, path, body, headers)
                self.assertEqual(status, want, data[:300])
        # w1 and 77 were added and deleted again; the batch upload was a duplicate of w1's content.
        self.assertEqual(self.item_count(), 0)

    def test_read_routes_are_open_by_default(self):
        for method, path, body, want in READ_ROUTES:
            with self.subTest(method=method, path=path):
                status, _, data = self.call(method, path, body)
                self.assertEqual(status, want, data[:200])
        # A wrong key on an open route is ignored rather than refused.
        status, _, _ = self.call("GET", "/v1/stats", NO_BODY, bearer("wrong"))
        self.assertEqual(status, 200)

    def test_health_openapi_and_page_are_open(self):
        self.assertEqual(self.call("GET", "/health")[0], 200)
        self.assertEqual(self.call("GET", "/openapi.json")[0], 200)
        status, _, data = self.call("GET", "/")
        self.assertEqual(status, 200)
        self.assertIn(b"access test page", data)

    def test_openapi_describes_the_security_schemes(self):
        status, doc = self.srv.json("GET", "/openapi.json")
        self.assertEqual(status, 200)
        schemes = doc["components"]["securitySchemes"]
        self.assertEqual(schemes["bearer"], {"type": "http", "scheme": "bearer"})
        self.assertEqual(schemes["apiKey"], {"type": "apiKey", "in": "header", "name": "X-API-Key"})
        post_items = doc["paths"]["/v1/items"]["post"]
        self.assertNotIn({}, post_items["security"])  # a write: the key is not optional
        self.assertIn("401", post_items["responses"])
        self.assertIn("429", post_items["responses"])
        search = doc["paths"]["/v1/search"]["post"]
        self.assertIn({}, search["security"])  # a read: optional unless --protect-reads
        self.assertEqual(doc["paths"]["/health"]["get"]["security"], [])

    def test_cors_allowed_origins_get_headers(self):
        for origin in ["http://allowed.test", "http://other.test", "http://third.test:8080"]:
            with self.subTest(origin=origin):
                status, hdrs, _ = self.call("GET", "/v1/stats", NO_BODY, {"Origin": origin})
                self.assertEqual(status, 200)
                self.assertEqual(hdrs.get("Access-Control-Allow-Origin"), origin)
                self.assertIn("Origin", hdrs.get("Vary", ""))
        # A refusal carries the CORS headers too, so the page can read why.
        status, hdrs, _ = self.call("DELETE", "/v1/items/x", NO_BODY, {"Origin": "http://allowed.test"})
        self.assertEqual(status, 401)
        self.assertEqual(hdrs.get("Access-Control-Allow-Origin"), "http://allowed.test")

    def test_cors_other_origins_get_no_headers(self):
        for origin in ["http://evil.test", "http://allowed.test.evil.test", "http://third.test", "null"]:
            with self.subTest(origin=origin):
                status, hdrs, _ = self.call("GET", "/v1/stats", NO_BODY, {"Origin": origin})
                self.assertEqual(status, 200)  # answered, but a browser will not hand it to the page
                self.assertNotIn("Access-Control-Allow-Origin", hdrs)

    def test_cors_preflight(self):
        status, hdrs, data = self.call("OPTIONS", "/v1/items", NO_BODY,
                                       {"Origin": "http://other.test", "Access-Control-Request-Method": "POST",
                                        "Access-Control-Request-Headers": "authorization, content-type"})
        self.assertEqual(status, 204, data)
        self.assertEqual(hdrs.get("Access-Control-Allow-Origin"), "http://other.test")
        allowed_headers = [h.strip().lower() for h in hdrs.get("Access-Control-Allow-Headers", "").split(",")]
        for h in ["authorization", "x-api-key", "content-type"]:
            self.assertIn(h, allowed_headers)
        allowed_methods = [m.strip() for m in hdrs.get("Access-Control-Allow-Methods", "").split(",")]
        for m in ["GET", "POST", "PUT", "DELETE"]:
            self.assertIn(m, allowed_methods)
        self.assertGreater(int(hdrs.get("Access-Control-Max-Age", "0")), 0)

        status, hdrs, data = self.call("OPTIONS", "/v1/items", NO_BODY,
                                       {"Origin": "http://evil.test", "Access-Control-Request-Method": "POST"})
        self.assertEqual(status, 403)
        self.assertNotIn("Access-Control-Allow-Origin", hdrs)
        self.assert_json_error(data, "forbidden")

    def test_static_files_inside_the_root_are_served(self):
        status, body = raw_get(self.srv.port, "/sub/inner.txt")
        self.assertEqual((status, body), (200, b"inner file"))
        status, body = raw_get(self.srv.port, "/alias.txt")  # a link that stays inside the root
        self.assertEqual((status, body), (200, b"inner file"))

    def test_static_files_cannot_leave_the_root(self):
        paths = [
            "/leak.txt", "/outdir/secret.txt",  # symlinks pointing outside
            "/../secret.txt", "/sub/../../secret.txt",
            "/%2e%2e/secret.txt", "/%2E%2E/secret.txt", "/%2e%2E%2fsecret.txt", "/sub/%2e%2e/%2e%2e/secret.txt",
            "/%252e%252e/secret.txt", "/%252e%252e%252fsecret.txt",  # double-encoded
            "/..\\secret.txt", "/sub\\..\\..\\secret.txt", "/%5c..%5csecret.txt", "/..%5csecret.txt",
            "/.%2e/secret.txt", "/outdir%2fsecret.txt",
        ]
        for path in paths:
            with self.subTest(path=path):
                status, body = raw_get(self.srv.port, path)
                self.assertIn(status, (400, 403, 404), body[:200])
                self.assertNotIn(SECRET, body)
                json.loads(body)  # every refusal is JSON


class ProtectReadsTest(Base):
    """Keys and --protect-reads from the environment; no CORS configured."""
    server_env = {"ACG2VEC_API_KEY_FILE": "{key_file}", "ACG2VEC_PROTECT_READS": "1"}

    def test_reads_need_a_key(self):
        for method, path, body, want in READ_ROUTES:
            with self.subTest(method=method, path=path):
                status, hdrs, data = self.call(method, path, body)
                self.assertEqual(status, 401, data[:200])
                self.assertIn("Bearer", hdrs.get("WWW-Authenticate", ""))
                self.assert_json_error(data, "unauthorized")
                status, _, data = self.call(method, path, body, bearer("wrong-key"))
                self.assertEqual(status, 401, data[:200])
                status, _, data = self.call(method, path, body, bearer(KEYS[1]))
                self.assertEqual(status, want, data[:200])

    def test_writes_still_need_a_key(self):
        status, _, _ = self.call("DELETE", "/v1/items/x")
        self.assertEqual(status, 401)
        status, _, _ = self.call("DELETE", "/v1/items/x", NO_BODY, {"X-API-Key": KEYS[0]})
        self.assertEqual(status, 404)

    def test_health_and_page_stay_open(self):
        status, _, _ = self.call("GET", "/health")
        self.assertEqual(status, 200)
        status, _, data = self.call("GET", "/")
        self.assertEqual(status, 200)
        self.assertEqual(self.call("GET", "/openapi.json")[0], 200)

    def test_no_cors_headers_without_the_flag(self):
        status, hdrs, _ = self.call("GET", "/health", NO_BODY, {"Origin": "http://allowed.test"})
        self.assertEqual(status, 200)
        self.assertFalse([h for h in hdrs if h.lower().startswith("access-control-")], hdrs)
        status, hdrs, _ = self.call("OPTIONS", "/v1/items", NO_BODY,
                                    {"Origin": "http://allowed.test", "Access-Control-Request-Method": "POST"})
        self.assertNotEqual(status, 204)
        self.assertFalse([h for h in hdrs if h.lower().startswith("access-control-")], hdrs)


class RateLimitTest(Base):
    """One request per second per client, bursts of three."""
    server_args = ("--api-key-file", "{key_file}", "--rate-limit", "1", "--rate-burst", "3")

    def drain(self, headers=None):
        """Requests until the first 429; returns the statuses and the refusal."""
        statuses = []
        for _ in range(12):
            status, hdrs, data = self.call("GET", "/v1/stats", NO_BODY, headers)
            statuses.append(status)
            if status == 429:
                return statuses, hdrs, data
        self.fail(f"no 429 after {statuses}")

    def test_over_the_burst_is_429_then_recovers(self):
        statuses, hdrs, data = self.drain()
        self.assertEqual(statuses[:3], [200, 200, 200])
        self.assert_json_error(data, "rate_limited")
        retry = int(hdrs["Retry-After"])
        self.assertGreaterEqual(retry, 1)
        self.assertLessEqual(retry, 2)
        # A wrong key counts against the address, so guessing keys is throttled too...
        self.assertEqual(self.call("DELETE", "/v1/items/x", NO_BODY, bearer("guess"))[0], 429)
        # ...while a valid key is its own client, not held back by the address's empty bucket.
        self.assertEqual(self.call("GET", "/v1/stats", NO_BODY, bearer(KEYS[0]))[0], 200)
        # /health is never throttled.
        for _ in range(3):
            self.assertEqual(self.call("GET", "/health")[0], 200)
        time.sleep(retry + 0.2)
        self.assertEqual(self.call("GET", "/v1/stats")[0], 200)


class StartupErrorsTest(unittest.TestCase):
    def run_serve(self, *args):
        import subprocess
        from acg2vec_harness import BIN
        with tempfile.TemporaryDirectory() as d:
            return subprocess.run([BIN, "--log-level", "error", "--data-dir", os.path.join(d, "data"),
                                   "--models-dir", d, "serve", "--port", "0", *[a.format(dir=d) for a in args]],
                                  capture_output=True, text=True, timeout=60)

    def test_bad_key_files_stop_the_server_with_one_line(self):
        cases = [
            (("--api-key-file", "{dir}/absent"), "does not exist"),
            (("--api-key-file", "{dir}"), "directory"),
            (("--api-key-file", os.devnull), "no keys"),
            (("--protect-reads",), "--api-key-file"),
            (("--cors-origin", "not-an-origin"), "not-an-origin"),
            (("--rate-burst", "5"), "--rate-limit"),
        ]
        for args, reason in cases:
            with self.subTest(args=args):
                r = self.run_serve(*args)
                self.assertNotEqual(r.returncode, 0, r.stderr)
                lines = r.stderr.strip().splitlines()
                self.assertEqual(len(lines), 1, r.stderr)
                self.assertIn(reason, lines[0])


if __name__ == "__main__":
    unittest.main(verbosity=2)
