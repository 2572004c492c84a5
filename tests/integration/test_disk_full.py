"""Disk full on the data directory (a small tmpfs): writes are refused with a clear error, reads
keep working, nothing acknowledged is lost, and once there is room again writes succeed.
Mounting needs root (CI runs as root); elsewhere the test is skipped with that reason, which ctest
reports as a skip (exit 77) and which fails a CI=true run unless tests/skip-allowlist.txt lists it.
ACG2VEC_DISK_FULL_FSTYPE (default tmpfs) exists so that tests/integration/test_skip_checker.py can make
the mount fail on purpose and show that such a skip fails CI."""
import io
import os
import random
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from acg2vec_harness import Server  # noqa: E402
from packs import installed_packs  # noqa: E402


def noise_png(rng, side=384):
    from PIL import Image  # Debian python3-pil
    img = Image.frombytes("RGB", (side, side), bytes(rng.getrandbits(8) for _ in range(side * side * 3)))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


class DiskFullTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="acg2vec-diskfull-")
        self.mnt = os.path.join(self.tmp.name, "mnt")
        os.makedirs(self.mnt)
        fstype = os.environ.get("ACG2VEC_DISK_FULL_FSTYPE", "tmpfs")
        r = subprocess.run(["mount", "-t", fstype, "-o", "size=3m", "tmpfs", self.mnt], capture_output=True, text=True)
        if r.returncode != 0:
            self.tmp.cleanup()
            self.skipTest(f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")

    def tearDown(self):
        subprocess.run(["umount", "-l", self.mnt], capture_output=True)
        self.tmp.cleanup()

    def test_full_disk_refuses_writes_and_loses_nothing(self):
        rng = random.Random(7)
        models = installed_packs(["nsfw-mobilenet-v2"])
        data = os.path.join(self.mnt, "data")
        srv = Server(data_dir=data, models_dir=models)
        acked, refused = [], None
        try:
            srv.start()
            srv.wait_ready()
            for n in range(400):
                status, body = srv.multipart("/v1/items", files={"file": ("n.png", noise_png(rng), "image/png")},
                                             fields={"id": f"item-{n}"})
                if status == 201:
                    acked.append(f"item-{n}")
                    continue
                refused = (status, body)
                break
            self.assertIsNotNone(refused, "3 MB should fill up within 400 noisy images")
            self.assertGreater(len(acked), 3, "some items fit before the disk filled")
            status, body = refused
            print(f"\n{len(acked)} items stored, then HTTP {status}: {body.get('message')}", file=sys.stderr)
            self.assertIn(status, (503, 507), body)
            self.assertIsInstance(body.get("message"), str, body)
            self.assertRegex(body["message"], r"disk full|No space", body)
            # Reads still work and every acknowledged item is whole.
            for item in acked:
                status, body = srv.json("GET", f"/v1/items/{item}")
                self.assertEqual(status, 200, (item, body))
                self.assertIn("nsfw-mobilenet-v2-embedding", body["data"]["vectors"], item)
            status, body = srv.json("POST", "/v1/search", {"id": acked[0], "k": 5, "space": "nsfw-mobilenet-v2-embedding"})
            self.assertEqual(status, 200, body)
            hits = [h["id"] for h in body["data"]["hits"]]
            self.assertEqual(len(hits), min(5, len(acked) - 1), body)
            self.assertTrue(set(hits) <= set(acked), body)
            # A second refused write changes nothing either.
            status, _ = srv.multipart("/v1/items", files={"file": ("n.png", noise_png(rng), "image/png")},
                                      fields={"id": "one-more"})
            self.assertIn(status, (503, 507))
            srv.stop()

            # Room again: the same data directory opens with everything acknowledged, and accepts writes.
            r = subprocess.run(["mount", "-o", "remount,size=64m", self.mnt], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            srv.start()
            srv.wait_ready()
            status, stats = srv.json("GET", "/v1/stats")
            self.assertEqual(status, 200, stats)
            self.assertGreaterEqual(stats["data"]["items"], len(acked), stats)
            for space in ("signature", "nsfw-mobilenet-v2-embedding"):
                self.assertEqual(stats["data"]["spaces"][space]["size"], stats["data"]["items"], (space, stats))
            for item in acked:
                status, body = srv.json("GET", f"/v1/items/{item}")
                self.assertEqual(status, 200, (item, body))
                status, _, thumb = srv.request("GET", f"/v1/items/{item}/thumbnail")
                self.assertEqual(status, 200, item)
                self.assertTrue(thumb.startswith(b"\xff\xd8") and thumb.endswith(b"\xff\xd9"), f"{item}: whole JPEG")
            status, body = srv.multipart("/v1/items", files={"file": ("n.png", noise_png(rng), "image/png")},
                                         fields={"id": "after-room"})
            self.assertEqual(status, 201, body)
        finally:
            srv.stop()
            srv.tmp.cleanup()


if __name__ == "__main__":
    unittest.main(verbosity=2)
