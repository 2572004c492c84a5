"""acg2vec serve with --index milvus://... against tests/milvus_double (a local DOUBLE of Milvus's
REST v2 protocol built from Milvus's server code, not Milvus): items added through the API land in
a Milvus collection, searches go through it and return the same neighbours as the embedded FAISS
index on the same data; the default packs' spaces get valid collection names; a Milvus restart
(every collection released) is survived; a bad token is reported in /health."""
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from acg2vec_harness import Server  # noqa: E402
from packs import installed_packs, real_images  # noqa: E402

from PIL import Image  # noqa: E402

DOUBLE = os.path.join(os.path.dirname(__file__), "..", "milvus_double", "milvus_double.py")


def noise_png(seed, size=(64, 48)):
    rng = random.Random(seed)
    img = Image.new("RGB", size)
    img.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(size[0] * size[1])])
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


class DoubleFixture:
    """Starts the Milvus double (with TOKEN when set) for each test."""
    TOKEN = None

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="acg2vec-milvus-")
        port_file = os.path.join(self.tmp, "double.port")
        extra = ["--token", self.TOKEN] if self.TOKEN else []
        self.double = subprocess.Popen(["/usr/bin/python3", DOUBLE, "--port-file", port_file, *extra])
        deadline = time.time() + 10
        while not os.path.exists(port_file):
            if time.time() > deadline:
                raise RuntimeError("the milvus double did not start")
            time.sleep(0.05)
        with open(port_file) as f:
            self.port = int(f.read())

    def tearDown(self):
        self.double.kill()
        self.double.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def milvus(self, path, body, expect=0):
        # Strong reads: the double, like Milvus, hides recent writes from Bounded ones.
        if path in ("entities/query", "entities/search"):
            body = dict(body, consistencyLevel="Strong")
        headers = {"Content-Type": "application/json", "Accept-Type-Allow-Int64": "true"}
        if self.TOKEN:
            headers["Authorization"] = f"Bearer {self.TOKEN}"
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/v2/vectordb/{path}", json.dumps(body).encode(),
                                     headers)
        with urllib.request.urlopen(req, timeout=10) as r:
            reply = json.loads(r.read())
        self.assertEqual(reply["code"], expect, reply)
        return reply.get("data")

    def hook(self, name):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/double/{name}", b"{}",
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())



class MilvusIndexTest(DoubleFixture, unittest.TestCase):
    def search(self, srv, item_id):
        status, body = srv.json("POST", "/v1/search", {"id": item_id, "k": 4, "space": "signature"})
        self.assertEqual(status, 200, body)
        return [(h["id"], h["score"]) for h in body["data"]["hits"]]

    def test_items_and_searches_go_through_milvus(self):
        data = os.path.join(self.tmp, "data")
        ids = [f"n{i}" for i in range(8)]
        with Server(data_dir=data, env={"ACG2VEC_INDEX": f"milvus://127.0.0.1:{self.port}"}) as srv:
            srv.wait_ready()
            for i, item_id in enumerate(ids):
                status, body = srv.multipart("/v1/items", files={"file": (f"{item_id}.png", noise_png(i), "image/png")},
                                             fields={"id": item_id})
                self.assertEqual(status, 201, body)
            count = self.milvus("entities/query", {"collectionName": "acg2vec_signature", "filter": "",
                                                   "outputFields": ["count(*)"]})
            self.assertEqual(count, [{"count(*)": 8}])
            with_milvus = self.search(srv, "n0")
            self.assertEqual(len(with_milvus), 4)
            self.assertNotIn("n0", [h for h, _ in with_milvus])
            status, body = srv.json("DELETE", "/v1/items/n5")
            self.assertEqual(status, 200, body)
            rows = self.milvus("entities/query", {"collectionName": "acg2vec_signature", "filter": 'id in ["n5"]',
                                                  "outputFields": ["id"]})
            self.assertEqual(rows, [])
            with_milvus = self.search(srv, "n0")
        # The same data on the embedded FAISS index (rebuilt from the SQLite store) gives the same
        # neighbours: both searches are exact at this size.
        with Server(data_dir=data) as srv:
            srv.wait_ready()
            with_faiss = self.search(srv, "n0")
        self.assertEqual([h for h, _ in with_milvus], [h for h, _ in with_faiss])
        for (_, a), (_, b) in zip(with_milvus, with_faiss):
            self.assertAlmostEqual(a, b, delta=1e-4)


    def test_default_pack_spaces_and_a_milvus_restart(self):
        """The packs setup installs name spaces like nsfw-mobilenet-v2-embedding, which Milvus refuses
        as a collection name; they are stored under the escaped name, and a Milvus restart (every
        collection released) does not stop acg2vec from serving."""
        models = installed_packs(["nsfw-mobilenet-v2"])
        with open(real_images()[0], "rb") as f:
            image = f.read()
        env = {"ACG2VEC_INDEX": f"milvus://127.0.0.1:{self.port}?ef=16"}
        with Server(models_dir=models, env=env) as srv:
            srv.wait_ready()
            status, body = srv.multipart("/v1/items", files={"file": ("a.png", image, "image/png")}, fields={"id": "a"})
            self.assertEqual(status, 201, body)
            status, body = srv.multipart("/v1/items", files={"file": ("b.png", noise_png(7), "image/png")},
                                         fields={"id": "b"})
            self.assertEqual(status, 201, body)
            name = "acg2vec_nsfw_2dmobilenet_2dv2_2dembedding"
            described = self.milvus("collections/describe", {"collectionName": name})
            self.assertEqual(described["description"], "acg2vec vector space: nsfw-mobilenet-v2-embedding")
            self.assertEqual(described["load"], "LoadStateLoaded")
            count = self.milvus("entities/query", {"collectionName": name, "filter": "", "outputFields": ["count(*)"]})
            self.assertEqual(count, [{"count(*)": 2}])
            self.hook("restart")
            self.assertEqual(self.milvus("collections/get_load_state", {"collectionName": name})["loadState"],
                             "LoadStateNotLoad")
            for space in ("nsfw-mobilenet-v2-embedding", "signature"):
                status, body = srv.json("POST", "/v1/search", {"id": "a", "k": 2, "space": space})
                self.assertEqual(status, 200, (space, body))
                self.assertEqual([h["id"] for h in body["data"]["hits"]], ["b"], space)
            self.assertEqual(self.milvus("collections/get_load_state", {"collectionName": name})["loadState"],
                             "LoadStateLoaded")


class MilvusBadTokenTest(DoubleFixture, unittest.TestCase):
    """A Milvus with authentication and a wrong token: /health says so in words."""
    TOKEN = "root:Milvus"

    def test_bad_token_is_reported(self):
        env = {"ACG2VEC_INDEX": f"milvus://127.0.0.1:{self.port}?token=root:wrong&retries=5"}
        with Server(env=env) as srv:
            deadline = time.time() + 60
            body = {}
            while time.time() < deadline:
                status, _, raw = srv.request("GET", "/health")
                body = json.loads(raw)
                if "index_error" in body.get("data", body):
                    break
                time.sleep(0.2)
            health = body.get("data", body)
            self.assertIn("index_error", health, body)
            self.assertIn("rejected the credentials", health["index_error"])
            self.assertIn("HTTP 401", health["index_error"])
            self.assertNotIn("root:wrong", health["index_error"])
        # One attempt per start, not a retry storm: retries=5 is not spent on a 401.
        self.assertEqual(self.hook("stats")["data"]["requests"].get("collections/describe"), 1)


if __name__ == "__main__":
    unittest.main()
