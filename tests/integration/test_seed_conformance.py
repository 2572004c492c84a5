"""The seed's clients unchanged: the exact TF-Serving request bodies ACG2vec's webapp sends
(seed-spec Appendix A) for every model name, checked against the same packs through acg2vec's own
routes; plus the text routes, text-to-image search and the caption command.

Packs are random-weight models under the seed's names (tools/make_test_packs.py) with the real
tokenizers; client-side tokenisation comes from @huggingface/tokenizers, as the webapp's DJL did."""
import base64
import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from acg2vec_harness import BIN, Server  # noqa: E402
from packs import real_images, reference_ids, test_packs, webapp_pad  # noqa: E402


def read(path):
    with open(path, "rb") as f:
        return f.read()


class SeedConformanceTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.packs = test_packs()
        cls.srv = Server(models_dir=cls.packs)
        cls.srv.start()
        cls.srv.wait_ready()
        cls.image_path = real_images()[7]
        cls.image = read(cls.image_path)
        cls.b64 = base64.urlsafe_b64encode(cls.image).decode().rstrip("=")

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.srv.tmp.cleanup()

    def predict(self, name, body):
        return self.srv.json("POST", f"/v1/models/{name}:predict", body)

    def own(self, path, **fields):
        return self.srv.multipart(path, files={"image": ("a.png", self.image, "image/png")}, fields=fields)

    def assertClose(self, a, b, tol=1e-5):
        self.assertEqual(len(a), len(b))
        self.assertLessEqual(max(abs(x - y) for x, y in zip(a, b)), tol)

    def test_illust2vec_predict_equals_feature_route(self):
        status, body = self.predict("img_semantics_feature_extract_model", {"instances": [{"b64_input_bytes": self.b64}]})
        self.assertEqual(status, 200, body)
        status, own = self.own("/models/illust2vec/feature")
        self.assertEqual(status, 200, own)
        self.assertEqual(own["message"], "获取illust2vec图片特征向量成功")
        self.assertClose(body["predictions"][0], own["data"])

    def test_deepdanbooru_predict_equals_tag_routes(self):
        status, body = self.predict("deepdanbooru", {"instances": [{"b64_input_bytes": self.b64}]})
        self.assertEqual(status, 200, body)
        scores = body["predictions"][0]
        tags = read(os.path.join(self.packs, "deepdanbooru-test", "tags.txt")).decode().split()
        self.assertEqual(len(scores), len(tags))
        status, own = self.own("/images/labelsByDeepDanbooru")
        self.assertEqual(status, 200, own)
        self.assertEqual(own["message"], "获取插画预测标签成功")
        self.assertEqual(own.get("data", []), [t for t, s in zip(tags, scores) if s >= 0.5])
        status, v1 = self.own("/v1/tag", all="1")
        by_name = {t["name"]: t["score"] for group in v1["data"]["tags"].values() for t in group}
        for t, s in zip(tags, scores):
            self.assertAlmostEqual(by_name[t], s, places=5)
        self.assertIn(v1["data"]["rating"]["name"], tags[-3:])
        self.assertIn("hatsune_miku", [t["name"] for t in v1["data"]["tags"]["character"]])

    def test_pix2score_predict_names_and_values(self):
        status, body = self.predict("pix2score", {"instances": [{"b64_input_bytes": self.b64}]})
        self.assertEqual(status, 200, body)
        pred = body["predictions"][0]
        self.assertEqual(sorted(pred), ["pix2score", "pix2score_1", "pix2score_2"])
        self.assertEqual([len(pred[k]) for k in ("pix2score", "pix2score_1", "pix2score_2")], [15, 15, 5])
        for path in ("/images/socresByPix2Score", "/pix2score"):
            status, own = self.own(path)
            self.assertEqual(status, 200, own)
            self.assertClose(own["data"]["bookmarkPredict"], pred["pix2score"])
            self.assertClose(own["data"]["viewPredict"], pred["pix2score_1"])
            self.assertClose(own["data"]["sanityPredict"], pred["pix2score_2"])
            self.assertAlmostEqual(sum(own["data"]["sanityPredict"]), 1.0, places=4)

    def test_acgvoc2vec_predict_with_client_tokens(self):
        texts = ["初音ミク", "long hair, blue eyes", "東方Project 博麗霊夢"]
        ids = reference_ids(os.path.join(self.packs, "acgvoc2vec-test", "tokenizer.json"), texts)
        instances = [{"input_ids": webapp_pad(i, 128), "attention_mask": webapp_pad([1] * len(i), 128)} for i in ids]
        status, body = self.predict("acgvoc2vec", {"instances": instances})
        self.assertEqual(status, 200, body)
        self.assertEqual(len(body["predictions"]), 3)
        for text, pred in zip(texts, body["predictions"]):
            self.assertEqual(len(pred), 512)
            status, own = self.srv.multipart("/models/acgvoc2vec/feature", fields={"text": text})
            self.assertEqual(status, 200, own)
            self.assertEqual(own["message"], "获取acgvoc2vec文本特征向量成功")
            self.assertClose(pred, own["data"], 1e-5)
            self.assertLessEqual(max(abs(x) for x in pred), 1.0)  # tanh-bounded

    def test_dclip_text_predict_with_client_tokens(self):
        texts = ["1girl, solo, long hair", "a photo of a cat " * 30]
        ids = reference_ids(os.path.join(self.packs, "dclip-test", "tokenizer.json"), texts)
        status, body = self.predict("dclip_text", {"instances": [webapp_pad(i, 77) for i in ids]})
        self.assertEqual(status, 200, body)
        for text, pred in zip(texts, body["predictions"]):
            self.assertEqual(len(pred), 768)
            status, own = self.srv.multipart("/models/dclip_text/feature", fields={"text": text})
            self.assertEqual(status, 200, own)
            self.assertClose(pred, own["data"], 1e-4)

    def test_dclip_image_is_a_real_answer(self):
        status, own = self.own("/models/dclip_image/feature")
        self.assertEqual(status, 200, own)
        self.assertEqual(len(own["data"]), 768)
        status, body = self.predict("dclip_image", {"instances": [{"b64_input_bytes": self.b64}]})
        self.assertEqual(status, 200, body)
        self.assertClose(body["predictions"][0], own["data"], 1e-5)

    def test_status_metadata_and_errors(self):
        for name in ["deepdanbooru", "img_semantics_feature_extract_model", "pix2score", "acgvoc2vec", "dclip_text"]:
            status, body = self.srv.json("GET", f"/v1/models/{name}")
            self.assertEqual(status, 200, name)
            self.assertEqual(body["model_version_status"][0]["state"], "AVAILABLE")
            status, body = self.srv.json("GET", f"/v1/models/{name}/metadata")
            self.assertEqual(status, 200, (name, body))
            self.assertIn("serving_default", body["metadata"]["signature_def"]["signature_def"])
        status, body = self.predict("illust2vec_missing", {"instances": []})
        self.assertEqual(status, 404)
        self.assertIn("error", body)
        status, body = self.predict("deepdanbooru", {"instances": [{"b64_input_bytes": "***"}]})
        self.assertEqual(status, 400)
        self.assertIn("error", body)
        status, body = self.predict("deepdanbooru", {"instances": [{"b64_input_bytes": base64.urlsafe_b64encode(b"nope").decode()}]})
        self.assertEqual(status, 400)
        status, body = self.predict("acgvoc2vec", {"instances": [{"input_ids": [1] * 500}]})
        self.assertEqual(status, 400)

    def test_text_routes_bad_input(self):
        cases = [({"text": ""}, 400), ({"text": "x" * 100_001}, 413), ({}, 400)]
        for fields, want in cases:
            status, body = self.srv.multipart("/models/acgvoc2vec/feature", fields=fields)
            self.assertEqual(status, want, (fields, body))
            self.assertTrue(body["message"])
        status, body = self.srv.json("POST", "/models/dclip_text/feature", b"text=%ff%fe",
                                     {"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(status, 400, body)
        status, body = self.srv.json("POST", "/v1/embed/text", {"texts": ["a", 3]})
        self.assertEqual(status, 400)
        status, body = self.srv.json("POST", "/v1/embed/text", {"texts": ["blue hair", "赤い目"]})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["data"]["dim"], 512)
        self.assertEqual(len(body["data"]["vectors"]), 2)

    def test_similar_tags(self):
        status, body = self.srv.json("GET", "/acgvoc2vec?tag=long_hair&k=5")
        self.assertEqual(status, 200, body)
        self.assertEqual(len(body["data"]), 5)
        self.assertNotIn("long_hair", body["data"])
        vocab = read(os.path.join(self.packs, "acgvoc2vec-test", "vocabulary.txt")).decode().split()
        self.assertTrue(set(body["data"]) <= set(vocab))
        status, body = self.srv.json("GET", "/acgvoc2vec")
        self.assertEqual(status, 400)

    def test_text_to_image_search(self):
        img = self.srv.multipart("/v1/items", files={"file": ("a.png", self.image, "image/png")}, fields={"id": "t2i"})
        self.assertEqual(img[0], 201, img[1])
        status, body = self.srv.json("GET", "/searchIllustByDCLIP?text=1girl%20blue%20hair")
        self.assertEqual(status, 200, body)
        self.assertEqual([h["id"] for h in body["data"]], ["t2i"])
        status, body = self.srv.json("POST", "/v1/search", {"text": "1girl", "k": 5})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["data"]["space"], "dclip-test-image")


    def test_tag_search_and_filters(self):
        status, body = self.srv.multipart("/v1/items", files={"file": ("a.png", self.image, "image/png")},
                                          fields={"id": "tagged"})
        self.assertEqual(status, 201, body)
        tags = body["data"]["tags"]["deepdanbooru-test"]
        top = tags[0]["name"]
        status, body = self.srv.json("POST", "/v1/search", {"tags": {"all": [top]}, "min_score": 0.05})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["data"]["space"], "tags")
        self.assertIn("tagged", [h["id"] for h in body["data"]["hits"]])
        status, body = self.srv.json("POST", "/v1/search", {"tags": {"all": [top], "none": [top]}})
        self.assertEqual(body["data"]["hits"], [])
        status, body = self.srv.json("GET", f"/v1/search?tags={top}&k=5")
        self.assertIn("tagged", [h["id"] for h in body["data"]["hits"]])
        # Vector search restricted by a tag filter that excludes the item.
        status, body = self.srv.multipart("/v1/search", files={"image": ("q.png", self.image, "image/png")},
                                          fields={"none": top, "k": "10"})
        self.assertEqual(status, 200, body)
        self.assertNotIn("tagged", [h["id"] for h in body["data"]["hits"]])
        self.srv.json("DELETE", "/v1/items/tagged")


