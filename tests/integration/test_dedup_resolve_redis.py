"""Duplicate resolve on the Redis store: SIGKILL inside the resolve leaves the old state or the new one,
never a mix, as seen by any process that opens the store afterwards.

On Redis the resolve is a journal entry written in one command, then applied, then deleted
(src/store/redis_store.cpp, "Resolve journal"); the next redis_store to touch the prefix finishes an
entry a killed process left. ACG2VEC_RESOLVE_STALL_MS holds the resolve at the worst moment (entry
written, merged items written, copies not yet removed) and says so on stderr; the test kills it there,
checks in Redis itself that the raw keys ARE mixed at that moment (so the check after is not vacuous),
then opens the store with the binary and checks the new state. A second test kills plain resolves at
spread-out moments: each ends old or new.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from acg2vec_harness import BIN, kill_at_marker  # noqa: E402
from test_redis_store import REDIS, Redis  # noqa: E402

try:
    from PIL import Image  # noqa: F401
    from test_dedup_resolve import copies_of
except ImportError:
    Image = None

SOURCE = os.environ.get("ACG2VEC_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = os.path.join(SOURCE, "tests", "data", "renpy")
KEPT = ["demo_bg_cave.jpg", "demo_eileen_happy.png", "thequestion_sylvie_blue_giggle.png"]


@unittest.skipUnless(os.path.exists(REDIS) and Image is not None, "redis-server or python3-pil is not installed")
class DedupResolveRedisTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="acg2vec-resolve-redis-")
        root = self.tmp.name
        self.redis = Redis(root)
        self.redis.start()
        self.models = os.path.join(root, "models")
        os.makedirs(self.models)
        self.folder = os.path.join(root, "pictures")
        os.makedirs(self.folder)
        files = {}
        for name in ("demo_eileen_happy.png", "thequestion_sylvie_blue_giggle.png"):
            files.update(copies_of(name))
        with open(os.path.join(DATA, "demo_bg_cave.jpg"), "rb") as f:
            files["demo_bg_cave.jpg"] = f.read()
        for name, data in files.items():
            with open(os.path.join(self.folder, name), "wb") as f:
                f.write(data)
        self.data = os.path.join(root, "data")
        r = self.cli("ingest", self.folder)
        self.assertEqual(r.returncode, 0, r.stderr)

    def tearDown(self):
        self.redis.kill()
        self.tmp.cleanup()

    def base(self):
        return [BIN, "--data-dir", self.data, "--models-dir", self.models, "--store", self.redis.uri]

    def cli(self, *args, env=None):
        return subprocess.run(self.base() + list(args), capture_output=True, text=True, timeout=300,
                              env=dict(os.environ, **(env or {})))

    def redis_cli(self, *args):
        r = subprocess.run(["/usr/bin/redis-cli", "-p", str(self.redis.port), *args], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.strip()

    def raw_ids(self):
        """Item ids straight from the Redis keys (no acg2vec process involved)."""
        out = self.redis_cli("--scan", "--pattern", "acg2vec:item:*")
        return sorted(k[len("acg2vec:item:{"):-1] for k in out.split("\n") if k)

    def merged_from(self, item_id):
        meta = self.redis_cli("HGET", "acg2vec:item:{" + item_id + "}", "metadata")
        return json.loads(meta).get("merged_from", []) if meta else []

    def state(self):
        """Opens the store with the binary (which finishes a journal entry left behind), then reads the raw
        keys: ('old' | 'new', ids)."""
        r = self.cli("dedup", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        report = json.loads(r.stdout)
        ids = self.raw_ids()
        self.assertEqual(report["items"], len(ids))
        self.assertEqual(self.redis_cli("HLEN", "acg2vec:{acg2vec}:resolve-journal"), "0")
        self.assertEqual(self.redis_cli("ZCARD", "acg2vec:{acg2vec}:order"), str(len(ids)), "indexes follow the items")
        if len(ids) == 7:
            self.assertEqual(len(report["groups"]), 2)
            self.assertTrue(all(not self.merged_from(i) for i in ids), "merged items beside their copies")
            return "old", ids
        self.assertEqual(ids, KEPT, "neither the old state nor the new one")
        self.assertEqual(report["groups"], [])
        self.assertEqual(len(self.merged_from("demo_eileen_happy.png")), 2)
        self.assertEqual(len(self.merged_from("thequestion_sylvie_blue_giggle.png")), 2)
        return "new", ids

    def test_sigkill_mid_resolve_is_finished_by_the_next_open(self):
        self.assertEqual(self.state()[0], "old")
        rc = kill_at_marker(self.base() + ["dedup", "--apply", "keep-best"], "resolve: transaction open",
                            {"ACG2VEC_RESOLVE_STALL_MS": "120000"})
        self.assertEqual(rc, -signal.SIGKILL)
        # The raw keys are a mix right now: merged items written, their copies still there, the entry kept.
        self.assertEqual(self.redis_cli("HLEN", "acg2vec:{acg2vec}:resolve-journal"), "1")
        self.assertEqual(len(self.raw_ids()), 7)
        self.assertEqual(len(self.merged_from("demo_eileen_happy.png")), 2)
        # Any process opening the store finishes it before reading.
        self.assertEqual(self.state(), ("new", KEPT))
        # Running the resolve again finds nothing left to do.
        r = self.cli("dedup", "--apply", "keep-best")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.state(), ("new", KEPT))

    def test_sigkill_at_random_points_leaves_old_or_new(self):
        # The first run goes to the end and times the whole command; the others are killed at fractions of
        # that time. Each attempt starts from a fresh ingest (FLUSHALL, then the same folder again).
        outcomes = []
        whole = None
        for attempt in range(6):
            if attempt > 0:
                self.redis_cli("FLUSHALL")
                shutil.rmtree(self.data)  # the index files there are stamped with the flushed generation
                r = self.cli("ingest", self.folder)
                self.assertEqual(r.returncode, 0, r.stderr)
            started = time.time()
            proc = subprocess.Popen(self.base() + ["dedup", "--apply", "keep-best"], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            try:
                proc.wait(timeout=None if whole is None else whole * (0.5 + 0.1 * attempt))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if whole is None:
                whole = time.time() - started
                self.assertEqual(proc.returncode, 0)
            outcomes.append(self.state()[0])
        print(f"whole resolve {whole:.2f} s; outcomes: {outcomes}")
        self.assertEqual(outcomes[0], "new")

if __name__ == "__main__":
    unittest.main()
