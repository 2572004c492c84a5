"""Every manifest shipped under models/ loads and serves: each is installed beside a random-weight
model of the real architecture family and file format at the real input size and label count, and
one image (or text) goes end to end through the route that serves it.

  models/wd-v3-tagger      ONNX ViT (patch 16) at 448 x 448 NHWC BGR, WD-format selected_tags.csv
                           of 9,177 rows (tools/make_layout_packs.py)           → POST /v1/tag
  models/deepdanbooru-v3   Keras .h5 resnet_custom_v3, full depth, 512 x 512, the real 9,176-line
                           tags.txt (tools/keras_reference.js packs + tfjs_to_keras_h5.py) → /v1/tag
  models/illust2vec        the DeepDanbooru pack cut at add_43 + GAP          → POST /v1/embed/image
  models/pix2score         Keras .h5 ResNet101V2 + 3 heads, full depth, 224   → POST /pix2score
  models/clip-onnx-visual  ONNX CLIP ViT-B/32-shaped image tower at 224       → POST /v1/embed/image
  models/clip-onnx-textual ONNX CLIP text tower + the real CLIP tokenizer.json → /v1/embed/text, text search

A manifest added under models/ without a recipe here fails the test. A copy of a manifest with a
misspelt key must fail to load, naming the key and the pack (in /health and in `models check`)."""
import glob
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
from packs import SOURCE, TAGS, keras_packs, layout_packs  # noqa: E402


def png(size=(300, 200)):
    from PIL import Image
    img = Image.new("RGBA", size)
    img.putdata([((x * 3) % 256, (y * 7) % 256, (x + y) % 256, 255 if x > 20 else 80)
                 for y in range(size[1]) for x in range(size[0])])
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


class ShippedManifestsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="acg2vec-shipped-")
        cls.models = os.path.join(cls.tmp.name, "models")
        layouts = layout_packs(wd_size=448)
        keras = keras_packs()
        wd = os.path.join(layouts, "wd-tagger")
        clip = os.path.join(layouts, "immich-clip")
        recipes = {
            "wd-v3-tagger": {"model.onnx": os.path.join(wd, "model.onnx"),
                             "selected_tags.csv": os.path.join(wd, "selected_tags.csv")},
            "deepdanbooru-v3": {"model-resnet_custom_v3.h5": os.path.join(keras, "deepdanbooru-v3.h5"), "tags.txt": TAGS},
            "illust2vec": {},
            "pix2score": {"pix2score.h5": os.path.join(keras, "pix2score.h5")},
            "clip-onnx-visual": {"model.onnx": os.path.join(clip, "visual", "model.onnx")},
            "clip-onnx-textual": {"model.onnx": os.path.join(clip, "textual", "model.onnx"),
                                  "tokenizer.json": os.path.join(clip, "textual", "tokenizer.json")},
        }
        # The Real-CUGAN packs ship their real weights beside the manifest.
        for d in ("realcugan-pro-conservative", "realcugan-pro-no-denoise", "realcugan-pro-denoise3x"):
            recipes[d] = {f: os.path.join(SOURCE, "models", d, f) for f in ("model.param", "model.bin")}
        shipped = sorted(os.path.basename(os.path.dirname(p))
                         for p in glob.glob(os.path.join(SOURCE, "models", "*", "manifest.json")))
        cls.missing = sorted(set(shipped) - set(recipes))
        cls.names = {}
        for d in shipped:
            if d not in recipes:
                continue
            dst = os.path.join(cls.models, d)
            os.makedirs(dst)
            shutil.copy(os.path.join(SOURCE, "models", d, "manifest.json"), dst)
            for name, src in recipes[d].items():
                os.symlink(src, os.path.join(dst, name))
            with open(os.path.join(dst, "manifest.json")) as f:
                cls.names[d] = json.load(f)["name"]
        cls.srv = Server(models_dir=cls.models).start()
        cls.srv.wait_ready(timeout=600)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.tmp.cleanup()

    def test_every_shipped_manifest_has_a_recipe(self):
        self.assertEqual(self.missing, [], "add these manifests to test_shipped_manifests.py")

    def test_every_pack_is_ready(self):
        status, body = self.srv.json("GET", "/health")
        self.assertEqual(status, 200, body)
        models = body["data"]["models"] if "data" in body else body["models"]
        for d, name in self.names.items():
            self.assertIn(name, models, f"{d}: pack {name} not loaded")
            self.assertEqual(models[name]["state"], "ready", f"{d}: {models[name]}")

    def tag(self, model, expect):
        status, body = self.srv.multipart("/v1/tag", files={"file": ("a.png", png(), "image/png")},
                                          fields={"model": model, "all": "true"})
        self.assertEqual(status, 200, body)
        tags = body["data"]["tags"]
        count = sum(len(v) for v in tags.values())
        self.assertEqual(count, expect, f"{model}: every label is reported with all=true")
        self.assertIn("rating", body["data"])
        return body["data"]

    def test_wd_v3_tagger(self):
        data = self.tag(self.names["wd-v3-tagger"], 9177)
        self.assertIn("character", data["tags"])

    def test_deepdanbooru_and_illust2vec(self):
        self.tag(self.names["deepdanbooru-v3"], 9176)
        status, body = self.srv.multipart("/v1/embed/image", files={"file": ("a.png", png(), "image/png")},
                                          fields={"model": self.names["illust2vec"]})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["data"]["dim"], 16)  # the narrow stand-in's add_43 width

    def test_pix2score(self):
        status, body = self.srv.multipart("/pix2score", files={"file": ("a.png", png(), "image/png")},
                                          fields={"model": self.names["pix2score"]})
        self.assertEqual(status, 200, body)
        text = json.dumps(body)
        for head in ("bookmarkPredict", "viewPredict", "sanityPredict"):
            self.assertIn(head, text)

    def test_clip_pair(self):
        status, body = self.srv.multipart("/v1/embed/image", files={"file": ("a.png", png(), "image/png")},
                                          fields={"model": self.names["clip-onnx-visual"]})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["data"]["dim"], 64)
        status, body = self.srv.json("POST", "/v1/embed/text", {"texts": ["1girl, blue hair"],
                                                                "model": self.names["clip-onnx-textual"]})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["data"]["dim"], 64)
        status, body = self.srv.multipart("/v1/items", files={"file": ("a.png", png(), "image/png")}, fields={"id": "s1"})
        self.assertEqual(status, 201, body)
        status, body = self.srv.json("POST", "/v1/search", {"text": "1girl", "k": 3})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["data"]["space"], self.names["clip-onnx-visual"])
        self.assertIn("s1", [h["id"] for h in body["data"]["hits"]])

    def test_realcugan_packs_upscale(self):
        for d in ("realcugan-pro-conservative", "realcugan-pro-no-denoise", "realcugan-pro-denoise3x"):
            body = b""
            boundary = "shippedboundary"
            for name, value in (("model", self.names[d].encode()), ("format", b"png")):
                body += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n').encode() + value + b"\r\n"
            body += (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
                     f'Content-Type: image/png\r\n\r\n').encode() + png((40, 32)) + b"\r\n"
            body += f"--{boundary}--\r\n".encode()
            status, headers, data = self.srv.request("POST", "/v1/upscale", body,
                                                     {"Content-Type": f"multipart/form-data; boundary={boundary}"})
            self.assertEqual(status, 200, (d, data[:200]))
            self.assertEqual(data[:8], b"\x89PNG\r\n\x1a\n", d)
            width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
            self.assertEqual((width, height), (80, 64), d)

    def test_misspelt_key_fails_naming_key_and_pack(self):
        with tempfile.TemporaryDirectory() as d:
            pack = os.path.join(d, "wd-typo")
            os.makedirs(pack)
            with open(os.path.join(SOURCE, "models", "wd-v3-tagger", "manifest.json")) as f:
                m = json.load(f)
            m["name"] = "wd-typo"
            m["input"]["pad_colour"] = m["input"].pop("pad")
            with open(os.path.join(pack, "manifest.json"), "w") as f:
                json.dump(m, f)
            for name in ("model.onnx", "selected_tags.csv"):
                os.symlink(os.path.join(self.models, "wd-v3-tagger", name), os.path.join(pack, name))
            r = subprocess.run([BIN, "models", "check", pack], capture_output=True, text=True)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("wd-typo", r.stderr)
            self.assertIn("pad_colour", r.stderr)
            r = subprocess.run([BIN, "models", "list", "--models-dir", d], capture_output=True, text=True)
            self.assertIn("failed", r.stdout)
            self.assertIn("pad_colour", r.stdout)


if __name__ == "__main__":
    unittest.main()
