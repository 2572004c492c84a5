"""Model folders exactly as publishers ship them, without a manifest.json, load and serve: a WD
tagger folder, a DeepDanbooru project folder, an immich CLIP visual/ + textual/ folder, a Hugging
Face CLIPModel folder and a sentence-transformers folder. `models check` prints the manifest it
inferred. Also: the global options work after the subcommand as well as before it."""
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from acg2vec_harness import BIN, Server  # noqa: E402
from packs import TAGS, keras_packs, layout_packs, test_packs  # noqa: E402


def png():
    from PIL import Image
    img = Image.new("RGB", (120, 80))
    img.putdata([((x * 5) % 256, (y * 3) % 256, (x ^ y) % 256) for y in range(80) for x in range(120)])
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def copy_without_manifest(src, dst):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("manifest.json"), symlinks=False)


class DropInLayoutsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="acg2vec-dropin-")
        cls.models = os.path.join(cls.tmp.name, "models")
        os.makedirs(cls.models)
        layouts = layout_packs(wd_size=448)
        shutil.copytree(os.path.join(layouts, "wd-tagger"), os.path.join(cls.models, "my-wd"))
        shutil.copytree(os.path.join(layouts, "immich-clip"), os.path.join(cls.models, "my-clip"))
        ddb = os.path.join(cls.models, "my-ddb")
        os.makedirs(ddb)
        shutil.copy(os.path.join(keras_packs(), "deepdanbooru-v3.h5"), os.path.join(ddb, "model-resnet_custom_v3.h5"))
        shutil.copy(TAGS, os.path.join(ddb, "tags.txt"))
        with open(TAGS) as f:
            names = [line.strip() for line in f if line.strip()]
        with open(os.path.join(ddb, "tags-character.txt"), "w") as f:
            f.write("\n".join(names[6891:9173]) + "\n")
        with open(os.path.join(ddb, "project.json"), "w") as f:
            json.dump({"image_width": 512, "image_height": 512, "database_path": None, "minimum_tag_count": 20,
                       "model": "resnet_custom_v3", "minibatch_size": 32, "epoch_count": 30}, f)
        seed = test_packs()
        copy_without_manifest(os.path.join(seed, "dclip-test"), os.path.join(cls.models, "my-hfclip"))
        copy_without_manifest(os.path.join(seed, "acgvoc2vec-test"), os.path.join(cls.models, "my-st"))
        # Global options after the subcommand.
        cls.srv = Server()
        cls.srv.args = [BIN, "serve", "--data-dir", cls.srv.data_dir, "--models-dir", cls.models,
                        *[a for a in cls.srv.args[6:]]]
        cls.srv.start()
        cls.srv.wait_ready(timeout=600)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.srv.tmp.cleanup()
        cls.tmp.cleanup()

    def test_all_layouts_ready(self):
        status, body = self.srv.json("GET", "/health")
        self.assertEqual(status, 200, body)
        models = body["data"]["models"] if "data" in body else body["models"]
        for name in ("my-wd", "my-ddb", "my-ddb-embedding", "my-clip-visual", "my-clip-textual", "my-hfclip",
                     "my-hfclip-image", "my-st"):
            self.assertIn(name, models)
            self.assertEqual(models[name]["state"], "ready", f"{name}: {models[name]}")

    def test_taggers_answer(self):
        for model in ("my-wd", "my-ddb"):
            status, body = self.srv.multipart("/v1/tag", files={"file": ("a.png", png(), "image/png")},
                                              fields={"model": model})
            self.assertEqual(status, 200, f"{model}: {body}")
        status, body = self.srv.multipart("/v1/embed/image", files={"file": ("a.png", png(), "image/png")},
                                          fields={"model": "my-ddb-embedding"})
        self.assertEqual(status, 200, body)

    def test_text_packs_answer(self):
        for model in ("my-clip-textual", "my-hfclip", "my-st"):
            status, body = self.srv.json("POST", "/v1/embed/text", {"texts": ["blue hair"], "model": model})
            self.assertEqual(status, 200, f"{model}: {body}")

    def test_models_check_prints_the_inferred_manifest(self):
        r = subprocess.run([BIN, "models", "check", os.path.join(self.models, "my-wd")], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("wd_tagger layout", r.stdout)
        start = r.stdout.index("{")
        manifest, _ = json.JSONDecoder().raw_decode(r.stdout[start:])
        self.assertEqual(manifest["labels"]["file"], "selected_tags.csv")
        self.assertEqual(manifest["input"]["resize"], "pad_square_bicubic")
        self.assertIn("is valid", r.stdout)
        r = subprocess.run([BIN, "models", "check", os.path.join(self.models, "my-clip")], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("my-clip-textual", r.stdout)
        empty = os.path.join(self.tmp.name, "empty")
        os.makedirs(empty, exist_ok=True)
        r = subprocess.run([BIN, "models", "check", empty], capture_output=True, text=True)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("selected_tags.csv", r.stderr)

    def test_global_options_before_or_after_the_subcommand(self):
        before = subprocess.run([BIN, "--models-dir", self.models, "--log-level", "error", "models", "list", "--json"],
                                capture_output=True, text=True)
        after = subprocess.run([BIN, "models", "list", "--json", "--models-dir", self.models, "--log-level", "error"],
                               capture_output=True, text=True)
        self.assertEqual(before.returncode, 0, before.stderr)
        self.assertEqual(after.returncode, 0, after.stderr)
        a, b = json.loads(before.stdout), json.loads(after.stdout)
        self.assertIn("my-wd", a["models"])
        self.assertEqual(sorted(a["models"]), sorted(b["models"]))


if __name__ == "__main__":
    unittest.main()
