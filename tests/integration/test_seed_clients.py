"""The seed's clients, unchanged (issue 21): Illust records for every item on the seed's search routes,
the seed's status codes on its item routes (and the strict ones on /v1), integer item ids, empty data
dropped, the 1.0.0 routes (/images/features, /texts/features, /images/labels, /images/textLabels),
Spring Boot Actuator's health and prometheus paths, the DeepDanbooru pack behind labelsByDeepDanbooru,
503 for every missing seed model and the acgvoc2vec tag index built at start-up.

Packs: the random-weight seed packs (tools/make_test_packs.py), plus two made here with python3-torch:
a deepix-style pack (five softmax heads with the 1.0.0 label names) and a second tagger whose name
sorts before deepdanbooru-test, so that "whichever tagger comes first" would be the wrong one."""
import base64
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from acg2vec_harness import BIN, Server  # noqa: E402
from packs import real_images, reference_ids, test_packs, webapp_pad  # noqa: E402

SOURCE = os.environ.get("ACG2VEC_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))

# The 1.0.0 webapp's label files for the deepix heads (seed-spec §2.6).
DEEPIX_LABELS = {
    "bookmark": ["0-100", "100-250", "250-500", "500-1000", "1000-1500", "1500-2000", "2000-3000", "3000-6000",
                 "6000-10000", ">10000"],
    "view": ["0-2000", "2000-5000", "5000-8000", "8000-12000", "12000-20000", "20000-30000", "30000-40000",
             "40000-60000", "60000-110000", ">110000"],
    "sanity": [str(i) for i in range(10)],
    "restrict": ["0", "1", "2"],
    "xRestrict": ["0", "1", "2"],
}
RATING_LEVELS = {"safe": 2, "general": 2, "sensitive": 4, "questionable": 6, "explicit": 6}

MAKE_PACKS = r'''
import json, os, sys, torch
from torch import nn
out, heads = sys.argv[1], json.loads(sys.argv[2])
torch.manual_seed(5)
class Deepix(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.heads = nn.ModuleList([nn.Linear(8, n) for n in heads.values()])
    def forward(self, x):
        f = torch.relu(self.c(x.permute(0, 3, 1, 2))).mean(dim=(2, 3))
        return tuple(torch.softmax(h(f) * 4, dim=1) for h in self.heads)
names = list(heads)
torch.onnx.export(Deepix().eval(), torch.rand(1, 64, 64, 3), os.path.join(out, "model.onnx"), input_names=["input"],
                  output_names=names, opset_version=13,
                  dynamic_axes={"input": {0: "batch"}, **{n: {0: "batch"} for n in names}})
'''


def read(path):
    with open(path, "rb") as f:
        return f.read()


def dump(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f)


def image_input():
    return {"size": [64, 64], "resize": "stretch_bilinear_tf", "layout": "NHWC", "scale": 255, "channels": "RGB"}


def make_deepix_pack(root):
    d = os.path.join(root, "deepix-test")
    os.makedirs(d)
    subprocess.run(["/usr/bin/python3", "-c", MAKE_PACKS, d, json.dumps({k: len(v) for k, v in DEEPIX_LABELS.items()})],
                   check=True)
    dump(os.path.join(d, "manifest.json"), {
        "name": "deepix-test", "task": "scores", "format": "onnx", "file": "model.onnx", "input": image_input(),
        "outputs": [{"name": k, "labels": v} for k, v in DEEPIX_LABELS.items()], "aliases": ["deepix"]})


def make_other_tagger(packs, root):
    """deepdanbooru-test's network under another name and vocabulary ("other_" + tag), no seed alias."""
    d = os.path.join(root, "a-other-tagger")
    os.makedirs(d)
    shutil.copy(os.path.join(packs, "deepdanbooru-test", "model.onnx"), d)
    tags = read(os.path.join(packs, "deepdanbooru-test", "tags.txt")).decode().split()
    with open(os.path.join(d, "tags.txt"), "w") as f:
        f.write("\n".join(t if t.startswith("rating:") else "other_" + t for t in tags) + "\n")
    manifest = json.loads(read(os.path.join(packs, "deepdanbooru-test", "manifest.json")))
    manifest.update(name="a-other-tagger", aliases=[])
    dump(os.path.join(d, "manifest.json"), manifest)


def link_packs(packs, root, names):
    for n in names:
        os.symlink(os.path.join(packs, n), os.path.join(root, n))


def expected_tags(item):
    """Illust tags from /v1/items/{id}: best score per name over every tagger, >= 0.5, ratings apart,
    best first, at most 30."""
    best = {}
    for group in item["tags"].values():
        for t in group:
            name = t["name"]
            if name.startswith("rating:") or name in RATING_LEVELS:
                continue
            if t["score"] >= 0.5:
                best[name] = max(best.get(name, 0.0), t["score"])
    ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:30]
    return [n for n, _ in ranked]


