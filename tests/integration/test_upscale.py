#!/usr/bin/python3
"""`acg2vec upscale` and POST /v1/upscale with the committed Real-CUGAN pro packs (real weights).

Formats: JPEG, PNG with alpha (alpha kept), GIF (first frame), grey PNG; outputs PNG/WebP/JPEG
with the right content type; bad inputs give typed errors (400/404/413/415 and CLI exit codes);
a decompression bomb is refused from its header; the output pixel limit answers 413; the server
and the CLI produce the same bytes for the same image.
"""
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import uuid

from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from acg2vec_harness import BIN, Server  # noqa: E402

SOURCE = os.environ.get("ACG2VEC_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
FORMATS = os.path.join(SOURCE, "tests", "data", "images", "formats")
BAD = os.path.join(SOURCE, "tests", "data", "images", "bad")


def read(path):
    with open(path, "rb") as f:
        return f.read()


def make_models_dir():
    d = tempfile.mkdtemp(prefix="acg2vec-upscale-models-")
    for v in ("conservative", "no-denoise"):
        os.symlink(os.path.join(SOURCE, "models", "realcugan-pro-" + v), os.path.join(d, "realcugan-pro-" + v))
    # The same weights with a small output limit (64x48 in -> 12288 px out > 10000).
    tiny = os.path.join(d, "tiny-limit")
    os.makedirs(tiny)
    src = os.path.join(SOURCE, "models", "realcugan-pro-conservative")
    for f in ("model.param", "model.bin"):
        os.symlink(os.path.join(src, f), os.path.join(tiny, f))
    with open(os.path.join(src, "manifest.json")) as f:
        m = json.load(f)
    m["name"] = "tiny-limit"
    m["aliases"] = []
    m["upscale"]["max_output_pixels"] = 10000
    with open(os.path.join(tiny, "manifest.json"), "w") as f:
        json.dump(m, f)
    return d


class UpscaleCliTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.models = make_models_dir()
        cls.tmp = tempfile.mkdtemp(prefix="acg2vec-upscale-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.models, ignore_errors=True)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def cli(self, *args):
        return subprocess.run([BIN, "--models-dir", self.models, "upscale", *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=600)

    def test_formats_and_alpha(self):
        for name, mode in (("card.jpg", "RGB"), ("card_rgba.png", "RGBA"), ("card_anim.gif", None),
                           ("card_grey.png", "RGB")):
            out = os.path.join(self.tmp, name + ".out.png")
            r = self.cli(os.path.join(FORMATS, name), "-o", out)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("->", r.stdout)
            src = Image.open(os.path.join(FORMATS, name))
            img = Image.open(out)
            self.assertEqual(img.size, (src.size[0] * 2, src.size[1] * 2), name)
            if mode:
                self.assertEqual(img.mode, mode, name)
        # The test card's top-right quadrant is transparent, its bottom-left at alpha 128.
        img = Image.open(os.path.join(self.tmp, "card_rgba.png.out.png"))
        w, h = img.size
        self.assertEqual(img.getpixel((w * 3 // 4, h // 4))[3], 0)
        self.assertAlmostEqual(img.getpixel((w // 4, h * 3 // 4))[3], 128, delta=1)
        self.assertEqual(img.getpixel((w // 4, h // 4))[3], 255)

    def test_memory_budget_changes_the_cut_not_the_pixels(self):
        # Tiles of 32 with kept hand-overs (the default budget) and with none kept (--memory-budget 0,
        # every SE pass recomputes each tile) give the same image; the CLI line says how it was cut.
        src = os.path.join(FORMATS, "card.png")
        kept, recomputed = os.path.join(self.tmp, "kept.png"), os.path.join(self.tmp, "recomputed.png")
        r1 = self.cli(src, "-o", kept, "--tile", "32")
        r2 = self.cli(src, "-o", recomputed, "--tile", "32", "--memory-budget", "0")
        self.assertEqual(r1.returncode, 0, r1.stderr)
        self.assertEqual(r2.returncode, 0, r2.stderr)
        self.assertRegex(r1.stdout, r"[1-9]\d* resumed")
        self.assertRegex(r2.stdout, r"\b0 resumed")
        self.assertEqual(list(Image.open(kept).getdata()), list(Image.open(recomputed).getdata()))
        r = self.cli(src, "-o", os.path.join(self.tmp, "bad.png"), "--memory-budget", "-1")
        self.assertNotEqual(r.returncode, 0)

    def test_folder_with_output_dir_and_webp(self):
        folder = os.path.join(self.tmp, "in")
        os.makedirs(folder, exist_ok=True)
        for name in ("card.png", "card_lossy.webp"):
            shutil.copy(os.path.join(FORMATS, name), folder)
        with open(os.path.join(folder, "notes.txt"), "w") as f:
            f.write("not an image")
        out = os.path.join(self.tmp, "out")
        r = self.cli(folder, "--output-dir", out, "--format", "webp", "--model", "cugan-pro-no-denoise-up2x")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(sorted(os.listdir(out)), ["card.webp", "card_lossy.webp"])
        self.assertEqual(Image.open(os.path.join(out, "card.webp")).format, "WEBP")
        # Existing outputs are not replaced without --overwrite.
        r = self.cli(os.path.join(folder, "card.png"), "-o", os.path.join(out, "card.webp"))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("exists", r.stderr)

    def test_bad_inputs(self):
        r = self.cli(os.path.join(self.tmp, "missing.png"))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("does not exist", r.stderr)
        notimg = os.path.join(self.tmp, "x.png")
        with open(notimg, "wb") as f:
            f.write(b"plain text, not a picture")
        r = self.cli(notimg, "-o", os.path.join(self.tmp, "y.png"))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("not a supported image", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        r = self.cli(os.path.join(BAD, "bomb.png"), "-o", os.path.join(self.tmp, "bomb_out.png"))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("limit", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "bomb_out.png")))
        r = self.cli(os.path.join(FORMATS, "card.png"), "--format", "gif", "-o", os.path.join(self.tmp, "z.gif"))
        self.assertNotEqual(r.returncode, 0)
        r = self.cli(os.path.join(FORMATS, "card.png"), "--model", "nope")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("no model 'nope'", r.stderr)
        r = self.cli(os.path.join(FORMATS, "card.png"), "--model", "tiny-limit", "-o", os.path.join(self.tmp, "t.png"))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("output limit", r.stderr)


def multipart(fields, files):
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
                     + value.encode() + b"\r\n")
    for name, (filename, content) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     f'Content-Type: application/octet-stream\r\n\r\n'.encode() + content + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), {
        "Content-Type": f"multipart/form-data; boundary={boundary}"}


class UpscaleHttpTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.models = make_models_dir()
        cls.srv = Server(models_dir=cls.models)
        cls.srv.start()
        cls.srv.wait_ready()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        shutil.rmtree(cls.models, ignore_errors=True)

    def post(self, fields=None, files=None):
        body, headers = multipart(fields or {}, files or {})
        return self.srv.request("POST", "/v1/upscale", body, headers)

    def test_image_bytes_and_content_types(self):
        png = read(os.path.join(FORMATS, "card_rgba.png"))
        status, headers, data = self.post(files={"image": ("card.png", png)})
        self.assertEqual(status, 200, data[:300])
        self.assertEqual(headers["Content-Type"], "image/png")
        self.assertEqual(headers["X-Acg2vec-Model"], "realcugan-pro-conservative")
        img = Image.open(io.BytesIO(data))
        self.assertEqual((img.size, img.mode), ((128, 96), "RGBA"))
        for fmt, ctype, pil in (("webp", "image/webp", "WEBP"), ("jpg", "image/jpeg", "JPEG")):
            status, headers, data = self.post({"format": fmt, "model": "realcugan-pro-no-denoise"},
                                              {"image": ("card.png", png)})
            self.assertEqual(status, 200, data[:300])
            self.assertEqual(headers["Content-Type"], ctype)
            self.assertEqual(Image.open(io.BytesIO(data)).format, pil)
        for name in ("card.jpg", "card_anim.gif", "card_grey.png"):
            status, _, data = self.post(files={"image": (name, read(os.path.join(FORMATS, name)))})
            self.assertEqual(status, 200, name)
            self.assertEqual(Image.open(io.BytesIO(data)).size, (128, 96), name)

    def test_same_bytes_as_the_cli(self):
        src = os.path.join(FORMATS, "card_rgba.png")
        status, _, data = self.post(files={"image": ("card.png", read(src))})
        self.assertEqual(status, 200)
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "o.png")
            r = subprocess.run([BIN, "--models-dir", self.models, "upscale", src, "-o", out], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, timeout=600)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(read(out), data)

    def test_typed_errors(self):
        png = read(os.path.join(FORMATS, "card.png"))
        cases = [
            ({"format": "png"}, {}, 400),                                          # no image part
            ({"model": "nope"}, {"image": ("a.png", png)}, 404),                    # unknown model
            ({"format": "gif"}, {"image": ("a.png", png)}, 400),                    # unknown output format
            ({}, {"image": ("a.png", b"not an image at all")}, 415),                # not an image
            ({}, {"image": ("bomb.png", read(os.path.join(BAD, "bomb.png")))}, 413),  # huge declared size
            ({"model": "tiny-limit"}, {"image": ("a.png", png)}, 413),              # output over the limit
        ]
        for fields, files, want in cases:
            status, headers, data = self.post(fields, files)
            self.assertEqual(status, want, (fields, list(files), data[:200]))
            body = json.loads(data)
            self.assertIn("message", body)
            self.assertIn("error", body)


if __name__ == "__main__":
    unittest.main(verbosity=2)
