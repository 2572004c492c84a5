"""Hostile clients against the real server over loopback: each attack ends with the expected
status, the server stays alive, its resident memory stays within a stated bound, and /health
(asked from another loopback address, 127.0.0.2) answers within 1 s while the attack runs.

Bounded in time: every loop has a deadline; the whole file runs in about two minutes
(ACG2VEC_HOSTILE_WRITERS_S sets the concurrent-writers phase, 60 s by default)."""
import base64
import json
import os
import select
import socket
import sys
import threading
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(__file__))
from acg2vec_harness import Server  # noqa: E402
from packs import real_images, test_packs  # noqa: E402

PNG = open(real_images()[0], "rb").read()
WORKERS = 4
HEAD_TIMEOUT_S = 2
REQUEST_TIMEOUT_S = 4
KEY = "hostile-test-key-0123456789"
WRITERS_S = float(os.environ.get("ACG2VEC_HOSTILE_WRITERS_S", "60"))
# What the server may grow by under one attack, on top of its resident set before it.
RSS_BOUND_MB = 300


def tiny_png(width=1, height=1):
    """A valid greyscale PNG of any size (zlib stream of zero rows), made without PIL."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"\x00" * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def multipart(files=None, fields=None):
    boundary = uuid.uuid4().hex
    out = b""
    for name, value in (fields or {}).items():
        value = value if isinstance(value, bytes) else value.encode()
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value + b"\r\n"
    for name, (filename, content) in (files or {}).items():
        out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f'Content-Type: application/octet-stream\r\n\r\n').encode() + content + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def readable(sock):
    """Whether the server has already answered (or closed): then a client stops sending."""
    return bool(select.select([sock], [], [], 0)[0])


def read_response(sock, timeout=10.0, pending=b""):
    """Reads one HTTP response from a socket (after any bytes already read): (status, headers,
    body, bytes left over); None if the peer closed first."""
    sock.settimeout(timeout)
    data = pending
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest[:length], rest[length:]


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class HealthProbe:
    """Asks /health from 127.0.0.2 every interval while an attack runs; records latencies."""

    def __init__(self, port, interval=0.5):
        self.port, self.interval = port, interval
        self.latencies, self.failures = [], []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            start = time.time()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5,
                                              source_address=("127.0.0.2", 0)) as s:
                    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    r = read_response(s, 5)
                    if r is None or r[0] != 200:
                        self.failures.append(r and r[0])
            except OSError as e:
                self.failures.append(str(e))
            self.latencies.append(time.time() - start)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


class HostileClientsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp_keys = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"acg2vec-keys-{uuid.uuid4().hex}")
        with open(cls.tmp_keys, "w") as f:
            f.write(KEY + "\n")
        cls.srv = Server("--threads", str(WORKERS), "--read-timeout", str(HEAD_TIMEOUT_S),
                         "--request-timeout", str(REQUEST_TIMEOUT_S), "--max-request-mb", "4", "--max-upload-mb", "2",
                         "--max-pixels", "1000000", "--max-instances", "16", "--api-key-file", cls.tmp_keys,
                         "--max-connections-per-client", "64", "--cors-origin", "http://Example.COM:8080",
                         models_dir=test_packs())
        cls.srv.start()
        cls.srv.wait_ready()
        cls.auth = {"Authorization": f"Bearer {KEY}"}

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.srv.tmp.cleanup()
        os.remove(cls.tmp_keys)

    def setUp(self):
        self.rss_before = rss_mb(self.srv.proc.pid)

    def tearDown(self):
        self.assertIsNone(self.srv.proc.poll(), "the server died: " + self.srv.read_log())
        status, _, _ = self.srv.request("GET", "/health", timeout=5)
        self.assertEqual(status, 200)
        grown = rss_mb(self.srv.proc.pid) - self.rss_before
        self.assertLess(grown, RSS_BOUND_MB, f"resident set grew by {grown:.0f} MB")

    def connect(self):
        return socket.create_connection(("127.0.0.1", self.srv.port), timeout=10)

    def assert_probe_ok(self, probe):
        self.assertGreater(len(probe.latencies), 0)
        self.assertEqual(probe.failures, [])
        self.assertLess(max(probe.latencies), 1.0, probe.latencies)

    # ---- 1. deep JSON in every field that takes JSON ----
    def test_deep_json_in_every_json_field(self):
        deep = "[" * 65000 + "]" * 65000
        deep_obj = '{"a":' * 30000 + "1" + "}" * 30000
        for doc in (deep, deep_obj):
            cases = [
                ("POST", "/v1/items", multipart({"file": ("a.png", PNG)}, {"metadata": doc})),
                ("PUT", "/v1/items/deep", multipart({"file": ("a.png", PNG)}, {"metadata": doc})),
                ("POST", "/images/777", multipart({"file": ("a.png", PNG)}, {"extend": doc})),
                ("PUT", "/images/777", multipart({"file": ("a.png", PNG)}, {"extend": doc})),
                ("PUT", "/v1/items/deep", ('{"metadata": ' + doc + "}", {"Content-Type": "application/json"})),
                ("POST", "/v1/search", (doc, {"Content-Type": "application/json"})),
                ("POST", "/v1/embed/text", (doc, {"Content-Type": "application/json"})),
                ("POST", "/v1/models/deepdanbooru:predict", (doc, {"Content-Type": "application/json"})),
                ("POST", "/v1/models/deepdanbooru-test/infer", (doc, {"Content-Type": "application/json"})),
            ]
            for method, path, (body, headers) in cases:
                with self.subTest(method=method, path=path):
                    status, _, data = self.srv.request(method, path, body, dict(headers, **self.auth), timeout=30)
                    self.assertEqual(status, 400, data[:200])
                    self.assertIn(b"nested deeper than 64", data)
        self.assertEqual(self.srv.request("GET", "/v1/items/deep")[0], 404)

    # ---- 2. concurrent writers on one id ----
    def test_concurrent_writers_on_one_id(self):
        body, headers = multipart({"file": ("a.png", PNG)}, {"id": "contested", "metadata": '{"k": 1}'})
        put_body, put_headers = multipart({"file": ("a.png", PNG)})
        deadline = time.time() + WRITERS_S
        seen, bad = {}, []
        lock = threading.Lock()

        def writer(kind):
            while time.time() < deadline:
                try:
                    if kind == 0:
                        r = self.srv.request("POST", "/v1/items", body, dict(headers, **self.auth), timeout=30)
                    elif kind == 1:
                        r = self.srv.request("PUT", "/v1/items/contested", put_body, dict(put_headers, **self.auth),
                                             timeout=30)
                    elif kind == 2:
                        r = self.srv.request("PUT", "/v1/items/contested", json.dumps({"metadata": {"k": 2}}),
                                             dict({"Content-Type": "application/json"}, **self.auth), timeout=30)
                    else:
                        r = self.srv.request("DELETE", "/v1/items/contested", None, self.auth, timeout=30)
                    with lock:
                        seen[r[0]] = seen.get(r[0], 0) + 1
                        if r[0] >= 500:
                            bad.append((kind, r[0], r[2][:200]))
                except OSError as e:
                    with lock:
                        bad.append((kind, "connection", str(e)))

        with HealthProbe(self.srv.port) as probe:
            threads = [threading.Thread(target=writer, args=(i % 4,)) for i in range(16)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        self.assertEqual(bad, [], seen)
        self.assertTrue(set(seen) <= {200, 201, 404, 409}, seen)
        self.assertGreater(seen.get(201, 0), 0, seen)
        self.assertGreater(seen.get(200, 0), 0, seen)
        self.assertEqual(probe.failures, [])

    # ---- 3. slow-loris: 4x the worker count, one header byte at a time ----
    def test_slow_loris_with_four_times_the_workers(self):
        request = b"GET /v1/stats HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 200 + b"\r\n\r\n"
        socks = [self.connect() for _ in range(4 * WORKERS)]
        outcomes = [None] * len(socks)

        def loris(i, s):
            start = time.time()
            try:
                for byte in request:
                    if readable(s):
                        break
                    s.sendall(bytes([byte]))
                    time.sleep(0.25)
                    if time.time() - start > 20:
                        break
            except OSError:
                pass  # the server closed the connection after its 408
            try:
                r = read_response(s, 10)
                outcomes[i] = (r and r[0], time.time() - start)
            except OSError as e:
                outcomes[i] = (str(e), time.time() - start)

        with HealthProbe(self.srv.port, interval=0.4) as probe:
            threads = [threading.Thread(target=loris, args=(i, s)) for i, s in enumerate(socks)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        for s in socks:
            s.close()
        for status, elapsed in outcomes:
            self.assertEqual(status, 408, outcomes)
            # The head deadline (2 s), plus the 100 ms sweep, plus scheduling on a busy machine.
            self.assertLess(elapsed, HEAD_TIMEOUT_S + 5, outcomes)
        self.assert_probe_ok(probe)
        self.assertGreaterEqual(len(probe.latencies), 4)

    def test_slow_body_gets_408_at_the_request_deadline(self):
        s = self.connect()
        s.sendall(b"POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
        start = time.time()
        with HealthProbe(self.srv.port) as probe:
            r = None
            try:
                while time.time() - start < 15 and not readable(s):
                    s.sendall(b" ")
                    time.sleep(0.2)
            except OSError:
                pass
            r = read_response(s, 10)
        s.close()
        self.assertEqual(r[0], 408)
        self.assertLess(time.time() - start, REQUEST_TIMEOUT_S + 6)
        self.assert_probe_ok(probe)

    # ---- 4. bodies and headers bounded while they are read ----
    def test_oversized_chunked_body_is_refused_while_streaming(self):
        s = self.connect()
        s.sendall(b"POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n" % (1 << 20) + b"a" * (1 << 20) + b"\r\n"
        sent = 0
        with HealthProbe(self.srv.port) as probe:
            try:
                for _ in range(160):  # up to 160 MB against a 4 MB limit
                    if readable(s):
                        break
                    s.sendall(chunk)
                    sent += 1
            except OSError:
                pass  # refused and closed
            r = read_response(s, 10)
        s.close()
        self.assertIsNotNone(r)
        self.assertEqual(r[0], 413)
        self.assertLess(sent, 160, "the whole oversized body was accepted")
        self.assert_probe_ok(probe)

    def test_unauthenticated_body_is_refused_before_it_is_read(self):
        s = self.connect()
        s.sendall(b"PUT /v1/items/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                  b"Content-Type: application/json\r\n\r\n")
        r = read_response(s, 5)  # no body byte sent: the answer must not wait for it
        s.close()
        self.assertEqual(r[0], 401)
        self.assertIn("bearer", r[1].get("www-authenticate", "").lower())

    def test_huge_header_line_and_header_flood(self):
        s = self.connect()
        try:
            s.sendall(b"GET /health HTTP/1.1\r\nX-Big: " + b"a" * (2 << 20) + b"\r\n\r\n")
        except OSError:
            pass
        r = read_response(s, 5)
        s.close()
        self.assertEqual(r[0], 431)
        s = self.connect()
        flood = b"GET /health HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(5000)) + b"\r\n"
        try:
            s.sendall(flood)
        except OSError:
            pass
        r = read_response(s, 5)
        s.close()
        self.assertEqual(r[0], 431)

    def test_expect_continue_over_the_limit_gets_the_final_status(self):
        s = self.connect()
        start = time.time()
        s.sendall(b"POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\nExpect: 100-continue\r\n\r\n")
        r = read_response(s, 5)
        s.close()
        self.assertEqual(r[0], 413)
        self.assertLess(time.time() - start, 1.0)

    def test_expect_continue_within_the_limit_gets_100(self):
        body = json.dumps({"tags": ["solo"]}).encode()
        s = self.connect()
        s.sendall(b"POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % len(body))
        r = read_response(s, 5)
        self.assertEqual(r[0], 100)
        s.sendall(body)
        r = read_response(s, 10)
        s.close()
        self.assertEqual(r[0], 200)

    def test_bad_content_lengths_are_answered_at_once(self):
        for value, want in ((b"-1", 400), (b"9223372036854775808", 413), (b"12abc", 400), (b"1, 2", 400)):
            s = self.connect()
            start = time.time()
            s.sendall(b"POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Length: " + value + b"\r\n\r\n")
            r = read_response(s, 5)
            s.close()
            self.assertEqual(r[0], want, value)
            self.assertLess(time.time() - start, 1.0, value)

    # ---- 5. memory amplification through inference ----
    def test_predict_batch_is_bounded_and_split(self):
        one = {"b64_input_bytes": base64.b64encode(tiny_png()).decode()}
        status, _, data = self.srv.request("POST", "/v1/models/deepdanbooru:predict",
                                           json.dumps({"instances": [one] * 512}), {"Content-Type": "application/json"})
        self.assertEqual(status, 413, data[:200])
        self.assertIn(b"--max-instances", data)
        status, _, data = self.srv.request("POST", "/v1/models/deepdanbooru:predict",
                                           json.dumps({"instances": [one] * 16}), {"Content-Type": "application/json"})
        self.assertEqual(status, 200, data[:300])
        self.assertEqual(len(json.loads(data)["predictions"]), 16)

    def test_infer_bounds_the_batch_dimension(self):
        status, _, data = self.srv.request("GET", "/v1/models")
        models = {m["name"]: m for m in json.loads(data)["data"]}
        self.assertIn("deepdanbooru-test", models)
        status, _, data = self.srv.request("POST", "/v1/models/deepdanbooru-test/infer",
                                           json.dumps({"inputs": [[[[0.0]]]] * 120}),
                                           {"Content-Type": "application/json"})
        self.assertEqual(status, 413, data[:200])
        self.assertIn(b"--max-instances", data)
        status, _, data = self.srv.request("POST", "/v1/models/deepdanbooru-test/infer",
                                           json.dumps({"inputs": [0.0] * 10}), {"Content-Type": "application/json"})
        self.assertEqual(status, 400, data[:200])

    def test_ragged_token_ids_are_400_without_internals(self):
        body = {"instances": [{"input_ids": [101, 102]}, {"input_ids": [101, 7, 8, 102]}]}
        status, _, data = self.srv.request("POST", "/v1/models/acgvoc2vec:predict", json.dumps(body),
                                           {"Content-Type": "application/json"})
        self.assertEqual(status, 400, data[:300])
        for leak in (b"0x", b"Exception raised from", b"frame #", b".so"):
            self.assertNotIn(leak, data)

    # ---- 6. range amplification ----
    def test_many_ranges_give_the_file_once(self):
        status, headers, whole = self.srv.request("GET", "/index.html")
        self.assertEqual(status, 200)
        ranges = "bytes=" + ",".join(["0-"] * 1500)
        status, headers, data = self.srv.request("GET", "/index.html", headers={"Range": ranges})
        self.assertIn(status, (200, 416))
        self.assertLessEqual(len(data), len(whole))
        status, headers, data = self.srv.request("GET", "/index.html", headers={"Range": "bytes=0-9"})
        self.assertEqual(status, 206)
        self.assertEqual(data, whole[:10])

    # ---- 8. limits on every route ----
    def test_insert_routes_apply_max_pixels(self):
        big = tiny_png(1200, 1000)  # 1.2 MP against --max-pixels 1000000; 1 KB on the wire
        for method, path, fields in (("POST", "/v1/items", {"id": "big"}), ("POST", "/images/4242", {}),
                                     ("PUT", "/images/4243", {}), ("POST", "/v1/items/batch", {})):
            body, headers = multipart({"file": ("big.png", big)}, fields)
            status, _, data = self.srv.request(method, path, body, dict(headers, **self.auth))
            with self.subTest(path=path):
                if path.endswith("batch"):
                    self.assertEqual(status, 200, data[:200])
                    self.assertIn(b"pixels", data)
                else:
                    self.assertEqual(status, 413, data[:200])
        self.assertEqual(self.srv.request("GET", "/v1/items/big")[0], 404)

    # ---- 9. ids that could never be reached ----
    def test_ids_that_routes_cannot_reach_are_refused(self):
        for item_id in ("../../etc/passwd", "..", "a//b", "/lead", "trail/", "x/thumbnail"):
            body, headers = multipart({"file": ("a.png", PNG)}, {"id": item_id})
            status, _, data = self.srv.request("POST", "/v1/items", body, dict(headers, **self.auth))
            self.assertEqual(status, 400, (item_id, data[:200]))
        # Every id that can be stored is reachable percent-encoded: fetch, thumbnail, delete.
        for item_id, encoded in (("a/b", "a%2Fb"), ("a?b#c d", "a%3Fb%23c%20d"), ("dir/sub\\x.png", "dir%2Fsub%5Cx.png")):
            body, headers = multipart({"file": ("a.png", PNG)}, {"id": item_id})
            status, _, data = self.srv.request("POST", "/v1/items", body, dict(headers, **self.auth))
            self.assertEqual(status, 201, (item_id, data[:200]))
            status, _, data = self.srv.request("GET", "/v1/items/" + encoded)
            self.assertEqual(status, 200, item_id)
            self.assertEqual(json.loads(data)["data"]["id"], item_id)
            self.assertEqual(self.srv.request("GET", f"/v1/items/{encoded}/thumbnail")[0], 200, item_id)
            self.assertEqual(self.srv.request("DELETE", "/v1/items/" + encoded, headers=self.auth)[0], 200, item_id)
            self.assertEqual(self.srv.request("GET", "/v1/items/" + encoded)[0], 404, item_id)

    # ---- 10. deleted means deleted ----
    def test_delete_removes_the_thumbnail(self):
        thumbs = os.path.join(self.srv.data_dir, "thumbs")
        unique = tiny_png(31, 17)
        body, headers = multipart({"file": ("u.png", unique)}, {"id": "thumbed"})
        self.assertEqual(self.srv.request("POST", "/v1/items", body, dict(headers, **self.auth))[0], 201)
        status, _, thumb = self.srv.request("GET", "/v1/items/thumbed/thumbnail")
        self.assertEqual(status, 200)
        before = set(os.listdir(thumbs))
        self.assertEqual(self.srv.request("DELETE", "/v1/items/thumbed", headers=self.auth)[0], 200)
        after = set(os.listdir(thumbs))
        self.assertEqual(len(before - after), 1, (before, after))
        self.assertEqual(self.srv.request("GET", "/v1/items/thumbed/thumbnail")[0], 404)

    # ---- 11. pipelining, NUL in keys, CORS case ----
    def test_pipelined_requests_are_all_answered_in_order(self):
        s = self.connect()
        paths = ["/health", "/v1/version", "/v1/stats", "/v1/version"]
        s.sendall(b"".join(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % p.encode() for p in paths))
        rest = b""
        statuses = []
        for _ in paths:
            r = read_response(s, 5, rest)
            statuses.append(r[0])
            rest = r[3]
        s.close()
        self.assertEqual(statuses, [200, 200, 200, 200])

    def test_nul_after_a_valid_key_does_not_authenticate(self):
        s = self.connect()
        s.sendall(b"DELETE /v1/items/nothing HTTP/1.1\r\nHost: x\r\nX-API-Key: " + KEY.encode() + b"\x00junk\r\n\r\n")
        r = read_response(s, 5)
        s.close()
        self.assertEqual(r[0], 400)
        status, _, _ = self.srv.request("DELETE", "/v1/items/nothing", headers={"X-API-Key": KEY})
        self.assertEqual(status, 404)
        status, _, _ = self.srv.request("DELETE", "/v1/items/nothing", headers={"X-API-Key": KEY + "x"})
        self.assertEqual(status, 401)

    def test_cors_origin_is_case_insensitive_and_allows_asked_headers(self):
        status, headers, _ = self.srv.request("OPTIONS", "/similarityImages", headers={
            "Origin": "http://example.com:8080", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-custom-header, content-type"})
        self.assertEqual(status, 204)
        self.assertEqual(headers.get("Access-Control-Allow-Origin"), "http://example.com:8080")
        self.assertIn("x-custom-header", headers.get("Access-Control-Allow-Headers", "").lower())
        self.assertTrue(headers.get("Access-Control-Max-Age"))
        status, headers, _ = self.srv.request("OPTIONS", "/similarityImages", headers={
            "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
        self.assertEqual(status, 403)

    def test_wrong_method_is_405_with_allow(self):
        status, headers, data = self.srv.request("POST", "/health", "{}", {"Content-Type": "application/json"})
        self.assertEqual(status, 405, data[:200])
        self.assertIn("GET", headers.get("Allow", ""))
        status, headers, data = self.srv.request("GET", "/v1/classify")
        self.assertEqual(status, 405, data[:200])
        self.assertIn("POST", headers.get("Allow", ""))

    # ---- connection caps ----
    def test_connection_cap_per_client_keeps_other_clients_served(self):
        held = []
        try:
            with HealthProbe(self.srv.port) as probe:
                for _ in range(64):
                    held.append(self.connect())
                time.sleep(0.3)
                extra = self.connect()
                r = read_response(extra, 5)
                extra.close()
                time.sleep(1.0)
            self.assertEqual(r[0], 503)
            self.assert_probe_ok(probe)
        finally:
            for s in held:
                s.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