def expected_rating(item):
    best, score = None, -1.0
    for group in item["tags"].values():
        for t in group:
            name = t["name"][len("rating:"):] if t["name"].startswith("rating:") else t["name"]
            if name in RATING_LEVELS and t["score"] > score:
                best, score = name, t["score"]
    return best


class SeedClientsTest(unittest.TestCase):
    """A collection of six items: two ingested by the CLI, one added by /v1/items and one by POST
    /images/{id} without extend, two by POST /images/{id} with a pixiv-style extend record."""

    @classmethod
    def setUpClass(cls):
        cls.packs = test_packs()
        cls.tmp = tempfile.TemporaryDirectory(prefix="acg2vec-seed-clients-")
        models = os.path.join(cls.tmp.name, "models")
        os.makedirs(models)
        link_packs(cls.packs, models, ["deepdanbooru-test", "illust2vec-test", "pix2score-test", "acgvoc2vec-test",
                                       "dclip-test"])
        make_deepix_pack(models)
        make_other_tagger(cls.packs, models)
        cls.models = models
        cls.images = real_images()
        cls.srv = Server(models_dir=models)
        # Two files ingested by the CLI before the server starts: ids are their file names.
        ingest = os.path.join(cls.tmp.name, "ingest")
        os.makedirs(ingest)
        for p in cls.images[:2]:
            shutil.copy(p, ingest)
        cls.ingested = [os.path.basename(p) for p in cls.images[:2]]
        subprocess.run([BIN, "--data-dir", cls.srv.data_dir, "--models-dir", models, "ingest", ingest], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
        cls.srv.start()
        cls.srv.wait_ready()
        cls.base = f"http://127.0.0.1:{cls.srv.port}"
        # Added while serving.
        status, body = cls.srv.multipart("/v1/items", files={"file": ("v1_item.png", read(cls.images[2]), "image/png")},
                                         fields={"id": "v1-item", "source": "/pictures/v1_item.png"})
        assert status == 201, body
        status, body = cls.srv.multipart("/images/301", files={"file": ("x.png", read(cls.images[3]), "image/png")})
        assert status == 200, body
        cls.extend = {
            302: {"title": "stored title", "artistId": 42, "imageUrls": [{"large": "https://i.pximg.net/302.jpg",
                                                                          "original": "https://i.pximg.net/302o.jpg"}],
                  "width": 1000, "tags": [{"name": "stored_tag", "translatedName": "saved"}]},
            303: {"title": "another", "sanityLevel": 4, "totalBookmarks": 9},
        }
        for i, (item_id, ext) in enumerate(cls.extend.items()):
            status, body = cls.srv.multipart(f"/images/{item_id}",
                                             files={"file": ("e.png", read(cls.images[4 + i]), "image/png")},
                                             fields={"extend": json.dumps(ext)})
            assert status == 200, body
        cls.all_ids = set(cls.ingested) | {"v1-item", 301, 302, 303}

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.srv.tmp.cleanup()
        cls.tmp.cleanup()

    def item(self, item_id):
        status, body = self.srv.json("GET", f"/v1/items/{item_id}")
        self.assertEqual(status, 200, body)
        return body["data"]

    def upload(self, path, part, index=0, **fields):
        return self.srv.multipart(path, files={part: ("q.png", read(self.images[index]), "image/png")}, fields=fields)

    def check_illust(self, illust, base=None):
        """Every field the seed's page and clients read; stored extend fields win over the defaults."""
        base = base or self.base
        item_id = illust["id"]
        self.assertIn(item_id, self.all_ids)
        stored = self.item(item_id)
        ext = self.extend.get(item_id, {})
        name = os.path.basename(stored["source"]) if stored["source"] else ""
        thumb = f"{base}/v1/items/{item_id}/thumbnail"
        defaults = {
            "title": os.path.splitext(name)[0] if name else str(item_id),
            "imageUrls": [{"squareMedium": thumb, "medium": thumb, "large": thumb, "original": thumb}],
            "width": stored["width"], "height": stored["height"],
            "tags": [{"name": n} for n in expected_tags(self.item_with_tags(item_id))],
            "createDate": datetime.datetime.fromtimestamp(stored["createdAt"] / 1000, datetime.timezone.utc)
            .strftime("%Y-%m-%dT%H:%M:%S.") + f"{stored['createdAt'] % 1000:03d}Z",
        }
        rating = expected_rating(self.item_with_tags(item_id))
        self.assertIsNotNone(rating, "the test tagger reports ratings")
        defaults["sanityLevel"] = RATING_LEVELS[rating]
        defaults["xrestrict"] = 1 if rating == "explicit" else 0
        for key, value in {**defaults, **ext}.items():
            self.assertEqual(illust[key], value, (item_id, key))
        self.assertEqual(stored["metadata"], ext)

    def item_with_tags(self, item_id):
        return self.item(item_id)  # GET /v1/items/{id} carries the tags

    def test_similarity_images_gives_every_item_as_an_illust(self):
        status, body = self.upload("/similarityImages", "image", index=0)
        self.assertEqual(status, 200, body)
        self.assertEqual({h["id"] for h in body["data"]}, self.all_ids)
        for h in body["data"]:
            self.check_illust(h)
            self.assertIsInstance(h["score"], float)
        # The image URLs of items without extend are acg2vec's own thumbnails, and they load.
        plain = next(h for h in body["data"] if h["id"] == 301)
        status, headers, data = self.srv.request("GET", plain["imageUrls"][0]["large"][len(self.base):])
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("Content-Type"), "image/jpeg")
        self.assertEqual(data[:3], b"\xff\xd8\xff")

    def test_image_urls_follow_the_proxy_headers(self):
        boundary = "b0undary"
        payload = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"q.png\"\r\n"
                   "Content-Type: image/png\r\n\r\n").encode() + read(self.images[0]) + f"\r\n--{boundary}--\r\n".encode()
        status, _, data = self.srv.request("POST", "/similarityImages", payload, {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "X-Forwarded-Proto": "https", "X-Forwarded-Host": "gallery.example.org, inner.proxy"})
        self.assertEqual(status, 200)
        hits = {h["id"]: h for h in json.loads(data)["data"]}
        self.check_illust(hits[301], base="https://gallery.example.org")
        self.assertEqual(hits[302]["imageUrls"], self.extend[302]["imageUrls"])

    def test_dclip_text_search_gives_illusts(self):
        status, body = self.srv.json("GET", "/searchIllustByDCLIP?text=1girl%2C%20long%20hair")
        self.assertEqual(status, 200, body)
        self.assertEqual({h["id"] for h in body["data"]}, self.all_ids)
        for h in body["data"]:
            self.check_illust(h)

    def test_similar_images_extend_info_is_an_illust_and_ids_are_integers(self):
        status, body = self.upload("/images/similarImages", "file", index=4, k="10")
        self.assertEqual(status, 200, body)
        ids = [h["itemId"] for h in body["data"]]
        self.assertEqual(set(ids), self.all_ids)
        self.assertEqual(ids[0], 302, "the same image comes first")
        for h in body["data"]:
            self.assertIsNone(h["feature"])
            self.assertEqual(h["extendInfo"]["id"], h["itemId"])
            self.check_illust(h["extendInfo"])
        self.assertEqual(body["data"][0]["extendInfo"]["artistId"], 42)

    def test_numeric_ids_are_integers_whatever_route_stored_them(self):
        # PUT /v1/items/{id} creates an item with a text id; digits still go out as an integer,
        # unless the number is not canonical or JavaScript could not hold it exactly.
        cases = {"555": 555, "0555": "0555", "9007199254740991": 9007199254740991,
                 "9007199254740993": "9007199254740993", "12345678901234567": "12345678901234567"}
        try:
            for i, text_id in enumerate(cases):
                status, body = self.srv.multipart(f"/v1/items/{text_id}", method="PUT",
                                                  files={"file": ("n.png", read(self.images[8 + i]), "image/png")})
                self.assertEqual(status, 200, body)
            for i, (text_id, want) in enumerate(cases.items()):
                status, body = self.upload("/images/similarImages", "file", index=8 + i, k="1")
                self.assertEqual(status, 200, body)
                self.assertEqual(body["data"][0]["itemId"], want)
                self.assertIs(type(body["data"][0]["itemId"]), type(want))
                self.assertEqual(body["data"][0]["extendInfo"]["id"], want)
        finally:
            for text_id in cases:
                self.srv.json("DELETE", f"/v1/items/{text_id}")

    def test_seed_item_routes_keep_the_seeds_status_codes(self):
        img, other = read(self.images[12]), read(self.images[13])
        status, body = self.srv.multipart("/images/404404", files={"file": ("a.png", img, "image/png")},
                                          fields={"extend": json.dumps({"title": "first"})})
        self.assertEqual((status, body["data"]), (200, True), body)
        before = self.item(404404)
        # Re-inserting the id: 200, data true, a message that says it was kept; nothing replaced.
        status, body = self.srv.multipart("/images/404404", files={"file": ("b.png", other, "image/png")},
                                          fields={"extend": json.dumps({"title": "second"})})
        self.assertEqual((status, body["data"]), (200, True), body)
        self.assertIn("kept", body["message"])
        after = self.item(404404)
        self.assertEqual((after["contentHash"], after["metadata"]), (before["contentHash"], before["metadata"]))
        # Deleting: 200 both times, as the seed (which deleted without looking).
        for _ in range(2):
            status, body = self.srv.json("DELETE", "/images/404404")
            self.assertEqual((status, body["data"]), (200, True), body)
        self.assertEqual(self.srv.json("GET", "/v1/items/404404")[0], 404)
        status, body = self.srv.json("DELETE", "/images/99999999")
        self.assertEqual(status, 200, body)
        self.assertIn("nothing was deleted", body["message"])
        # /v1 stays strict: 409 on an existing id, 404 on an unknown one.
        status, body = self.srv.multipart("/v1/items", files={"file": ("a.png", img, "image/png")}, fields={"id": "strict"})
        self.assertEqual(status, 201, body)
        status, body = self.srv.multipart("/v1/items", files={"file": ("a.png", img, "image/png")}, fields={"id": "strict"})
        self.assertEqual(status, 409, body)
        self.assertEqual(body["error"], "conflict")
        self.assertEqual(self.srv.json("DELETE", "/v1/items/strict")[0], 200)
        status, body = self.srv.json("DELETE", "/v1/items/strict")
        self.assertEqual(status, 404, body)
        # A bad id is still refused on the seed's routes.
        self.assertEqual(self.srv.multipart("/images/abc", files={"file": ("a.png", img, "image/png")})[0], 400)

    def test_images_features_is_the_10_route_not_an_item(self):
        status, body = self.upload("/images/features", "file", index=5)
        self.assertEqual(status, 200, body)
        status, own = self.upload("/models/illust2vec/feature", "image", index=5)
        self.assertEqual(status, 200, own)
        self.assertEqual(len(body["data"]), len(own["data"]))
        self.assertLessEqual(max(abs(a - b) for a, b in zip(body["data"], own["data"])), 1e-6)
        self.assertEqual(self.srv.json("GET", "/v1/items/features")[0], 404, "stored as an item")
        # The other fixed names under /images/ are not item ids either.
        for name in ("labels", "textLabels"):
            status, body = self.srv.json("DELETE", f"/images/{name}")
            self.assertIn(status, (404, 405), (name, body))

    def test_texts_features_is_the_acgvoc2vec_vector_of_the_text(self):
        text = "初音ミク long hair"
        status, body = self.srv.multipart("/texts/features", fields={"text": text})
        self.assertEqual(status, 200, body)
        self.assertEqual(len(body["data"]), 512)
        # The same vector TF-Serving's acgvoc2vec gives for the client's token ids (not word ids into
        # the image model, as the seed's 1.0.0 route did).
        ids = reference_ids(os.path.join(self.packs, "acgvoc2vec-test", "tokenizer.json"), [text])[0]
        status, pred = self.srv.json("POST", "/v1/models/acgvoc2vec:predict", {
            "instances": [{"input_ids": webapp_pad(ids, 128), "attention_mask": webapp_pad([1] * len(ids), 128)}]})
        self.assertEqual(status, 200, pred)
        self.assertLessEqual(max(abs(a - b) for a, b in zip(pred["predictions"][0], body["data"])), 1e-5)
        self.assertEqual(self.srv.multipart("/texts/features", fields={"text": ""})[0], 400)

    def test_images_labels_maps_each_deepix_head_to_its_label(self):
        status, body = self.upload("/images/labels", "file", index=6)
        self.assertEqual(status, 200, body)
        self.assertEqual(set(body["data"]), set(DEEPIX_LABELS))
        status, raw = self.upload("/v1/models/deepix-test/infer", "image", index=6)
        self.assertEqual(status, 200, raw)
        for head, labels in DEEPIX_LABELS.items():
            probs = raw["data"]["outputs"][head][0]
            self.assertEqual(body["data"][head], labels[probs.index(max(probs))], head)

    def test_labels_by_deepdanbooru_uses_the_deepdanbooru_pack(self):
        status, body = self.upload("/images/labelsByDeepDanbooru", "image", index=7)
        self.assertEqual(status, 200, body)
        status, tagged = self.upload("/v1/tag", "image", index=7, model="deepdanbooru", all="1")
        self.assertEqual(status, 200, tagged)
        tags = read(os.path.join(self.packs, "deepdanbooru-test", "tags.txt")).decode().split()
        scores = {t["name"]: t["score"] for g in tagged["data"]["tags"].values() for t in g}
        scores[tagged["data"]["rating"]["name"]] = tagged["data"]["rating"]["score"]
        want = [t for t in tags if t in scores and scores[t] >= 0.5]
        self.assertEqual(body.get("data", []), want)
        self.assertFalse(any(t.startswith("other_") for t in body.get("data", [])), "the other tagger answered")
        # textLabels: the same tags as text, ratings left out.
        status, text = self.upload("/images/textLabels", "file", index=7)
        self.assertEqual(status, 200, text)
        self.assertEqual(text.get("data", []), [t.replace("_", " ") for t in want if not t.startswith("rating:")])

    def test_actuator_health_and_prometheus(self):
        status, body = self.srv.json("GET", "/actuator/health")
        self.assertEqual(status, 200, body)
        self.assertEqual(body["status"], "UP")
        self.assertEqual(body["components"]["models"]["status"], "UP")
        self.assertTrue(set(body["components"]["models"]["components"]) >= {"deepix-test", "deepdanbooru-test"})
        self.assertEqual(body["components"]["models"]["components"]["deepix-test"]["details"]["state"], "ready")
        status, headers, data = self.srv.request("GET", "/actuator/prometheus")
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/plain"))
        self.assertIn('acg2vec_http_requests_total{route="actuator.health",method="GET",status="200"}', data.decode())
        status, body = self.srv.json("GET", "/actuator")
        self.assertEqual(status, 200, body)
        self.assertEqual(body["_links"]["health"]["href"], f"{self.base}/actuator/health")

    def test_tag_index_is_built_at_start_up(self):
        # No request has asked for similar tags yet; the index is built regardless.
        built = re.compile(r"tag vocabulary of 'acgvoc2vec-test': (\d+) tags")

        def whole_log():
            with open(self.srv.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        deadline = time.time() + 60
        while time.time() < deadline and not built.search(whole_log()):
            time.sleep(0.2)
        log = whole_log()
        match = built.search(log)
        self.assertIsNotNone(match, log[-2000:])
        vocab = read(os.path.join(self.packs, "acgvoc2vec-test", "vocabulary.txt")).decode().split()
        self.assertEqual(int(match.group(1)), len(vocab))
        self.assertNotIn("GET /acgvoc2vec", log, "a request built the index")
        status, body = self.srv.json("GET", "/acgvoc2vec?tag=long_hair&k=3")
        self.assertEqual(status, 200, body)
        self.assertEqual(len(body["data"]), 3)
        self.assertTrue(set(body["data"]) <= set(vocab))


class MissingSeedModelsTest(unittest.TestCase):
    """An empty collection and a models dir without the seed's deepdanbooru, illust2vec and deepix packs
    (another tagger is there), plus one pack that fails to load."""

    @classmethod
    def setUpClass(cls):
        cls.packs = test_packs()
        cls.tmp = tempfile.TemporaryDirectory(prefix="acg2vec-seed-missing-")
        models = os.path.join(cls.tmp.name, "models")
        os.makedirs(models)
        link_packs(cls.packs, models, ["pix2score-test", "acgvoc2vec-test", "dclip-test"])
        make_other_tagger(cls.packs, models)
        broken = os.path.join(models, "broken-embedding")
        os.makedirs(broken)
        dump(os.path.join(broken, "manifest.json"), {"name": "broken-embedding", "task": "image_embedding",
                                                     "format": "onnx", "file": "missing.onnx", "input": image_input()})
        cls.images = real_images()
        cls.srv = Server(models_dir=models)
        cls.srv.start()
        cls.srv.wait_ready()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.srv.tmp.cleanup()
        cls.tmp.cleanup()

    def upload(self, path, part, **fields):
        return self.srv.multipart(path, files={part: ("q.png", read(self.images[0]), "image/png")}, fields=fields)

    def test_every_missing_seed_model_is_503_naming_its_pack(self):
        cases = [("/images/labelsByDeepDanbooru", "image", "deepdanbooru"),
                 ("/images/textLabels", "file", "deepdanbooru"),
                 ("/models/illust2vec/feature", "image", "illust2vec"),
                 ("/images/features", "file", "illust2vec"),
                 ("/images/labels", "file", "deepix")]
        for path, part, pack in cases:
            status, body = self.upload(path, part)
            self.assertEqual(status, 503, (path, body))
            self.assertEqual(body["error"], "unavailable")
            self.assertIn(f"'{pack}'", body["message"], path)
        # A pack without deepix's heads cannot stand in for it.
        status, body = self.upload("/images/labels", "file", model="pix2score-test")
        self.assertEqual(status, 503, body)
        self.assertIn("no 'bookmark' head", body["message"])
        # A pack named explicitly and unknown stays a 404, as on /v1.
        status, body = self.upload("/models/illust2vec/feature", "image", model="no-such-pack")
        self.assertEqual(status, 404, body)

    def test_empty_data_is_dropped_on_seed_routes_only(self):
        for path, part in (("/similarityImages", "image"), ("/images/similarImages", "file")):
            status, body = self.upload(path, part)
            self.assertEqual(status, 200, (path, body))
            self.assertNotIn("data", body, path)
            self.assertTrue(body["message"])
        status, body = self.srv.json("GET", "/searchIllustByDCLIP?text=blue%20sky")
        self.assertEqual(status, 200, body)
        self.assertNotIn("data", body)
        status, body = self.srv.json("POST", "/v1/search", {"text": "blue sky"})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["data"]["hits"], [])

    def test_actuator_health_is_down_while_a_pack_is_broken(self):
        status, body = self.srv.json("GET", "/actuator/health")
        self.assertEqual(status, 503, body)
        self.assertEqual(body["status"], "DOWN")
        models = body["components"]["models"]
        self.assertEqual(models["status"], "DOWN")
        self.assertEqual(models["components"]["broken-embedding"]["status"], "DOWN")
        self.assertIn("missing.onnx", models["components"]["broken-embedding"]["details"]["error"])
        self.assertEqual(models["components"]["dclip-test"]["status"], "UP")
        self.assertEqual(self.srv.json("GET", "/health")[0], 200, "acg2vec's own /health still answers")


if __name__ == "__main__":
    unittest.main(verbosity=2)
