"""Resolving duplicate groups with the real binary: dry run changes nothing, keep-best removes the other
copies and merges their metadata into the kept item (metadata.merged_from keeps the provenance), user
files stay unless --delete-files, the HTTP resolve does the same for one group, and a SIGKILL inside the
resolve's transaction leaves the old state (tags are merged too: tests/unit/search_dedup_test.cpp, as no
offline pack tags images).

The SIGKILL lands inside the transaction for certain: ACG2VEC_RESOLVE_STALL_MS makes the resolve wait
after its writes and before the commit and say so on stderr; the test kills on that line (bounded wait).
"""
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from acg2vec_harness import BIN, Server, kill_at_marker  # noqa: E402

try:
    from PIL import Image
except ImportError:
    Image = None

SOURCE = os.environ.get("ACG2VEC_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = os.path.join(SOURCE, "tests", "data", "renpy")


def copies_of(name):
    """The original's bytes and two lossy copies: {file name: bytes}."""
    path = os.path.join(DATA, name)
    im = Image.open(path).convert("RGBA")
    bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
    bg.alpha_composite(im)
    rgb = bg.convert("RGB")
    base = os.path.splitext(name)[0]
    out = {name: open(path, "rb").read()}
    b = io.BytesIO()
    rgb.save(b, "JPEG", quality=70)
    out[base + ".q70.jpg"] = b.getvalue()
    b = io.BytesIO()
    rgb.resize((rgb.width // 2, rgb.height // 2), Image.BICUBIC).save(b, "PNG")
    out[base + ".half.png"] = b.getvalue()
    return out


def run(*args, env=None, timeout=300):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))


@unittest.skipIf(Image is None, "python3-pil is not installed")
class DedupResolveTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="acg2vec-resolve-")
        root = self.tmp.name
        self.models = os.path.join(root, "models")
        os.makedirs(self.models)
        self.folder = os.path.join(root, "pictures")
        os.makedirs(self.folder)
        self.files = {}
        for name in ("demo_eileen_happy.png", "thequestion_sylvie_blue_giggle.png"):
            self.files.update(copies_of(name))
        shutil.copy(os.path.join(DATA, "demo_bg_cave.jpg"), self.folder)
        self.files["demo_bg_cave.jpg"] = open(os.path.join(DATA, "demo_bg_cave.jpg"), "rb").read()
        for name, data in self.files.items():
            with open(os.path.join(self.folder, name), "wb") as f:
                f.write(data)
        self.data = os.path.join(root, "data")
        r = run("--data-dir", self.data, "--models-dir", self.models, "ingest", self.folder)
        self.assertEqual(r.returncode, 0, r.stderr)

    def tearDown(self):
        self.tmp.cleanup()

    def cli(self, *args, env=None):
        return run("--data-dir", self.data, "--models-dir", self.models, *args, env=env)

    def groups(self):
        r = self.cli("dedup", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)["groups"]

    def state(self):
        """{id: metadata} of every stored item, and the signature index size, read through the server."""
        with Server(data_dir=self.data, models_dir=self.models) as srv:
            srv.wait_ready()
            status, body = srv.json("GET", "/v1/items?limit=1000")
            self.assertEqual(status, 200, body)
            items = {}
            for it in body["data"]:
                status, full = srv.json("GET", "/v1/items/" + it["id"])
                self.assertEqual(status, 200, full)
                items[it["id"]] = full["data"]["metadata"]
            status, stats = srv.json("GET", "/v1/stats")
            return items, stats["data"]["spaces"]["signature"]["size"]

    def test_dry_run_then_keep_best_keeps_files(self):
        before = self.groups()
        self.assertEqual(len(before), 2, before)
        r = self.cli("dedup", "--apply", "keep-best", "--dry-run")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("would remove 4 item(s) in 2 group(s) (dry run: nothing changed)", r.stdout)
        self.assertEqual(self.groups(), before)

        r = self.cli("dedup", "--apply", "keep-best")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("removed 4 item(s) in 2 group(s)", r.stdout)
        items, indexed = self.state()
        self.assertEqual(sorted(items), ["demo_bg_cave.jpg", "demo_eileen_happy.png", "thequestion_sylvie_blue_giggle.png"])
        self.assertEqual(indexed, 3, "the signature index follows the store")
        merged = items["demo_eileen_happy.png"]["merged_from"]
        self.assertEqual(sorted(m["id"] for m in merged), ["demo_eileen_happy.half.png", "demo_eileen_happy.q70.jpg"])
        for m in merged:
            self.assertEqual(m["source"], os.path.join(os.path.realpath(self.folder), m["id"]))
            self.assertEqual(len(m["content_hash"]), 64)
        for name, data in self.files.items():  # no file touched without --delete-files
            with open(os.path.join(self.folder, name), "rb") as f:
                self.assertEqual(f.read(), data, name)
        self.assertEqual(self.groups(), [])

    def test_delete_files_only_when_asked(self):
        r = self.cli("dedup", "--apply", "keep-best", "--delete-files")
        self.assertEqual(r.returncode, 0, r.stderr)
        left = sorted(os.listdir(self.folder))
        self.assertEqual(left, ["demo_bg_cave.jpg", "demo_eileen_happy.png", "thequestion_sylvie_blue_giggle.png"])

    def test_http_resolve_merges_metadata(self):
        with Server(data_dir=self.data, models_dir=self.models) as srv:
            srv.wait_ready()
            # Metadata on a copy that will be removed, and on the keeper.
            status, body = srv.json("PUT", "/v1/items/demo_eileen_happy.q70.jpg",
                                    {"metadata": {"artist": "someone", "title": "from the copy"}})
            self.assertEqual(status, 200, body)
            status, body = srv.json("PUT", "/v1/items/demo_eileen_happy.png", {"metadata": {"title": "kept title"}})
            self.assertEqual(status, 200, body)
            status, body = srv.json("GET", "/v1/duplicates")
            self.assertEqual(status, 200, body)
            group = next(g for g in body["data"]["groups"] if g["keep"] == "demo_eileen_happy.png")
            self.assertEqual({m["relation"] for m in group["members"]}, {"keep", "near_duplicate"})
            status, body = srv.json("POST", f"/v1/duplicates/{group['id']}/resolve", {"dry_run": True})
            self.assertEqual(status, 200, body)
            self.assertTrue(body["data"]["dry_run"])
            self.assertEqual(srv.json("GET", "/v1/items/demo_eileen_happy.q70.jpg")[0], 200)
            status, body = srv.json("POST", f"/v1/duplicates/{group['id']}/resolve", {"keep": "nobody"})
            self.assertEqual(status, 400, body)
            status, body = srv.json("POST", f"/v1/duplicates/{group['id']}/resolve", {})
            self.assertEqual(status, 200, body)
            removed = sorted(r["id"] for k in body["data"]["groups"][0]["kept"] for r in k["removed"])
            self.assertEqual(removed, ["demo_eileen_happy.half.png", "demo_eileen_happy.q70.jpg"])
            self.assertEqual(srv.json("GET", "/v1/items/demo_eileen_happy.q70.jpg")[0], 404)
            status, body = srv.json("GET", "/v1/items/demo_eileen_happy.png")
            meta = body["data"]["metadata"]
            self.assertEqual(meta["title"], "kept title", "the kept item's own value wins")
            self.assertEqual(meta["artist"], "someone", "keys only the copy had are merged in")
            copy = next(m for m in meta["merged_from"] if m["id"] == "demo_eileen_happy.q70.jpg")
            self.assertEqual(copy["metadata"], {"artist": "someone", "title": "from the copy"})
            # The group is gone; resolving it again is a 404, and the other group is untouched.
            status, body = srv.json("POST", f"/v1/duplicates/{group['id']}/resolve", {})
            self.assertEqual(status, 404, body)
            status, body = srv.json("GET", "/v1/duplicates")
            self.assertEqual(len(body["data"]["groups"]), 1)
            # A reverse search by one of the removed copies now finds the kept item first.
            status, body = srv.multipart("/v1/search", files={"image": ("q.jpg", self.files["demo_eileen_happy.q70.jpg"],
                                                                         "image/jpeg")})
            self.assertEqual(body["data"]["hits"][0]["id"], "demo_eileen_happy.png")

    def test_sigkill_inside_the_resolve_leaves_the_old_state(self):
        old_items, old_indexed = self.state()
        self.assertEqual(len(old_items), 7)
        rc = kill_at_marker([BIN, "--data-dir", self.data, "--models-dir", self.models, "dedup", "--apply",
                             "keep-best"], "resolve: transaction open", {"ACG2VEC_RESOLVE_STALL_MS": "120000"})
        self.assertEqual(rc, -signal.SIGKILL)
        items, indexed = self.state()
        self.assertEqual(items, old_items, "the killed transaction left nothing behind")
        self.assertEqual(indexed, old_indexed)
        # The next resolve completes, and the state is then exactly the new one.
        r = self.cli("dedup", "--apply", "keep-best")
        self.assertEqual(r.returncode, 0, r.stderr)
        items, indexed = self.state()
        self.assertEqual(len(items), 3)
        self.assertEqual(indexed, 3)
        self.assertEqual(len(items["thequestion_sylvie_blue_giggle.png"]["merged_from"]), 2)

    def test_sigkill_at_random_points_leaves_old_or_new(self):
        """Kills at spread-out moments of a plain resolve (no stall): each run ends in the old state or the
        new one, never between (items and index agree, merged_from only with its copies gone)."""
        pristine = os.path.join(self.tmp.name, "pristine")
        shutil.copytree(self.data, pristine)
        old_ids = sorted(self.state()[0])
        outcomes = set()
        for attempt in range(6):
            shutil.rmtree(self.data)
            shutil.copytree(pristine, self.data)
            proc = subprocess.Popen([BIN, "--data-dir", self.data, "--models-dir", self.models, "dedup", "--apply",
                                     "keep-best"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                proc.wait(timeout=0.15 + 0.15 * attempt)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            items, indexed = self.state()
            self.assertEqual(indexed, len(items), attempt)
            ids = sorted(items)
            if ids == old_ids:
                self.assertTrue(all("merged_from" not in m for m in items.values()), attempt)
                outcomes.add("old")
            else:
                self.assertEqual(ids, ["demo_bg_cave.jpg", "demo_eileen_happy.png", "thequestion_sylvie_blue_giggle.png"])
                self.assertEqual(len(items["demo_eileen_happy.png"]["merged_from"]), 2, attempt)
                self.assertEqual(len(items["thequestion_sylvie_blue_giggle.png"]["merged_from"]), 2, attempt)
                outcomes.add("new")
        print("outcomes:", sorted(outcomes))


if __name__ == "__main__":
    unittest.main()
