"""Image model routes over loopback with the real nsfwjs MobileNetV2 pack (and a bad pack beside it)."""
import base64
import json
import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from acg2vec_harness import Server  # noqa: E402
from packs import installed_packs, real_images  # noqa: E402


class ModelsApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        src = installed_packs(["nsfw-mobilenet-v2"])
        cls.models = tempfile.mkdtemp(prefix="acg2vec-models-")
        os.symlink(os.path.join(src, "nsfw-mobilenet-v2"), os.path.join(cls.models, "nsfw-mobilenet-v2"))
        # A broken pack must fail alone, with a message naming the problem.
        broken = os.path.join(cls.models, "broken")
        os.makedirs(broken)
        with open(os.path.join(broken, "manifest.json"), "w") as f:
            json.dump({"name": "broken", "task": "tagger", "format": "onnx", "file": "missing.onnx"}, f)
        # A label list whose length differs from the model's outputs must fail at load, naming both.
        src_pack = os.path.join(src, "nsfw-mobilenet-v2")
        mismatch = os.path.join(cls.models, "mismatch")
        os.makedirs(mismatch)
        for name in os.listdir(src_pack):
            if name != "manifest.json":
                os.symlink(os.path.join(src_pack, name), os.path.join(mismatch, name))
        with open(os.path.join(src_pack, "manifest.json")) as f:
            manifest = json.load(f)
        manifest.update({"name": "mismatch", "labels": ["a", "b", "c"]})
        manifest.pop("embedding", None)
        with open(os.path.join(mismatch, "manifest.json"), "w") as f:
            json.dump(manifest, f)
        cls.srv = Server(models_dir=cls.models)
        cls.srv.start()
        cls.srv.wait_ready()
        cls.image = open(real_images()[0], "rb").read()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.srv.tmp.cleanup()
        shutil.rmtree(cls.models)

    def classify(self, data, name="x.png", ctype="image/png"):
        return self.srv.multipart("/v1/classify", files={"image": (name, data, ctype)})

    def test_health_lists_states(self):
        status, body = self.srv.json("GET", "/health")
        self.assertEqual(status, 200)
        models = body["models"]
        self.assertEqual(models["nsfw-mobilenet-v2"]["state"], "ready")
        self.assertEqual(models["nsfw-mobilenet-v2-embedding"]["state"], "ready")
        self.assertEqual(models["broken"]["state"], "failed")
        self.assertIn("missing.onnx", models["broken"]["error"])
        self.assertEqual(models["mismatch"]["state"], "failed")
        self.assertIn("3 entries", models["mismatch"]["error"])
        self.assertIn("5 values", models["mismatch"]["error"])

    def test_classify_real_image(self):
        status, body = self.classify(self.image)
        self.assertEqual(status, 200, body)
        classes = body["data"]["classes"]
        self.assertEqual({c["name"] for c in classes}, {"Drawing", "Hentai", "Neutral", "Porn", "Sexy"})
        self.assertAlmostEqual(sum(c["score"] for c in classes), 1.0, places=4)
        self.assertEqual(body["data"]["top"], classes[0]["name"])

    def test_embed_image(self):
        status, body = self.srv.multipart("/v1/embed/image", files={"image": ("a.png", self.image, "image/png")})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["data"]["dim"], 1280)
        self.assertEqual(body["data"]["model"], "nsfw-mobilenet-v2-embedding")

    def test_failed_model_is_503_with_name(self):
        status, body = self.srv.multipart("/v1/tag", files={"image": ("a.png", self.image, "image/png")},
                                          fields={"model": "broken"})
        self.assertEqual(status, 503)
        self.assertIn("broken", body["message"])

    def test_missing_task_is_503_explained(self):
        status, body = self.srv.multipart("/pix2score", files={"image": ("a.png", self.image, "image/png")})
        self.assertEqual(status, 503)
        self.assertIn("scores", body["message"])

    def test_bad_inputs(self):
        cases = [
            (b"this is not an image", 415),
            (self.image[: len(self.image) // 3], 415),
        ]
        for data, want in cases:
            status, body = self.classify(data)
            self.assertEqual(status, want, body)
            self.assertTrue(body["message"])
        status, body = self.srv.multipart("/v1/classify", fields={"model": "nsfw-mobilenet-v2"})
        self.assertEqual(status, 400)
        status, body = self.srv.json("POST", "/v1/classify", {"image": "x"})
        self.assertEqual(status, 400)
        status, body = self.srv.multipart("/v1/classify", files={"image": ("a.png", self.image, "image/png")},
                                          fields={"model": "no-such-model"})
        self.assertEqual(status, 404)

    def test_models_list_and_infer(self):
        status, body = self.srv.json("GET", "/v1/models")
        self.assertEqual(status, 200)
        names = {m["name"] for m in body["data"]}
        self.assertIn("nsfw-mobilenet-v2", names)
        status, body = self.srv.multipart("/v1/models/nsfw-mobilenet-v2/infer",
                                          files={"image": ("a.png", self.image, "image/png")})
        self.assertEqual(status, 200, body)
        (out,) = body["data"]["outputs"].values()
        self.assertEqual(len(out[0]), 5)
        # The same model through a raw tensor: a grey 224x224 NHWC input.
        grey = [[[[0.5, 0.5, 0.5]] * 224] * 224]
        status, body = self.srv.json("POST", "/v1/models/nsfw-mobilenet-v2/infer", {"inputs": grey})
        self.assertEqual(status, 200, body)
        status, body = self.srv.json("POST", "/v1/models/nsfw-mobilenet-v2/infer", {"inputs": [[1, 2], [3]]})
        self.assertEqual(status, 400)

    def test_tfserving_predict_matches_v1(self):
        b64 = base64.urlsafe_b64encode(self.image).decode().rstrip("=")
        status, body = self.srv.json("POST", "/v1/models/nsfw-mobilenet-v2:predict",
                                     {"instances": [{"b64_input_bytes": b64}]})
        self.assertEqual(status, 200, body)
        pred = body["predictions"][0]
        status, v1 = self.classify(self.image)
        by_name = {c["name"]: c["score"] for c in v1["data"]["classes"]}
        for i, name in enumerate(["Drawing", "Hentai", "Neutral", "Porn", "Sexy"]):
            self.assertAlmostEqual(pred[i], by_name[name], places=5)
        # Standard {"b64": ...} wrapper, columnar form, versioned path.
        std = base64.b64encode(self.image).decode()
        status, body = self.srv.json("POST", "/v1/models/nsfw-mobilenet-v2/versions/1:predict",
                                     {"inputs": {"b64_input_bytes": [{"b64": std}]}})
        self.assertEqual(status, 200, body)
        self.assertAlmostEqual(body["outputs"][0][0], pred[0], places=5)

    def test_tfserving_status_metadata_errors(self):
        status, body = self.srv.json("GET", "/v1/models/nsfw-mobilenet-v2")
        self.assertEqual(status, 200)
        self.assertEqual(body["model_version_status"][0]["state"], "AVAILABLE")
        status, body = self.srv.json("GET", "/v1/models/nsfw-mobilenet-v2/metadata")
        self.assertEqual(status, 200)
        self.assertIn("serving_default", body["metadata"]["signature_def"]["signature_def"])
        status, body = self.srv.json("POST", "/v1/models/nope:predict", {"instances": [1]})
        self.assertEqual(status, 404)
        self.assertIn("error", body)
        status, body = self.srv.json("POST", "/v1/models/nsfw-mobilenet-v2:predict",
                                     {"instances": [{"b64_input_bytes": "!!!not base64!!!"}]})
        self.assertEqual(status, 400)
        self.assertIn("error", body)
        bad = base64.urlsafe_b64encode(b"GIF89a garbage").decode()
        status, body = self.srv.json("POST", "/v1/models/nsfw-mobilenet-v2:predict",
                                     {"instances": [{"b64_input_bytes": bad}]})
        self.assertEqual(status, 400)
        self.assertIn("error", body)

    def test_metrics_has_model_timings(self):
        self.classify(self.image)
        _, _, text = self.srv.request("GET", "/metrics")
        self.assertIn('acg2vec_model_forward_seconds_count{model="nsfw-mobilenet-v2"}', text.decode())


if __name__ == "__main__":
    unittest.main(verbosity=2)
