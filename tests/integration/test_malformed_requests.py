"""A table of malformed requests over every route: each gets the right 4xx with a JSON message,
nothing already stored changes, and the server keeps serving. Plus a slow-loris client, which must
get a timeout instead of holding a worker."""
import json
import os
import socket
import sys
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(__file__))
from acg2vec_harness import Server  # noqa: E402
from packs import real_images, test_packs  # noqa: E402

PNG = open(real_images()[0], "rb").read()


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


def img(name="image", data=PNG, **fields):
    return multipart({name: ("x.png", data)}, fields)


def form(**fields):
    return multipart(None, fields)


def as_json(obj):
    return (obj if isinstance(obj, (bytes, str)) else json.dumps(obj)), {"Content-Type": "application/json"}


NONE = (None, {})
CASES = [
    # (method, path, (body, headers), expected status)
    ("POST", "/v1/tag", NONE, 400),
    ("POST", "/v1/tag", form(model="deepdanbooru-test"), 400),
    ("POST", "/v1/tag", img(data=b""), 400),
    ("POST", "/v1/tag", img(data=b"just some text, not an image"), 415),
    ("POST", "/v1/tag", img(data=PNG[: len(PNG) // 2]), 415),
    ("POST", "/v1/tag", as_json({"image": "x"}), 400),
    ("POST", "/v1/tag", img(threshold_general="abc"), 400),
    ("POST", "/v1/tag", img(threshold_general="2"), 400),
    ("POST", "/v1/tag", img(model="no-such-model"), 404),
    ("POST", "/v1/classify", img(), 503),
    ("POST", "/images/labelsByDeepDanbooru", img(name="photo"), 400),
    ("POST", "/models/illust2vec/feature", img(data=b"<html><body>hi</body></html>"), 415),
    ("POST", "/images/socresByPix2Score", img(data=b"GIF89a" + b"\x00" * 40), 415),
    ("POST", "/pix2score", img(data=b"\x89PNG\r\n\x1a\n" + b"\x00" * (25 << 20)), 413),
    ("POST", "/models/acgvoc2vec/feature", form(), 400),
    ("POST", "/models/acgvoc2vec/feature", form(text=b"\xff\xfe broken"), 400),
    ("POST", "/models/dclip_text/feature", form(text=""), 400),
    ("POST", "/models/dclip_text/feature", form(text="x" * 100_001), 413),
    ("POST", "/models/dclip_image/feature", form(text="no image"), 400),
    ("POST", "/v1/embed/text", as_json(b"{bad json"), 400),
    ("POST", "/v1/embed/text", as_json({"texts": "not a list"}), 400),
    ("POST", "/v1/embed/text", as_json("[" * 10000 + "]" * 10000), 400),
    ("POST", "/v1/embed/image", img(data=b"hello"), 415),
    ("POST", "/v1/models/deepdanbooru-test/infer", as_json({"inputs": "x"}), 400),
    ("POST", "/v1/models/deepdanbooru-test/infer", as_json({"inputs": [[1, 2], [3]]}), 400),
    ("POST", "/v1/models/no-such-model/infer", as_json({"inputs": [1]}), 404),
    ("POST", "/v1/models/deepdanbooru:predict", as_json({}), 400),
    ("POST", "/v1/models/deepdanbooru:predict", as_json({"instances": []}), 400),
    ("POST", "/v1/models/deepdanbooru:predict", as_json({"instances": [{"b64_input_bytes": "%%%"}]}), 400),
    ("POST", "/v1/models/acgvoc2vec:predict", as_json({"instances": [{"attention_mask": [1]}]}), 400),
    ("POST", "/v1/models/dclip_text:predict", as_json({"instances": [[1.5, "a"]]}), 400),
    ("GET", "/v1/models/no-such-model", NONE, 404),
    ("GET", "/v1/models/no-such-model/metadata", NONE, 404),
    ("POST", "/images/abc", img(name="file"), 400),
    ("POST", "/images/-1", img(name="file"), 400),
    ("PUT", "/images/99999999999999999999999", img(name="file"), 400),
    ("DELETE", "/v1/items/12345", NONE, 404),
    ("POST", "/images/similarImages", img(name="file", k="0"), 400),
    ("POST", "/images/similarImages", img(name="file", k="abc"), 400),
    ("POST", "/images/similarImages", img(name="file", k="100000"), 400),
    ("POST", "/similarityImages", form(k="3"), 400),
    ("GET", "/searchIllustByDCLIP", NONE, 400),
    ("POST", "/v1/items", img(name="file", metadata="{not json"), 400),
    ("POST", "/v1/items", img(name="file", id=b"\xff\xfe"), 400),
    ("POST", "/v1/items", img(name="file", id="x" * 300), 400),
    ("GET", "/v1/items?limit=0", NONE, 400),
    ("GET", "/v1/items?offset=-1", NONE, 400),
    ("GET", "/v1/items/unknown-item", NONE, 404),
    ("PUT", "/v1/items/unknown-item", as_json({"metadata": 5}), 400),
    ("DELETE", "/v1/items/unknown-item", NONE, 404),
    ("POST", "/v1/items/batch", as_json({"files": []}), 400),
    ("POST", "/v1/search", as_json({"k": -1, "id": "x"}), 400),
    ("POST", "/v1/search", as_json({"cutoff": "x", "id": "a"}), 400),
    ("POST", "/v1/search", as_json({"tags": 5}), 400),
    ("POST", "/v1/search", as_json({"id": "unknown-item"}), 404),
    ("GET", "/v1/search?k=abc&tags=solo", NONE, 400),
    ("GET", "/acgvoc2vec", NONE, 400),
    ("GET", "/no/such/route", NONE, 404),
    ("POST", "/metrics", as_json({}), 405),
]


class MalformedRequestsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server("--read-timeout", "2", "--request-timeout", "4", models_dir=test_packs())
        cls.srv.start()
        cls.srv.wait_ready()
        status, _ = cls.srv.multipart("/v1/items", files={"file": ("a.png", PNG, "image/png")}, fields={"id": "kept"})
        assert status == 201

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.srv.tmp.cleanup()

    def test_table(self):
        self.assertGreaterEqual(len(CASES), 40)
        for method, path, (body, headers), want in CASES:
            with self.subTest(method=method, path=path, want=want):
                status, _, data = self.srv.request(method, path, body, headers)
                self.assertEqual(status, want, (method, path, data[:300]))
                answer = json.loads(data)
                self.assertTrue(answer.get("message") or answer.get("error"), answer)
        # Nothing stored was touched and the server still answers.
        status, body = self.srv.json("GET", "/v1/stats")
        self.assertEqual(body["data"]["items"], 1)
        status, body = self.srv.json("GET", "/v1/items/kept")
        self.assertEqual(status, 200)
        self.assertEqual(self.srv.request("GET", "/health")[0], 200)

    def test_stalled_body_gets_408_at_the_request_deadline(self):
        s = socket.create_connection(("127.0.0.1", self.srv.port), timeout=20)
        s.sendall(b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\npartial")
        start = time.time()
        # Other clients are served while the slow one stalls.
        self.assertEqual(self.srv.request("GET", "/health")[0], 200)
        data = b""
        try:
            while chunk := s.recv(4096):
                data += chunk
        except (ConnectionResetError, socket.timeout):
            pass
        s.close()
        elapsed = time.time() - start
        # --request-timeout 4, plus the 100 ms sweep and a busy machine's scheduling.
        self.assertLess(elapsed, 4 + 5, "the stalled connection was not closed at its deadline")
        self.assertGreater(elapsed, 3)
        self.assertEqual(data.split()[1], b"408", data[:200])


if __name__ == "__main__":
    unittest.main(verbosity=2)
