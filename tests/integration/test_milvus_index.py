"""acg2vec serve with --index milvus://... against tests/milvus_double (a local DOUBLE of Milvus's
REST v2 protocol, not Milvus): items added through the API land in a Milvus collection, searches
go through it, and they return the same neighbours as the embedded FAISS index on the same data."""
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

from PIL import Image  # noqa: E402

DOUBLE = os.path.join(os.path.dirname(__file__), "..", "milvus_double", "milvus_double.py")


def noise_png(seed, size=(64, 48)):
    rng = random.Random(seed)
    img = Image.new("RGB", size)
    img.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(size[0] * size[1])])
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


class MilvusIndexTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="acg2vec-milvus-")
        port_file = os.path.join(self.tmp, "double.port")
        self.double = subprocess.Popen(["/usr/bin/python3", DOUBLE, "--port-file", port_file])
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

    def milvus(self, path, body):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/v2/vectordb/{path}", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            reply = json.loads(r.read())
        self.assertEqual(reply["code"], 0, reply)
        return reply["data"]

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


if __name__ == "__main__":
    unittest.main()