class ModelCommandsTest(unittest.TestCase):
    def test_tag_and_embed_many_files(self):
        packs = test_packs()
        files = real_images()[:3]
        r = subprocess.run([BIN, "--log-level", "warn", "--models-dir", packs, "tag", "--json", *files],
                           capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = [json.loads(line) for line in r.stdout.splitlines()]
        self.assertEqual([line["file"] for line in lines], files)
        self.assertIn("rating", lines[0])
        r = subprocess.run([BIN, "--log-level", "warn", "--models-dir", packs, "embed", "--model", "illust2vec", "--json",
                            *files], capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr)
        vectors = [json.loads(line)["vector"] for line in r.stdout.splitlines()]
        self.assertEqual(len(vectors), 3)
        # The CLI batches files together; each row must equal the served single-image answer.
        srv = Server(models_dir=packs)
        srv.start()
        try:
            srv.wait_ready()
            status, body = srv.multipart("/models/illust2vec/feature", files={"image": ("a.png", read(files[1]), "image/png")})
            self.assertEqual(status, 200, body)
            self.assertLessEqual(max(abs(a - b) for a, b in zip(body["data"], vectors[1])), 1e-5)
        finally:
            srv.stop()
            srv.tmp.cleanup()
        r = subprocess.run([BIN, "--models-dir", packs, "tag", "/no/such/file.png"], capture_output=True, text=True)
        self.assertNotEqual(r.returncode, 0)


class CaptionCommandTest(unittest.TestCase):
    def test_variant_b_from_the_spec(self):
        tags = [{"name": "hatsune_miku", "category": 4}, {"name": "vocaloid", "category": 3},
                {"name": "1girl", "category": 0}, {"name": "long_hair", "category": 0}, {"name": "someone", "category": 1}]
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(tags, f)
        try:
            r = subprocess.run([BIN, "caption", "--json", f.name], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(json.loads(r.stdout)["captions"], ["hatsune miku from vocaloid with 1girl,long hair"])
            r = subprocess.run([BIN, "caption", "--variant", "z", f.name], capture_output=True, text=True)
            self.assertNotEqual(r.returncode, 0)
        finally:
            os.unlink(f.name)


if __name__ == "__main__":
    unittest.main(verbosity=2)
