"""Browsing the collection over loopback: GET /v1/items with tag, rating and score filters, sorts and
paging, "more like this" (like=ID), and GET /v1/tags. The collection is the captioning fixtures
(tests/data/images/captions, scores known from their pixels) ingested with the fixed-score taggers,
the tiny tagger and the nsfwjs classifier (whose probabilities are the items' scores). Every expected answer is computed here from the filter
definitions (README "HTTP API", store/item_store.h) over the items' stored tags and scores, never
from the browse code itself."""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
from acg2vec_harness import BIN, Server  # noqa: E402
import caption_reference as ref  # noqa: E402
from packs import installed_packs, tiny_packs  # noqa: E402

STORED_MINIMUM = 0.1  # tags below this are not stored with an item (ratings always are)


class BrowseApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="acg2vec-browse-")
        models = os.path.join(cls.tmp, "models")
        os.makedirs(models)
        captions, tiny, real = ref.caption_packs(), tiny_packs(), installed_packs()
        # The classifier's probabilities are the scores (they differ from image to image).
        for name, src in [("fixed-tagger", captions), ("fixed-tagger-b", captions), ("tiny-tagger", tiny),
                          ("nsfw-mobilenet-v2", real)]:
            os.symlink(os.path.join(src, name), os.path.join(models, name))
        cls.folder = os.path.join(cls.tmp, "images")
        ref.copy_images(cls.folder)
        cls.images = ref.all_images(cls.folder)[:24]
        keep = set(cls.images)
        for d, _, files in os.walk(cls.folder):
            for f in files:
                if os.path.join(d, f) not in keep:
                    os.remove(os.path.join(d, f))
        data = os.path.join(cls.tmp, "data")
        r = subprocess.run([BIN, "--data-dir", data, "--models-dir", models, "ingest", cls.folder],
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        cls.srv = Server(data_dir=data, models_dir=models)
        cls.srv.start()
        cls.srv.wait_ready()
        status, body = cls.srv.json("GET", "/v1/items?limit=1000")
        assert status == 200, body
        cls.order = [str(it["id"]) for it in body["data"]]  # newest first
        cls.items = {}
        for item_id in cls.order:
            status, body = cls.srv.json("GET", "/v1/items/" + urllib.parse.quote(item_id, safe=""))
            assert status == 200, body
            cls.items[item_id] = body["data"]

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.srv.tmp.cleanup()
        shutil.rmtree(cls.tmp)

    # ---- the definitions ----
    def on(self, item_id, tag, min_score=0.0, tagger=None):
        for name, tags in self.items[item_id]["tags"].items():
            if tagger and name != tagger:
                continue
            if any(t["name"] == tag and t["score"] >= min_score for t in tags):
                return True
        return False

    # Rating tags: "rating:*", or the four bare names WD-style taggers give their rating category.
    BARE_RATINGS = ("general", "sensitive", "questionable", "explicit")

    def rated(self, item_id, rating):
        def name_of(tag):
            return tag[7:] if tag.startswith("rating:") else tag
        for tags in self.items[item_id]["tags"].values():
            ratings = [t for t in tags if t["name"].startswith("rating:") or t["name"] in self.BARE_RATINGS]
            if ratings and any(name_of(t["name"]) == rating and t["score"] == max(r["score"] for r in ratings)
                               for t in ratings):
                return True
        return False

    def score(self, item_id, key):
        scorer, name = key.split(":", 1)
        return self.items[item_id]["scores"].get(scorer, {}).get(name)

    def expect(self, all_of=(), any_of=(), none_of=(), min_score=0.0, tagger=None, rating=None, key=None, lo=None,
               hi=None, sort="date", asc=False):
        out = []
        for i in self.order:
            if not all(self.on(i, t, min_score, tagger) for t in all_of):
                continue
            if any_of and not any(self.on(i, t, min_score, tagger) for t in any_of):
                continue
            if any(self.on(i, t, min_score, tagger) for t in none_of):
                continue
            if rating and not self.rated(i, rating):
                continue
            v = self.score(i, key) if key else None
            if (lo is not None or hi is not None) and v is None:
                continue
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                continue
            out.append(i)
        if sort == "date" and asc:
            out.reverse()
        if sort == "score":
            have = [i for i in out if self.score(i, key) is not None]
            missing = [i for i in out if self.score(i, key) is None]
            # Stable on the newest-first order: ties stay newest first in both directions.
            have.sort(key=lambda i: self.score(i, key) * (1 if asc else -1))
            out = have + missing
        return out

    def browse(self, **params):
        status, body = self.srv.json("GET", "/v1/items?" + urllib.parse.urlencode(params))
        self.assertEqual(status, 200, body)
        return [str(it["id"]) for it in body["data"]], body["total"]

    def check(self, params, **definition):
        want = self.expect(**definition)
        got, total = self.browse(limit=1000, **params)
        self.assertEqual(got, want, params)
        self.assertEqual(total, len(want), params)
        return want

    # ---- tests ----
    def test_collection_holds_the_fixture_scores(self):
        """The stored tags are the pixels' scores (so the filters below run on known data)."""
        self.assertEqual(len(self.items), len(self.images))
        by_source = {os.path.basename(it["source"]): it for it in self.items.values()}
        for img in self.images:
            stored = {t["name"]: t["score"] for t in by_source[os.path.basename(img)]["tags"]["fixed-tagger"]}
            want = {n: s for n, c, s in ref.scores(img, "fixed-tagger") if s >= STORED_MINIMUM or c == ref.RATING}
            self.assertEqual(set(stored), set(want), img)
            for n, s in want.items():
                self.assertAlmostEqual(stored[n], s, places=5)

    def test_plain_listing_is_unchanged(self):
        status, body = self.srv.json("GET", "/v1/items?offset=2&limit=5")
        self.assertEqual(status, 200)
        self.assertEqual([str(i["id"]) for i in body["data"]], self.order[2:7])
        self.assertEqual(body["total"], len(self.order))
        self.assertNotIn("tags", body["data"][0])

    def test_tag_filters(self):
        self.check({"tags": "1girl"}, all_of=["1girl"])
        some = self.check({"tags": "hat", "tagger": "fixed-tagger", "min_score": "0.35"}, all_of=["hat"],
                          tagger="fixed-tagger", min_score=0.35)
        self.assertTrue(0 < len(some) < len(self.order), "the filter must split the collection")
        self.check({"tags": "1girl,solo"}, all_of=["1girl", "solo"])
        self.check({"tags": "1girl solo", "min_score": "0.5"}, all_of=["1girl", "solo"], min_score=0.5)
        self.check({"any": "hat,skirt"}, any_of=["hat", "skirt"])
        self.check({"none": "1girl"}, none_of=["1girl"])
        both = self.check({"tags": "long_hair", "any": "hat,smile", "none": "skirt", "min_score": "0.35"},
                          all_of=["long_hair"], any_of=["hat", "smile"], none_of=["skirt"], min_score=0.35)
        self.check({"tags": "star_(symbol)"}, all_of=["star_(symbol)"])
        self.check({"tags": "^_^"}, all_of=["^_^"])
        # Tags of one tagger only: fixed-tagger-b knows tail, fixed-tagger does not.
        self.check({"tags": "1girl", "tagger": "fixed-tagger-b", "min_score": "0.5"}, all_of=["1girl"],
                   tagger="fixed-tagger-b", min_score=0.5)
        self.check({"tags": "tail", "tagger": "fixed-tagger"}, all_of=["tail"], tagger="fixed-tagger")
        self.assertIsInstance(both, list)
        self.check({"tags": "no_such_tag"}, all_of=["no_such_tag"])

    def test_rating_filter(self):
        counts = [len(self.check({"rating": r}, rating=r)) for r in ("safe", "questionable", "explicit")]
        self.assertEqual(len(self.check({"rating": "rating:safe"}, rating="safe")), counts[0])
        self.assertGreater(sum(counts), 0, "the tiny tagger gives every item a rating")
        # Bare WD rating names are ratings too (the reference above counts them the same way).
        bare = {r: len(self.check({"rating": r}, rating=r)) for r in self.BARE_RATINGS}
        print(f"prefixed ratings {counts}, bare ratings {bare}")

    def test_score_range_and_sort(self):
        key = "nsfw-mobilenet-v2:Drawing"
        values = sorted({self.score(i, key) for i in self.order})
        self.assertTrue(values and values[0] is not None, "every item has the score")
        self.assertGreater(len(values), len(self.order) // 2, "the scores differ between items")
        mid = values[len(values) // 2]
        self.check({"score": key, "score_min": mid}, key=key, lo=mid)
        self.check({"score": key, "score_max": mid}, key=key, hi=mid)
        self.check({"score": key, "score_min": mid, "score_max": mid}, key=key, lo=mid, hi=mid)
        self.check({"score": key, "sort": "score"}, key=key, sort="score")
        self.check({"score": key, "sort": "score", "order": "asc"}, key=key, sort="score", asc=True)
        self.check({"sort": "date", "order": "asc"}, asc=True)
        self.check({"tags": "1girl", "score": key, "sort": "score", "score_max": values[-1]}, all_of=["1girl"], key=key,
                   sort="score", hi=values[-1])
        # Items lacking the output never match a range, and sort after the others.
        self.check({"score": "nsfw-mobilenet-v2:noSuchClass", "score_min": 0}, key="nsfw-mobilenet-v2:noSuchClass", lo=0)

    def test_paging(self):
        want = self.expect(all_of=["1girl"])
        self.assertGreaterEqual(len(want), 4)
        pages = []
        for offset in range(0, len(want) + 3, 3):
            got, total = self.browse(tags="1girl", offset=offset, limit=3)
            self.assertEqual(total, len(want))
            pages += got
        self.assertEqual(pages, want)

    def test_like_orders_by_similarity_with_filters(self):
        first = self.order[0]
        status, body = self.srv.json("POST", "/v1/search", {"id": first, "k": 10})
        self.assertEqual(status, 200, body)
        search = [str(h["id"]) for h in body["data"]["hits"]]
        status, body = self.srv.json("GET", "/v1/items?" + urllib.parse.urlencode({"like": first, "limit": 10}))
        self.assertEqual(status, 200, body)
        self.assertEqual([str(i["id"]) for i in body["data"]], search)
        scores = [i["score"] for i in body["data"]]
        self.assertEqual(scores, sorted(scores, reverse=True))
        self.assertNotIn(first, [str(i["id"]) for i in body["data"]])
        self.assertEqual(body["total"], len(self.order) - 1)
        # With a filter: only matching items, still most similar first.
        status, body = self.srv.json("GET", "/v1/items?" + urllib.parse.urlencode({"like": first, "tags": "1girl",
                                                                                    "limit": 100}))
        self.assertEqual(status, 200, body)
        allowed = set(self.expect(all_of=["1girl"])) - {first}
        got = [str(i["id"]) for i in body["data"]]
        self.assertEqual(set(got), allowed)
        self.assertEqual(body["total"], len(allowed))

    def test_tag_counts(self):
        def counts(prefix="", min_score=0.0, tagger=None):
            c = {}
            for i in self.order:
                names = {t["name"] for n, tags in self.items[i]["tags"].items() if not tagger or n == tagger
                         for t in tags if t["score"] >= min_score}
                for n in names:
                    if n.startswith(prefix):
                        c[n] = c.get(n, 0) + 1
            return sorted(c.items(), key=lambda kv: (-kv[1], kv[0].encode()))

        def got(**params):
            status, body = self.srv.json("GET", "/v1/tags?" + urllib.parse.urlencode(params))
            self.assertEqual(status, 200, body)
            return [(t["name"], t["count"]) for t in body["data"]]

        self.assertEqual(got(limit=1000), counts())
        self.assertEqual(got(limit=5), counts()[:5])
        self.assertEqual(got(prefix="s", limit=1000), counts("s"))
        self.assertEqual(got(prefix="rating:", limit=1000), counts("rating:"))
        self.assertEqual(got(prefix="s", min_score=0.5, limit=1000), counts("s", 0.5))
        self.assertEqual(got(tagger="fixed-tagger-b", limit=1000), counts(tagger="fixed-tagger-b"))
        self.assertEqual(got(prefix="zzz"), [])
        # The autocomplete count is what the tag filter finds.
        for name, n in got(prefix="1", limit=10):
            self.assertEqual(self.browse(tags=name, limit=1)[1], n)

    def test_bad_parameters_are_400(self):
        for query in ["sort=nope", "sort=score", "score=nocolon&sort=score", "score_min=0.5",
                      "score=a:b&score_min=x", "score=a:b&score_min=2&score_max=1", "sort=similarity",
                      "like=" + urllib.parse.quote(self.order[0]) + "&sort=date", "order=up&tags=1girl",
                      "tags=1girl&limit=0", "tags=1girl&limit=5000", "min_score=abc"]:
            status, body = self.srv.json("GET", "/v1/items?" + query)
            self.assertEqual(status, 400, query)
            self.assertEqual(body["error"], "bad_parameter", query)
            self.assertTrue(body["message"], query)
        status, body = self.srv.json("GET", "/v1/items?like=no-such-item")
        self.assertEqual(status, 404, body)
        status, body = self.srv.json("GET", "/v1/tags?limit=0")
        self.assertEqual(status, 400, body)


if __name__ == "__main__":
    unittest.main()
