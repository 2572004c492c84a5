"""POST /v1/caption, the Caption panel's server side: one image's caption with the options of
`acg2vec tag --captions` as form fields. Checked against caption_reference (written from the option
definitions over the fixture images' known scores) and against the caption file the command writes
for the same image and options, so that the page and the command line agree to the byte."""
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from acg2vec_harness import BIN, Server  # noqa: E402
import caption_reference as ref  # noqa: E402

# (form fields, caption_reference keyword arguments, the command's flags)
CASES = [
    ({}, {}, []),
    ({"thresh": "0.5"}, {"general": 0.5, "character": 0.5}, ["--thresh", "0.5"]),
    ({"general-threshold": "0.15", "character-threshold": "0.5"}, {"general": 0.15, "character": 0.5},
     ["--general-threshold", "0.15", "--character-threshold", "0.5"]),
    ({"remove-underscore": "true", "escape-parentheses": "true", "character-tags-first": "true",
      "use-rating-tags": "true", "general-threshold": "0.15"},
     {"remove_underscore": True, "escape": True, "character_first": True, "rating_first": True, "general": 0.15},
     ["--remove-underscore", "--escape-parentheses", "--character-tags-first", "--use-rating-tags",
      "--general-threshold", "0.15"]),
    ({"mcut": "1", "use-rating-tags-as-last-tag": "1", "max-tags": "3", "with-scores": "1"},
     {"mcut_on": True, "rating_last": True, "max_tags": 3, "with_scores": True},
     ["--mcut", "--use-rating-tags-as-last-tag", "--max-tags", "3", "--with-scores"]),
    ({"undesired-tags": "solo | hat", "always-first-tags": "smile | 1girl", "tag-replacement": "long_hair,longhair",
      "caption-separator": " | ", "general-threshold": "0.15"},
     {"undesired": ("solo", "hat"), "always_first": ("smile", "1girl"), "replacements": (("long_hair", "longhair"),),
      "separator": " | ", "general": 0.15},
     ["--undesired-tags", "solo | hat", "--always-first-tags", "smile | 1girl", "--tag-replacement",
      "long_hair,longhair", "--caption-separator", " | ", "--general-threshold", "0.15"]),
]
ENSEMBLES = [("mean", {}), ("max", {}), ("vote", {})]


class CaptionApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.models = ref.caption_packs()
        cls.tmp = tempfile.TemporaryDirectory(prefix="acg2vec-caption-api-")
        cls.root = ref.copy_images(os.path.join(cls.tmp.name, "set"))
        cls.images = ref.all_images(cls.root)[:6]
        cls.srv = Server(models_dir=cls.models)
        cls.srv.start()
        cls.srv.wait_ready()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.srv.tmp.cleanup()
        cls.tmp.cleanup()

    def caption(self, image, fields):
        with open(image, "rb") as f:
            data = f.read()
        return self.srv.multipart("/v1/caption", files={"image": (os.path.basename(image), data, "image/png")},
                                  fields=fields)

    def cli_caption(self, image, model, flags):
        with tempfile.TemporaryDirectory() as out:
            p = subprocess.run([BIN, "--models-dir", self.models, "tag", image, "--captions", "--model", model,
                                "--output-dir", out, *flags], capture_output=True, text=True, timeout=120)
            self.assertEqual(p.returncode, 0, p.stderr)
            name = os.path.splitext(os.path.basename(image))[0] + ".txt"
            with open(os.path.join(out, name), encoding="utf-8") as f:
                return f.read()

    def test_every_option_matches_the_definitions_and_the_command(self):
        for fields, kwargs, flags in CASES:
            for img in self.images:
                status, body = self.caption(img, dict(fields, model="fixed-tagger"))
                self.assertEqual(status, 200, (fields, body))
                want, _ = ref.caption([ref.scores(img, "fixed-tagger")], **kwargs)
                self.assertEqual(body["data"]["caption"], want, (img, fields))
                self.assertEqual(body["data"]["models"], ["fixed-tagger"])
            # The command writes the same text (plus the newline) for the last image.
            self.assertEqual(self.cli_caption(img, "fixed-tagger", flags), body["data"]["caption"] + "\n", fields)

    def test_tags_carry_scores_and_categories(self):
        img = self.images[0]
        status, body = self.caption(img, {"model": "fixed-tagger", "general-threshold": "0.15"})
        self.assertEqual(status, 200, body)
        known = {n: (c, s) for n, c, s in ref.scores(img, "fixed-tagger")}
        cats = {ref.GENERAL: "general", ref.CHARACTER: "character", ref.RATING: "rating"}
        self.assertTrue(body["data"]["tags"])
        for t in body["data"]["tags"]:
            c, s = known[t["name"]]
            self.assertEqual(t["category"], cats[c])
            self.assertAlmostEqual(t["score"], s, places=5)
        self.assertEqual(", ".join(t["text"] for t in body["data"]["tags"]), body["data"]["caption"])
        ratings = {n: s for n, c, s in ref.scores(img, "fixed-tagger") if c == ref.RATING}
        self.assertEqual(set(body["data"]["rating"]), set(ratings))
        self.assertAlmostEqual(body["data"]["thresholds"]["general"], 0.15, places=5)

    def test_ensembles(self):
        for mode, _ in ENSEMBLES:
            for img in self.images[:3]:
                status, body = self.caption(img, {"model": "fixed-tagger,fixed-tagger-b", "ensemble": mode})
                self.assertEqual(status, 200, body)
                want, _ = ref.caption([ref.scores(img, "fixed-tagger"), ref.scores(img, "fixed-tagger-b")],
                                      ensemble=mode)
                self.assertEqual(body["data"]["caption"], want, (img, mode))
                self.assertEqual(body["data"]["models"], ["fixed-tagger", "fixed-tagger-b"])

    def test_bad_requests_are_4xx_json(self):
        img = self.images[0]
        for fields in [{"thresh": "1.5"}, {"thresh": "abc"}, {"model": "no-such-pack"}, {"ensemble": "median"},
                       {"mcut": "maybe"}, {"max-tags": "-1"}, {"caption-separator": ""}, {"threshold": "0.5"},
                       {"tag-replacement": "a,b,c"}]:
            status, body = self.caption(img, fields)
            self.assertTrue(400 <= status < 500, (fields, status, body))
            self.assertTrue(body["message"] and body["error"], fields)
        status, body = self.srv.multipart("/v1/caption", files={"image": ("x.png", b"not an image", "image/png")})
        self.assertTrue(400 <= status < 500, body)
        status, body = self.srv.multipart("/v1/caption", fields={"thresh": "0.5"})
        self.assertEqual(status, 400, body)


if __name__ == "__main__":
    unittest.main()
