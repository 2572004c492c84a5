"""How much JPEG decoding moves the real nsfwjs MobileNetV2 probabilities: acg2vec's served
/v1/classify (libvips/libjpeg decoding) against nsfwjs' pipeline in node (jpeg-js decoding, tfjs
preprocessing and the same layers-model) on JPEG copies of real images.

With identical pixels the two agree to 1e-4 (tests/parity/test_keras_parity.py); here only the
decoders differ. Measured: typical differences of 0.01-0.05 in probability, one sensitive image
(demo_concert1, 256 px) moving by ~0.34. Checks:
  - the median over 10 images of max|p_ours - p_nsfwjs| <= 0.05 and the top class agrees on >= 8/10;
  - the differences are the decoders' alone: nsfwjs fed the pixels libjpeg decodes (PIL, bit-equal to
    acg2vec's decoder) matches acg2vec to <= 1e-5 on every image (measured 2.4e-7)."""
import io
import json
import os
import subprocess
import sys
import tempfile
import unittest

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.environ.get("ACG2VEC_SOURCE_DIR", os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, os.path.join(SOURCE, "tests", "integration"))
from acg2vec_harness import Server  # noqa: E402
from packs import installed_packs, real_images  # noqa: E402

LABELS = ["Drawing", "Hentai", "Neutral", "Porn", "Sexy"]
MEDIAN_BOUND = 0.05
SAME_PIXELS_BOUND = 1e-5  # measured 2.4e-7 (KERAS_PARITY.md); the loaders themselves are held to 1e-4


class NsfwJpegDecoders(unittest.TestCase):
    def test_served_probabilities_against_nsfwjs_decoding(self):
        models = installed_packs(["nsfw-mobilenet-v2"])
        pack = os.path.join(models, "nsfw-mobilenet-v2")
        with tempfile.TemporaryDirectory() as d:
            files, raws = [], []
            for p in real_images()[:10]:
                img = Image.open(p).convert("RGBA")
                bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
                out = os.path.join(d, os.path.basename(p)[:-4] + ".jpg")
                Image.alpha_composite(bg, img).convert("RGB").save(out, "JPEG", quality=90)
                files.append(out)
                decoded = Image.open(out).convert("RGB")
                raw = os.path.join(d, f"{os.path.basename(p)[:-4]}.{decoded.width}x{decoded.height}.rgb")
                with open(raw, "wb") as fh:
                    fh.write(decoded.tobytes())
                raws.append(raw)
            ref = json.loads(subprocess.run(
                ["node", os.path.join(SOURCE, "tools", "nsfw_jpeg_reference.js"), pack, "224", *files, *raws],
                check=True, capture_output=True, text=True, cwd=os.path.join(SOURCE, "tools")).stdout)
            srv = Server(models_dir=models)
            srv.start()
            try:
                srv.wait_ready()
                worst, top_agree, diffs, same_pixels = 0.0, 0, [], 0.0
                for f, raw in zip(files, raws):
                    with open(f, "rb") as fh:
                        status, body = srv.multipart("/v1/classify", files={"image": ("x.jpg", fh.read(), "image/jpeg")},
                                                     fields={"model": "nsfw-mobilenet-v2"})
                    self.assertEqual(status, 200, body)
                    ours = {c["name"]: c["score"] for c in body["data"]["classes"]}
                    theirs = dict(zip(LABELS, ref[os.path.basename(f)]))
                    diff = max(abs(ours[k] - theirs[k]) for k in LABELS)
                    worst = max(worst, diff)
                    diffs.append(diff)
                    libjpeg = dict(zip(LABELS, ref[os.path.basename(raw)]))
                    same_pixels = max(same_pixels, max(abs(ours[k] - libjpeg[k]) for k in LABELS))
                    top_agree += max(ours, key=ours.get) == max(theirs, key=theirs.get)
                    print(f"{os.path.basename(f)}: max |p_ours - p_nsfwjs| = {diff:.4f}")
                diffs.sort()
                median = (diffs[4] + diffs[5]) / 2
                print(f"median {median:.4f}, worst {worst:.4f} over {len(files)} JPEGs; top class agrees on "
                      f"{top_agree}/{len(files)}; with libjpeg's pixels on both sides: {same_pixels:.2e}")
                self.assertLessEqual(median, MEDIAN_BOUND)
                self.assertGreaterEqual(top_agree, 8)
                self.assertLessEqual(same_pixels, SAME_PIXELS_BOUND)
            finally:
                srv.stop()
                srv.tmp.cleanup()


if __name__ == "__main__":
    unittest.main(verbosity=2)
