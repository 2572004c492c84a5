"""Watch folders (issue 24, acceptance 3): files are added, modified, renamed (a file and a whole
directory) and deleted under a watched tree while `acg2vec serve --watch` runs and while it is
stopped; after every step the collection matches the tree (polled with a deadline), ids and
metadata survive renames, a burst of writes to one file is ingested once, an undecodable file is
counted and named, and an item added by another route is never removed. `acg2vec watch` (the
foreground command) is driven the same way at the end."""
import hashlib
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from acg2vec_harness import BIN, Server  # noqa: E402
from packs import installed_packs  # noqa: E402

SETTLE_MS = 150
DEADLINE_S = 90  # a bound for each wait on a loaded 2-core machine, not an expected time


def png(seed, w=40, h=32):
    """A small RGB PNG of seeded noise (distinct content per seed)."""
    rnd = random.Random(seed)
    rows = b"".join(b"\x00" + bytes(rnd.randrange(256) for _ in range(w * 3)) for _ in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def sha256(data):
    return hashlib.sha256(data).hexdigest()


class WatchTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="acg2vec-watch-")
        self.root = os.path.realpath(os.path.join(self.tmp.name, "tree"))
        os.makedirs(self.root)
        self.data = os.path.join(self.tmp.name, "data")
        self.models = installed_packs(["nsfw-mobilenet-v2"])
        self.images = {}  # relative path → bytes of every image file in the tree (what must be in the collection)
        self.srv = None

    def tearDown(self):
        if self.srv:
            self.srv.stop()
            self.srv.tmp.cleanup()
        self.tmp.cleanup()

    # ---- the tree ----

    def write(self, rel, data, image=True):
        path = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        if image:
            self.images[rel] = data
        else:
            self.images.pop(rel, None)

    def rename(self, old, new):
        os.makedirs(os.path.dirname(os.path.join(self.root, new)), exist_ok=True)
        os.rename(os.path.join(self.root, old), os.path.join(self.root, new))
        for rel in list(self.images):
            if rel == old or rel.startswith(old + "/"):
                self.images[new + rel[len(old):]] = self.images.pop(rel)

    def delete(self, rel):
        os.remove(os.path.join(self.root, rel))
        self.images.pop(rel, None)

    # ---- the server ----

    def start(self):
        self.srv = Server("--watch", self.root, "--watch-settle-ms", str(SETTLE_MS), data_dir=self.data,
                          models_dir=self.models)
        self.srv.start()
        self.srv.wait_ready()

    def stop(self):
        self.assertEqual(self.srv.stop(), 0, self.srv.read_log())
        self.srv.tmp.cleanup()
        self.srv = None

    def items(self):
        status, body = self.srv.json("GET", "/v1/items?limit=1000")
        self.assertEqual(status, 200, body)
        return body["data"]

    def watch_stats(self):
        status, body = self.srv.json("GET", "/v1/stats")
        self.assertEqual(status, 200, body)
        self.assertEqual(len(body["data"]["watch"]), 1, body)
        return body["data"]["watch"][0]

    def tree_items(self, items=None):
        """source → item, for the items whose file lies in the watched tree."""
        return {i["source"]: i for i in (items or self.items()) if i["source"].startswith(self.root + "/")}

    def wait_synced(self, extra=lambda items: True, what="the collection to match the tree"):
        """Polls until the watcher is idle and the items from the tree are exactly its image files,
        with their current content; returns source → item."""
        expected = {os.path.join(self.root, rel): sha256(data) for rel, data in self.images.items()}
        deadline = time.time() + DEADLINE_S
        last = None
        while time.time() < deadline:
            stats = self.watch_stats()
            items = self.items()
            got = {src: i["contentHash"] for src, i in self.tree_items(items).items()}
            last = (stats, got)
            if stats["state"] == "watching" and stats["pending"] == 0 and got == expected and extra(items):
                return self.tree_items(items)
            time.sleep(0.1)
        self.fail(f"timed out waiting for {what}: expected {sorted(expected)}, "
                  f"stats {json.dumps(last[0])}, items {sorted(last[1])}\n{self.srv.read_log()}")

    def by_id(self, item_id):
        status, body = self.srv.json("GET", "/v1/items/" + item_id)
        return body["data"] if status == 200 else None

    # ---- the test ----

    def test_watched_tree_and_collection_stay_in_step(self):
        self.write("a.png", png(1))
        self.write("sub/b.png", png(2))
        self.write("sub/deep/c.png", png(3))
        self.write("notes.txt", b"not an image\n", image=False)
        self.write("broken.png", b"\x89PNG\r\n\x1a\n" + b"garbage" * 20, image=False)

        # ---- first start: the reconcile pass ingests the tree ----
        self.start()
        status, body = self.srv.multipart("/v1/items", files={"file": ("up.png", png(999), "image/png")},
                                          fields={"id": "uploaded", "source": "elsewhere/up.png"})
        self.assertEqual(status, 201, body)
        items = self.wait_synced()
        self.assertEqual(items[os.path.join(self.root, "a.png")]["id"], "a.png", "ids are paths under the root")
        stats = self.watch_stats()
        self.assertEqual(stats["errors"], 1, stats)
        self.assertEqual(stats["failed"][0]["path"], "broken.png", stats)
        self.assertTrue(stats["failed"][0]["error"], stats)
        self.assertEqual(stats["files"], 5, stats)  # three images, the text file and the broken one
        self.assertEqual(stats["items"], 3, stats)
        self.assertEqual(stats["root"], self.root)
        # Classified by the installed pack, as `acg2vec ingest` would.
        self.assertIn("nsfw-mobilenet-v2", items[os.path.join(self.root, "a.png")]["scores"])

        # ---- while running ----
        self.write("d.png", png(4))
        self.wait_synced(what="d.png to be added")

        old_a = items[os.path.join(self.root, "a.png")]
        self.write("a.png", png(11))
        items = self.wait_synced(what="a.png's new content")
        new_a = items[os.path.join(self.root, "a.png")]
        self.assertEqual(new_a["id"], "a.png", "a changed file stays the same item")
        self.assertNotEqual(new_a["contentHash"], old_a["contentHash"])

        status, body = self.srv.json("PUT", "/v1/items/sub/b.png", {"metadata": {"artist": "someone", "fav": True}})
        self.assertEqual(status, 200, body)
        self.rename("sub/b.png", "sub/b-renamed.png")
        items = self.wait_synced(what="the rename of sub/b.png")
        b = items[os.path.join(self.root, "sub/b-renamed.png")]
        self.assertEqual(b["id"], "sub/b.png", "a renamed file keeps its id")
        self.assertEqual(b["metadata"], {"artist": "someone", "fav": True}, "and its metadata")
        self.assertIn("nsfw-mobilenet-v2", b["scores"])

        self.rename("sub", "moved/sub2")
        items = self.wait_synced(what="the rename of the directory sub")
        self.assertEqual(items[os.path.join(self.root, "moved/sub2/b-renamed.png")]["id"], "sub/b.png")
        self.assertEqual(items[os.path.join(self.root, "moved/sub2/deep/c.png")]["id"], "sub/deep/c.png")
        self.assertEqual(items[os.path.join(self.root, "moved/sub2/b-renamed.png")]["metadata"]["artist"], "someone")
        self.assertGreaterEqual(self.watch_stats()["moved"], 3)

        self.delete("d.png")
        self.wait_synced(what="d.png to be removed")
        self.assertIsNone(self.by_id("d.png"))

        # A burst: one file written in many pieces, each closer to the last than the settle time.
        before = self.watch_stats()
        data = png(5, 200, 150)
        path = os.path.join(self.root, "burst.png")
        with open(path, "wb") as f:
            step = len(data) // 12 + 1
            for i in range(0, len(data), step):
                f.write(data[i:i + step])
                f.flush()
                os.fsync(f.fileno())
                time.sleep(SETTLE_MS / 1000 / 5)  # the writer's pace, not an assertion
        self.images["burst.png"] = data
        self.wait_synced(what="burst.png")
        after = self.watch_stats()
        self.assertEqual(after["ingested"] - before["ingested"], 1, (before, after))
        self.assertEqual(after["reads"] - before["reads"], 1, ("read once, after it settled", before, after))
        self.assertEqual(after["updated"], before["updated"], (before, after))
        self.assertEqual(after["errors"], 1, after)  # still only broken.png: no partial read failed

        self.assertIsNotNone(self.by_id("uploaded"), "an item added by another route is left alone")
        self.stop()

        # ---- while stopped ----
        self.write("f.png", png(6))
        self.write("burst.png", png(55, 200, 150))                  # modified
        self.rename("moved/sub2/b-renamed.png", "moved/sub2/b-again.png")
        self.rename("moved/sub2/deep", "moved/deeper")              # a directory
        self.delete("a.png")
        self.write("broken.png", png(7))                            # now decodable
        self.start()
        items = self.wait_synced(what="the reconcile pass after a restart")
        b = items[os.path.join(self.root, "moved/sub2/b-again.png")]
        self.assertEqual(b["id"], "sub/b.png")
        self.assertEqual(b["metadata"], {"artist": "someone", "fav": True})
        self.assertEqual(items[os.path.join(self.root, "moved/deeper/c.png")]["id"], "sub/deep/c.png")
        self.assertEqual(items[os.path.join(self.root, "burst.png")]["id"], "burst.png")
        self.assertIsNone(self.by_id("a.png"))
        stats = self.watch_stats()
        self.assertEqual(stats["errors"], 0, stats)
        self.assertEqual(stats["reconciles"], 1, stats)
        self.assertIsNotNone(self.by_id("uploaded"))
        self.stop()

        # ---- `acg2vec watch`: the foreground command ----
        proc = subprocess.Popen([BIN, "--log-level", "warn", "--data-dir", self.data, "--models-dir", self.models,
                                 "watch", self.root, "--settle-ms", str(SETTLE_MS)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)
        reader.start()

        def wait_line(pred, what):
            deadline = time.time() + DEADLINE_S
            while time.time() < deadline:
                if any(pred(line) for line in list(lines)):
                    return
                if proc.poll() is not None:
                    break
                time.sleep(0.1)
            proc.kill()
            self.fail(f"`acg2vec watch` never printed {what}: {lines[-5:]}")

        try:
            wait_line(lambda l: ": watching · " in l and " 0 pending" in l, "a watching status")
            self.write("g.png", png(8))
            self.delete("f.png")
            wait_line(lambda l: ": watching · " in l and " 0 pending" in l and "+1 " in l and l.rstrip().endswith("-1"),
                      "the new and the deleted file")
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.assertEqual(proc.returncode, 0, lines[-5:])
        self.assertIn("items in the collection", out)

        # The server, without --watch, serves what the command left.
        self.srv = Server(data_dir=self.data, models_dir=self.models)
        self.srv.start()
        self.srv.wait_ready()
        got = {src: i["contentHash"] for src, i in self.tree_items().items()}
        self.assertEqual(got, {os.path.join(self.root, rel): sha256(d) for rel, d in self.images.items()})
        status, body = self.srv.json("GET", "/v1/stats")
        self.assertNotIn("watch", body["data"], "no watch section without --watch")


if __name__ == "__main__":
    unittest.main()
