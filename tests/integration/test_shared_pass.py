"""One forward pass per network during ingest: a pack cut from another pack's network (the nsfw
classifier's "-embedding" pack, illust2vec cut from DeepDanbooru) gets its stored vector from the
base pack's pass. That vector must equal what the cut pack computes in a pass of its own
(`POST /v1/embed/image`), to float rounding (relative 1e-5: the same ops on the same input, only
the set of requested outputs differs)."""
import os
import re
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from acg2vec_harness import Server  # noqa: E402
from packs import installed_packs, real_images, test_packs  # noqa: E402


def rel_diff(a, b):
    scale = max(max(abs(x) for x in b), 1e-12)
    return max(abs(x - y) for x, y in zip(a, b)) / scale


class SharedPassTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.models = tempfile.mkdtemp(prefix="acg2vec-shared-")
        nsfw = installed_packs(["nsfw-mobilenet-v2"])
        os.symlink(os.path.join(nsfw, "nsfw-mobilenet-v2"), os.path.join(cls.models, "nsfw-mobilenet-v2"))
        seed = test_packs()
        for name in ("deepdanbooru-test", "illust2vec-test"):
            os.symlink(os.path.join(seed, name), os.path.join(cls.models, name))
        cls.srv = Server(models_dir=cls.models)
        cls.srv.start()
        cls.srv.wait_ready()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.srv.tmp.cleanup()
        shutil.rmtree(cls.models)

    def test_health_names_the_shared_packs_ready(self):
        status, body = self.srv.json("GET", "/health")
        self.assertEqual(status, 200, body)
        for name in ("nsfw-mobilenet-v2", "nsfw-mobilenet-v2-embedding", "deepdanbooru-test", "illust2vec-test"):
            self.assertEqual(body["models"][name]["state"], "ready", (name, body))

    def inputs_total(self):
        status, _, body = self.srv.request("GET", "/metrics")
        self.assertEqual(status, 200)
        return {m.group(1): int(m.group(2))
                for m in re.finditer(r'^acg2vec_model_inputs_total\{model="([^"]+)"\} (\d+)$', body.decode(), re.M)}

    def test_stored_vectors_equal_a_separate_pass(self):
        for n, path in enumerate(real_images()[:3]):
            with open(path, "rb") as f:
                image = f.read()
            before = self.inputs_total()
            status, body = self.srv.multipart("/v1/items", files={"file": ("x.png", image, "image/png")},
                                              fields={"id": f"shared-{n}"})
            self.assertEqual(status, 201, body)
            # One pass per network: the base packs ran once, the packs cut from them not at all.
            after = self.inputs_total()
            for base in ("nsfw-mobilenet-v2", "deepdanbooru-test"):
                self.assertEqual(after.get(base, 0) - before.get(base, 0), 1, (base, before, after))
            for cut in ("nsfw-mobilenet-v2-embedding", "illust2vec-test"):
                self.assertEqual(after.get(cut, 0), before.get(cut, 0), (cut, before, after))
            status, item = self.srv.json("GET", f"/v1/items/shared-{n}?vectors=1")
            self.assertEqual(status, 200, item)
            stored = item["data"]["vectorValues"]
            for space in ("nsfw-mobilenet-v2-embedding", "illust2vec-test"):
                status, own = self.srv.multipart("/v1/embed/image", files={"image": ("x.png", image, "image/png")},
                                                 fields={"model": space})
                self.assertEqual(status, 200, own)
                separate = own["data"]["vector"]
                self.assertEqual(len(stored[space]), len(separate), space)
                self.assertLess(rel_diff(stored[space], separate), 1e-5, (space, path))
            # The base packs' own results are still whole (scores, tags) next to the shared values.
            self.assertEqual(len(item["data"]["scores"]["nsfw-mobilenet-v2"]), 5, item)
            self.assertIn("deepdanbooru-test", item["data"]["tags"], item)

    def test_vectors_are_not_sent_unless_asked(self):
        with open(real_images()[0], "rb") as f:
            image = f.read()
        status, body = self.srv.multipart("/v1/items", files={"file": ("x.png", image, "image/png")},
                                          fields={"id": "plain"})
        self.assertIn(status, (201, 409), body)
        status, item = self.srv.json("GET", "/v1/items/plain")
        self.assertEqual(status, 200, item)
        self.assertNotIn("vectorValues", item["data"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
