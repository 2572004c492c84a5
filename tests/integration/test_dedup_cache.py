"""GET /v1/duplicates answers from a cache while the collection is unchanged, and sees every change.

The grouping is cached per store generation and settings (src/server/routes_duplicates.cpp); the
answer's `cached` field says which path served it. Steps: two sprites and a JPEG copy of one are
ingested; the first GET computes (one group of two), the second is served from the cache with the same
groups; a new copy added over HTTP (POST /v1/items) joins the group at once; a GET with other settings
computes again; deleting the original (DELETE /v1/items/{id}) splits the group at once.
"""
import io
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from acg2vec_harness import BIN, Server  # noqa: E402
import subprocess  # noqa: E402

try:
    from PIL import Image
except ImportError:
    Image = None

SOURCE = os.environ.get("ACG2VEC_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = os.path.join(SOURCE, "tests", "data", "renpy")


def jpeg_of(name, quality=70, half=False):
    rgb = Image.open(os.path.join(DATA, name)).convert("RGB")
    if half:
        rgb = rgb.resize((rgb.width // 2, rgb.height // 2), Image.BICUBIC)
    b = io.BytesIO()
    rgb.save(b, "JPEG", quality=quality)
    return b.getvalue()


def groups_of(body):
    return sorted(sorted(m["id"] for m in g["members"]) for g in body["data"]["groups"])


@unittest.skipIf(Image is None, "python3-pil is not installed")
class DuplicatesCacheTest(unittest.TestCase):
    def test_cache_follows_changes(self):
        with tempfile.TemporaryDirectory(prefix="acg2vec-dupcache-") as root:
            src = os.path.join(root, "in")
            os.makedirs(src)
            for name in ("demo_bg_cave.jpg", "demo_bg_washington.jpg"):
                with open(os.path.join(DATA, name), "rb") as f, open(os.path.join(src, name), "wb") as out:
                    out.write(f.read())
            with open(os.path.join(src, "cave.q70.jpg"), "wb") as out:
                out.write(jpeg_of("demo_bg_cave.jpg"))
            data_dir = os.path.join(root, "data")
            models = os.path.join(root, "models")
            os.makedirs(models)
            r = subprocess.run([BIN, "--data-dir", data_dir, "--models-dir", models, "ingest", src],
                               capture_output=True, text=True, timeout=300)
            self.assertEqual(r.returncode, 0, r.stderr)
            with Server(data_dir=data_dir, models_dir=models) as srv:
                srv.wait_ready()
                status, first = srv.json("GET", "/v1/duplicates")
                self.assertEqual(status, 200, first)
                self.assertFalse(first["data"]["cached"])
                self.assertEqual(groups_of(first), [["cave.q70.jpg", "demo_bg_cave.jpg"]])
                status, again = srv.json("GET", "/v1/duplicates")
                self.assertEqual(status, 200, again)
                self.assertTrue(again["data"]["cached"])
                self.assertEqual(groups_of(again), groups_of(first))

                # An item added over HTTP invalidates the cached answer.
                status, body = srv.multipart("/v1/items", files={"file": ("c.jpg", jpeg_of("demo_bg_cave.jpg", 85, True),
                                                                          "image/jpeg")}, fields={"id": "cave.half"})
                self.assertIn(status, (200, 201), body)
                status, after_add = srv.json("GET", "/v1/duplicates")
                self.assertEqual(status, 200, after_add)
                self.assertFalse(after_add["data"]["cached"])
                self.assertEqual(groups_of(after_add), [["cave.half", "cave.q70.jpg", "demo_bg_cave.jpg"]])

                # Other settings are another entry: computed, not served from the cache.
                status, other = srv.json("GET", "/v1/duplicates?keep_rule=oldest")
                self.assertEqual(status, 200, other)
                self.assertFalse(other["data"]["cached"])

                # A deletion is seen at once too.
                status, body = srv.json("DELETE", "/v1/items/demo_bg_cave.jpg")
                self.assertEqual(status, 200, body)
                status, after_delete = srv.json("GET", "/v1/duplicates?keep_rule=oldest")
                self.assertEqual(status, 200, after_delete)
                self.assertFalse(after_delete["data"]["cached"])
                self.assertEqual(groups_of(after_delete), [["cave.half", "cave.q70.jpg"]])
                status, cached = srv.json("GET", "/v1/duplicates?keep_rule=oldest")
                self.assertTrue(cached["data"]["cached"])


if __name__ == "__main__":
    unittest.main()
