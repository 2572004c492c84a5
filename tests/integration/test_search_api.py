"""The collection over loopback: ingest a real image folder, search with altered copies, item CRUD,
bad input, and searches concurrent with writes."""
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from acg2vec_harness import BIN, Server  # noqa: E402
from packs import installed_packs, real_images  # noqa: E402

from PIL import Image, ImageOps  # noqa: E402


def read(path):
    with open(path, "rb") as f:
        return f.read()


def altered(path, scale=0.6, quality=70, flip=True, fmt="JPEG"):
    """A resized, re-encoded and optionally mirrored copy of an image."""
    img = Image.open(path).convert("RGBA")
    bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
    img = Image.alpha_composite(bg, img).convert("RGB")
    img = img.resize((max(8, int(img.width * scale)), max(8, int(img.height * scale))), Image.BICUBIC)
    if flip:
        img = ImageOps.mirror(img)
    out = io.BytesIO()
    if fmt == "JPEG":
        img.save(out, "JPEG", quality=quality)
    else:
        img.save(out, fmt)
    return out.getvalue()


class SearchApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.models = installed_packs(["nsfw-mobilenet-v2"])
        cls.tmp = tempfile.mkdtemp(prefix="acg2vec-search-")
        cls.data = os.path.join(cls.tmp, "data")
        cls.folder = os.path.join(cls.tmp, "images")
        os.makedirs(os.path.join(cls.folder, "sub"))
        cls.images = real_images()
        for i, p in enumerate(cls.images):
            dest = os.path.join(cls.folder, "sub" if i % 2 else "", os.path.basename(p))
            shutil.copy(p, dest)
        with open(os.path.join(cls.folder, "notes.txt"), "w") as f:
            f.write("not an image")
        r = subprocess.run([BIN, "--data-dir", cls.data, "--models-dir", cls.models, "ingest", cls.folder],
                           capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stderr
        cls.ingest_summary = r.stdout
        cls.srv = Server(data_dir=cls.data, models_dir=cls.models)
        cls.srv.start()
        cls.srv.wait_ready()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.srv.tmp.cleanup()
        shutil.rmtree(cls.tmp)

    def search_upload(self, data, **fields):
        return self.srv.multipart("/v1/search", files={"image": ("q.jpg", data, "image/jpeg")},
                                  fields={k: str(v) for k, v in fields.items()})

    def test_ingest_summary_counts(self):
        self.assertIn(f"ingested {len(self.images)} new", self.ingest_summary)
        self.assertIn("1 not images", self.ingest_summary)
        # A second run is resumable: everything is already stored.
        r = subprocess.run([BIN, "--data-dir", self.data + "-copy", "--models-dir", self.models, "ingest",
                            self.folder], capture_output=True, text=True, timeout=900)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_altered_copy_finds_original_first(self):
        for path in self.images[:6]:
            status, body = self.search_upload(altered(path), k=3)
            self.assertEqual(status, 200, body)
            top = body["data"]["hits"][0]
            self.assertTrue(top["id"].endswith(os.path.basename(path)), (path, body["data"]["hits"]))
            self.assertGreater(top["score"], 0.8)

    def test_semantic_space_and_more_like_this(self):
        # A picture without near-identical siblings (the sprites come in almost equal variants).
        path = next(p for p in self.images if "concert" in p)
        # The nsfwjs embedding moves a lot with JPEG artefacts on these small images (measured: a
        # q95 re-encode flips its classification), so the semantic query is a lossless resize.
        status, body = self.search_upload(altered(path, scale=0.8, flip=False, fmt="PNG"), k=5,
                                          space="nsfw-mobilenet-v2-embedding")
        self.assertEqual(status, 200, body)
        self.assertEqual(body["data"]["space"], "nsfw-mobilenet-v2-embedding")
        self.assertTrue(body["data"]["hits"][0]["id"].endswith(os.path.basename(path)))
        first = body["data"]["hits"][0]["id"]
        status, body = self.srv.json("POST", "/v1/search", {"id": first, "k": 4})
        self.assertEqual(status, 200, body)
        self.assertNotIn(first, [h["id"] for h in body["data"]["hits"]])
        self.assertEqual(len(body["data"]["hits"]), 4)

    def test_seed_routes_crud(self):
        img = read(self.images[0])
        ext = json.dumps({"title": "t", "artistId": 7})
        status, body = self.srv.multipart("/images/9001", files={"file": ("a.png", img, "image/png")},
                                          fields={"extend": ext})
        self.assertEqual(status, 200, body)
        self.assertIs(body["data"], True)
        # As the seed: an existing id is kept (200, data true) and nothing is replaced.
        status, body = self.srv.multipart("/images/9001", files={"file": ("b.png", read(self.images[1]), "image/png")})
        self.assertEqual(status, 200, body)
        self.assertIn("kept", body["message"])
        status, body = self.srv.multipart("/images/similarImages", files={"file": ("q.jpg", altered(self.images[0]), "image/jpeg")},
                                          fields={"k": "3", "space": "signature"})
        self.assertEqual(status, 200, body)
        ids = [h["itemId"] for h in body["data"]]
        self.assertIn(9001, ids)
        hit = body["data"][ids.index(9001)]
        self.assertIsNone(hit["feature"])
        self.assertEqual(hit["extendInfo"]["artistId"], 7)
        status, body = self.srv.multipart("/images/9001", files={"file": ("b.png", read(self.images[1]), "image/png")},
                                          method="PUT")
        self.assertEqual(status, 200, body)
        status, body = self.srv.json("DELETE", "/images/9001")
        self.assertEqual(status, 200, body)
        status, body = self.srv.json("DELETE", "/images/9001")
        self.assertEqual(status, 200, body)  # the seed deleted without looking
        status, body = self.srv.json("GET", "/v1/items/9001")
        self.assertEqual(status, 404)

    def test_v1_items(self):
        img = read(self.images[2])
        status, body = self.srv.multipart("/v1/items", files={"file": ("c.png", img, "image/png")},
                                          fields={"id": "item-a", "metadata": json.dumps({"k": "v"})})
        self.assertEqual(status, 201, body)
        self.assertEqual(body["data"]["metadata"], {"k": "v"})
        self.assertIn("signature", body["data"]["vectors"])
        status, body = self.srv.json("PUT", "/v1/items/item-a", {"metadata": {"k": "w"}})
        self.assertEqual(status, 200, body)
        status, body = self.srv.json("GET", "/v1/items/item-a")
        self.assertEqual(body["data"]["metadata"], {"k": "w"})
        status, headers, data = self.srv.request("GET", "/v1/items/item-a/thumbnail")
        self.assertEqual(status, 200)
        self.assertEqual(data[:2], b"\xff\xd8")
        status, body = self.srv.json("GET", "/v1/items?limit=5")
        self.assertEqual(status, 200)
        self.assertGreaterEqual(body["total"], len(self.images))
        status, body = self.srv.json("DELETE", "/v1/items/item-a")
        self.assertEqual(status, 200)
        status, body = self.srv.json("GET", "/v1/stats")
        self.assertEqual(status, 200)
        self.assertEqual(body["data"]["items"], len(self.images))

    def test_bad_input(self):
        cases = [
            ("POST", "/v1/search", {"k": 0, "id": "x"}, 400),
            ("POST", "/v1/search", {"k": 100000, "id": "x"}, 400),
            ("POST", "/v1/search", {"id": "no-such-item"}, 404),
            ("POST", "/v1/search", {}, 400),
            ("POST", "/v1/search", {"text": "1girl"}, 503),
            ("POST", "/v1/search", {"id": "a", "text": "b"}, 400),
            ("GET", "/v1/items/no-such-item", None, 404),
            ("DELETE", "/v1/items/no-such-item", None, 404),
            ("PUT", "/v1/items/no-such-item", {"metadata": {}}, 404),
            ("DELETE", "/images/-5", None, 400),
            ("DELETE", "/images/abc", None, 400),
        ]
        for method, path, body, want in cases:
            status, answer = self.srv.json(method, path, body)
            self.assertEqual(status, want, (method, path, body, answer))
            self.assertTrue(answer.get("message"), answer)
        status, body = self.srv.json("POST", "/v1/search", b"{not json", {"Content-Type": "application/json"})
        self.assertEqual(status, 400)
        status, body = self.srv.json("POST", "/v1/search", "[" * 5000, {"Content-Type": "application/json"})
        self.assertEqual(status, 400)
        status, body = self.srv.multipart("/v1/items", fields={"id": "x"})
        self.assertEqual(status, 400)
        status, body = self.srv.multipart("/v1/items", files={"file": ("x.txt", b"hello", "text/plain")})
        self.assertEqual(status, 415)
        status, body = self.srv.multipart("/images/similarImages", files={"file": ("q.jpg", b"", "image/jpeg")})
        self.assertEqual(status, 400)
        status, body = self.srv.multipart("/images/similarImages", files={"file": ("q.jpg", altered(self.images[0]), "image/jpeg")},
                                          fields={"k": "-1"})
        self.assertEqual(status, 400)
        status, body = self.srv.json("GET", "/v1/stats")
        self.assertEqual(body["data"]["items"], len(self.images), "bad requests must not change the store")

    def test_concurrent_search_during_writes(self):
        img = read(self.images[4])
        errors = []
        stop = threading.Event()

        def searcher():
            while not stop.is_set():
                status, body = self.srv.json("POST", "/v1/search", {"id": body_id, "k": 10})
                if status != 200:
                    errors.append((status, body))

        body_id = self.srv.json("GET", "/v1/items?limit=1")[1]["data"][0]["id"]
        threads = [threading.Thread(target=searcher) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            for i in range(8):
                item = f"conc-{i}"
                status, body = self.srv.multipart("/v1/items", files={"file": ("c.png", img, "image/png")},
                                                  fields={"id": item})
                self.assertEqual(status, 201, body)
                status, body = self.srv.json("DELETE", f"/v1/items/{item}")
                self.assertEqual(status, 200, body)
                # Once the delete is acknowledged, no search may return the id.
                status, body = self.search_upload(img, k=20)
                self.assertNotIn(item, [h["id"] for h in body["data"]["hits"]])
        finally:
            stop.set()
            for t in threads:
                t.join()
        self.assertEqual(errors, [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
