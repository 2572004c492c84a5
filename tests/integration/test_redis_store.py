"""acg2vec serve on a real redis-server (started here on a free 127.0.0.1 port, AOF on): a Redis
outage answers 503 with a JSON message, the service recovers when Redis returns without being
restarted, and no acknowledged write is lost. Also `acg2vec migrate` from SQLite to Redis."""
import io
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from acg2vec_harness import BIN, Server  # noqa: E402

from PIL import Image  # noqa: E402

REDIS = "/usr/bin/redis-server"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    def __init__(self, directory):
        self.dir = directory
        self.port = free_port()
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir, "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--logfile", "redis.log"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    @property
    def uri(self):
        return f"redis://127.0.0.1:{self.port}"


def png(colour, size=(48, 40)):
    out = io.BytesIO()
    img = Image.new("RGB", size, colour)
    for x in range(0, size[0], 6):
        img.putpixel((x, x % size[1]), (255 - colour[0], 0, 255))
    img.save(out, "PNG")
    return out.getvalue()


@unittest.skipUnless(os.path.exists(REDIS), "redis-server is not installed")
class RedisStoreTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="acg2vec-redis-")
        self.redis = Redis(self.tmp)
        self.redis.start()

    def tearDown(self):
        self.redis.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def add(self, srv, item_id, colour):
        return srv.multipart("/v1/items", files={"file": (f"{item_id}.png", png(colour), "image/png")},
                             fields={"id": item_id, "metadata": json.dumps({"colour": list(colour)})})

    def test_outage_answers_503_and_recovers_without_losing_writes(self):
        with Server(env={"ACG2VEC_STORE": self.redis.uri + "?connect_timeout_ms=300&max_backoff_ms=200"}) as srv:
            srv.wait_ready()
            status, body = self.add(srv, "before", (200, 30, 30))
            self.assertEqual(status, 201, body)

            self.redis.kill()
            for method, path in [("GET", "/v1/items/before"), ("GET", "/v1/items?limit=5")]:
                status, body = srv.json(method, path)
                self.assertEqual(status, 503, body)
                self.assertIn("redis at 127.0.0.1:", json.dumps(body))
            status, body = self.add(srv, "during", (30, 200, 30))
            self.assertEqual(status, 503, body)

            self.redis.start()  # same port and directory: the AOF is replayed
            deadline = time.time() + 15
            while True:
                status, body = srv.json("GET", "/v1/items/before")
                if status == 200 or time.time() > deadline:
                    break
                time.sleep(0.1)
            self.assertEqual(status, 200, body)
            self.assertEqual(body["data"]["metadata"], {"colour": [200, 30, 30]})
            status, body = self.add(srv, "after", (30, 30, 200))
            self.assertEqual(status, 201, body)
            status, body = srv.json("GET", "/v1/items?limit=10")
            self.assertEqual(status, 200, body)
            self.assertEqual(body["total"], 2)
            status, body = srv.json("GET", "/v1/items/during")
            self.assertEqual(status, 404, body)

    def test_migrate_sqlite_to_redis(self):
        data = os.path.join(self.tmp, "data")
        with Server(data_dir=data) as srv:
            srv.wait_ready()
            for n in range(7):
                status, body = self.add(srv, f"m{n}", (n * 30, 100, 200 - n * 20))
                self.assertEqual(status, 201, body)
        r = subprocess.run([BIN, "--data-dir", data, "migrate", "--from", "sqlite", "--to", self.redis.uri,
                            "--batch", "3"], capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        summary = json.loads(r.stdout.strip().splitlines()[-1])
        self.assertEqual(summary["copied"], 7)
        self.assertEqual(summary["destination_count"], 7)
        self.assertEqual(summary["sampled"], 7)
        # A second run refuses to merge into the now non-empty destination.
        r = subprocess.run([BIN, "--data-dir", data, "migrate", "--from", "sqlite", "--to", self.redis.uri],
                           capture_output=True, text=True, timeout=120)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--overwrite", r.stderr)
        # The service on the Redis copy serves the same items.
        with Server(data_dir=os.path.join(self.tmp, "data2"), env={"ACG2VEC_STORE": self.redis.uri}) as srv:
            srv.wait_ready()
            status, body = srv.json("GET", "/v1/items?limit=20")
            self.assertEqual(status, 200, body)
            self.assertEqual(body["total"], 7)
            status, body = srv.json("GET", "/v1/items/m3")
            self.assertEqual(status, 200, body)
            self.assertEqual(body["data"]["metadata"], {"colour": [90, 100, 140]})

    def test_cli_ingest_and_search_with_the_store_flag(self):
        images = os.path.join(self.tmp, "images")
        os.makedirs(images)
        for n in range(3):
            rng = random.Random(n)
            img = Image.new("RGB", (40, 30))
            img.putdata([(rng.randrange(256),) * 3 for _ in range(40 * 30)])
            img.save(os.path.join(images, f"{n}.png"))
        base = [BIN, "--data-dir", os.path.join(self.tmp, "data"), "--models-dir", os.path.join(self.tmp, "models"),
                "--store", self.redis.uri]
        r = subprocess.run(base + ["ingest", images], capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("3 items", r.stdout + r.stderr)
        # The items are in Redis (key layout: docs/scale-out.md).
        count = subprocess.run(["/usr/bin/redis-cli", "-p", str(self.redis.port), "ZCARD", "acg2vec:{acg2vec}:order"],
                               capture_output=True, text=True, timeout=30).stdout.strip()
        self.assertEqual(count, "3")
        r = subprocess.run(base + ["search", "--image", os.path.join(images, "1.png"), "-k", "3", "--json"],
                           capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr)
        hits = json.loads(r.stdout)["hits"]
        self.assertEqual(hits[0]["id"], "1.png")  # the query image itself comes first
        self.assertTrue({h["id"] for h in hits} <= {"0.png", "1.png", "2.png"}, hits)
        self.assertAlmostEqual(hits[0]["score"], 1.0, delta=1e-5)


if __name__ == "__main__":
    unittest.main()
