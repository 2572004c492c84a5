"""SIGKILL during ingest, repeatedly: every acknowledged item survives complete, and the index
agrees with the store after each restart."""
import os
import random
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from acg2vec_harness import Server  # noqa: E402
from packs import installed_packs, real_images  # noqa: E402

CYCLES = 10


class CrashRecoveryTest(unittest.TestCase):
    def test_sigkill_loses_no_acknowledged_item(self):
        rng = random.Random(1234)
        images = [open(p, "rb").read() for p in real_images()]
        models = installed_packs(["nsfw-mobilenet-v2"])
        srv = Server(models_dir=models)
        acked = set()
        counter = 0
        try:
            for cycle in range(CYCLES):
                srv.start()
                srv.wait_ready()
                # Everything acknowledged so far is present and complete, and the index agrees.
                for item in sorted(acked):
                    status, body = srv.json("GET", f"/v1/items/{item}")
                    self.assertEqual(status, 200, (cycle, item, body))
                    vectors = body["data"]["vectors"]
                    self.assertIn("signature", vectors, (cycle, item))
                    self.assertIn("nsfw-mobilenet-v2-embedding", vectors, (cycle, item))
                    self.assertIn("nsfw-mobilenet-v2", body["data"]["scores"], (cycle, item))
                status, stats = srv.json("GET", "/v1/stats")
                self.assertEqual(status, 200)
                spaces = stats["data"]["spaces"]
                self.assertEqual(stats["data"]["items"], spaces["signature"]["size"], (cycle, stats))
                self.assertEqual(stats["data"]["items"], spaces["nsfw-mobilenet-v2-embedding"]["size"], (cycle, stats))
                self.assertGreaterEqual(stats["data"]["items"], len(acked))
                for item in list(acked)[:3]:
                    status, body = srv.json("POST", "/v1/search", {"id": item, "k": 1000,
                                                                  "space": "nsfw-mobilenet-v2-embedding"})
                    self.assertEqual(status, 200, body)

                stop = threading.Event()

                def writer():
                    nonlocal counter
                    while not stop.is_set():
                        counter += 1
                        item = f"crash-{counter}"
                        img = images[counter % len(images)]
                        try:
                            status, _ = srv.multipart("/v1/items", files={"file": ("x.png", img, "image/png")},
                                                      fields={"id": item})
                        except Exception:  # noqa: BLE001 - the server died mid-request
                            return  # the server died mid-request: not acknowledged
                        if status == 201:
                            acked.add(item)

                t = threading.Thread(target=writer)
                t.start()
                time.sleep(rng.uniform(0.3, 1.5))
                srv.proc.send_signal(signal.SIGKILL)
                srv.proc.wait()
                stop.set()
                t.join()
                srv.log.close()
            self.assertGreater(len(acked), CYCLES, "the writer should have stored items between kills")
        finally:
            srv.stop()
            srv.tmp.cleanup()


if __name__ == "__main__":
    unittest.main(verbosity=2)
