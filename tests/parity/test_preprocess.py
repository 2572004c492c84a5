#!/usr/bin/python3
"""Parity of src/image (decode, preprocess, perceptual signature) against independent references.

Our side runs in the gtest binary (ImageParityDump.DISABLED_WriteOutputs, run with --gtest_also_run_disabled_tests, see tests/unit/image_parity_dump_test.cpp):
it decodes each image and writes the decoded RGB pixels and the preprocess() output. The references get
the SAME decoded pixels, so only the resampling and normalisation are compared:

  mode                            reference                                              tolerance
  stretch_bilinear_tf             torch interpolate(bilinear, align_corners=False,       1e-5 (values / 255)
                                  antialias=False) in float64, then / 255
  stretch_bilinear_align_corners  torch interpolate(bilinear, align_corners=True) in     1e-5 (values / 255)
                                  float64 on x / 255 (nsfwjs order)
  (both, torch in float32)        as above with float32 tensors: torch then computes     1e-4 (values / 255)
                                  source coordinates in float, whose rounding moves
                                  a tap weight by up to ~1 ulp of the coordinate
  (both, TensorFlow.js)           tf.image.resizeBilinear on float32 pixels (cpu         1e-5 (values / 255)
                                  backend; tools/tfjs_resize_reference.js), half-pixel
                                  centres for _tf, alignCorners for _align_corners
  clip_center_crop_bicubic        PIL crop + Image.resize(BICUBIC), / 255                1/255 before mean/std
                                  then CLIP mean/std                                     (observed: 0), 1e-5 after
  pad_square_bicubic              SmilingWolf's WD v3 app in PIL: white RGB square of    1/255 on 0..255 / 255
  (WD v3 reference)               max(H, W), paste at floor offsets, Image.resize(       (observed: 0)
                                  BICUBIC) unless already that size, float32, RGB→BGR
  pad_square_area                 numpy exact-coverage box filter (float64) on the       1e-3 on 0..255 values
                                  padded square; torch interpolate(mode='area') where
                                  the ratio is an integer (where both agree exactly)
  decode (PNG/JPEG real files)    PIL decode, alpha composited on white in float         PNG 1 level, JPEG 1 level
  signature                       numpy: border trim, area 32x32, BT.601 YCbCr,          1e-5 per component
                                  DCT-II as matrices
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

SOURCE = os.environ.get("ACG2VEC_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
TEST_BIN = os.environ.get("ACG2VEC_TEST_BIN", os.path.join(SOURCE, "build", "release", "tests", "acg2vec_tests"))
BUILD = os.environ.get("ACG2VEC_BUILD_DIR", os.path.join(SOURCE, "build", "release"))
IMAGES = os.path.join(SOURCE, "tests", "data", "images")

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)

TOL_BILINEAR = 1e-5
TOL_BILINEAR_F32 = 1e-4
TOL_BILINEAR_TFJS = 1e-5
TOL_CLIP_PRE = 1.0 / 255 + 1e-7
TOL_CLIP_NORM = 1e-5
TOL_AREA = 1e-3
TOL_DECODE_PNG = 1
TOL_DECODE_JPEG = 1
TOL_SIGNATURE = 1e-5

failures = []


def check(name, ok, detail):
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    if not ok:
        failures.append(name)


def synthetic_images(work):
    """Noise images of awkward sizes (noise is the hardest case for a resampler)."""
    rng = np.random.default_rng(20261125)
    paths = []
    for w, h in ((1, 1), (3, 2), (7, 5), (37, 23), (300, 200), (224, 224), (100, 500), (513, 511), (1000, 37)):
        a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        p = os.path.join(work, f"noise_{w}x{h}.png")
        Image.fromarray(a, "RGB").save(p)
        paths.append(p)
    return paths


def area_matrix(n_in, n_out):
    """A[i, j] = |[j, j+1) ∩ [i s, (i+1) s)| / s with s = n_in / n_out (float64)."""
    s = n_in / n_out
    lo = np.arange(n_out)[:, None] * s
    hi = lo + s
    j = np.arange(n_in)[None, :]
    return np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0, None) / s


def area_reference(rgb, w, h):
    a = rgb.astype(np.float64)
    ay = area_matrix(a.shape[0], h)
    ax = area_matrix(a.shape[1], w)
    rows = np.tensordot(ay, a, axes=([1], [0]))  # (h, in_w, 3): vertical pass
    cols = np.tensordot(rows, ax, axes=([1], [1]))  # (h, 3, w): horizontal pass
    return np.transpose(cols, (0, 2, 1))


def pad_square(rgb, fill):
    h, w, _ = rgb.shape
    side = max(h, w)
    out = np.full((side, side, 3), fill, np.uint8)
    top, left = (side - h) // 2, (side - w) // 2
    out[top:top + h, left:left + w] = rgb
    return out


def torch_resize(rgb_float, h, w, **kw):
    t = torch.from_numpy(np.ascontiguousarray(rgb_float)).permute(2, 0, 1)[None]
    return F.interpolate(t, size=(h, w), **kw)[0].permute(1, 2, 0).numpy()


def dct_matrix(n):
    m = np.zeros((n, n))
    for u in range(n):
        c = np.sqrt(1.0 / n) if u == 0 else np.sqrt(2.0 / n)
        m[u] = c * np.cos(np.pi * (2 * np.arange(n) + 1) * u / (2 * n))
    return m


def trim_flat_borders(rgb, flatness=32):
    """Peel rows/columns whose every channel varies by <= flatness, until stable (>= 1/4 of each side)."""
    h, w, _ = rgb.shape
    y0, y1, x0, x1 = 0, h, 0, w
    min_h, min_w = max(1, h // 4), max(1, w // 4)

    def flat(line):
        return int((line.max(axis=0).astype(int) - line.min(axis=0)).max()) <= flatness

    for _ in range(8):
        before = (y0, y1, x0, x1)
        while y1 - y0 > min_h and flat(rgb[y0, x0:x1]):
            y0 += 1
        while y1 - y0 > min_h and flat(rgb[y1 - 1, x0:x1]):
            y1 -= 1
        while x1 - x0 > min_w and flat(rgb[y0:y1, x0]):
            x0 += 1
        while x1 - x0 > min_w and flat(rgb[y0:y1, x1 - 1]):
            x1 -= 1
        if (y0, y1, x0, x1) == before:
            break
    return rgb[y0:y1, x0:x1]


def signature_reference(rgb):
    small = area_reference(trim_flat_borders(rgb), 32, 32) / 255.0
    r, g, b = small[..., 0], small[..., 1], small[..., 2]
    planes = [0.299 * r + 0.587 * g + 0.114 * b,
              -0.168736 * r - 0.331264 * g + 0.5 * b,
              0.5 * r - 0.418688 * g - 0.081312 * b]
    d = dct_matrix(32)
    coef = [d @ p @ d.T for p in planes]  # coef[v, u]: v vertical, u horizontal frequency
    sig = list(coef[0][:8, :8].reshape(-1)[1:])
    for c in coef[1:]:
        sig += list(0.5 * c[:3, :3].reshape(-1))
    sig = np.array(sig)
    return sig / np.linalg.norm(sig)


def pil_decode_on_white(path):
    im = Image.open(path)
    im.load()
    if im.mode in ("RGBA", "LA", "P"):
        rgba = np.asarray(im.convert("RGBA"), np.float64)
        a = rgba[..., 3:4] / 255.0
        return np.rint(rgba[..., :3] * a + 255.0 * (1 - a)).astype(np.int32)
    return np.asarray(im.convert("RGB"), np.int32)


def main():
    if not os.path.exists(TEST_BIN):
        print(f"test binary {TEST_BIN} not found", file=sys.stderr)
        return 1
    os.makedirs(os.path.join(BUILD, "tests", "work"), exist_ok=True)
    work = tempfile.mkdtemp(prefix="image_parity_", dir=os.path.join(BUILD, "tests", "work"))
    real = sorted(os.path.join(IMAGES, "real", f) for f in os.listdir(os.path.join(IMAGES, "real")))
    images = real + [os.path.join(IMAGES, "formats", "card_rgba.png")] + synthetic_images(work)

    specs = {
        "tf512": {"size": [512, 512], "resize": "stretch_bilinear_tf", "scale": 255},
        "tf224": {"size": 224, "resize": "stretch_bilinear_tf", "scale": 255},
        "tf_odd": {"size": [100, 150], "resize": "stretch_bilinear_tf", "scale": 255},
        "nsfw": {"size": 224, "resize": "stretch_bilinear_align_corners", "scale": 255},
        "nsfw_odd": {"size": [33, 70], "resize": "stretch_bilinear_align_corners", "scale": 255},
        "clip_pre": {"size": 224, "resize": "clip_center_crop_bicubic", "mean": 0, "std": 1},
        "clip_pre336": {"size": 336, "resize": "clip_center_crop_bicubic", "mean": 0, "std": 1},
        "clip": {"size": 224, "resize": "clip_center_crop_bicubic"},
        "wd448": {"size": 448, "resize": "pad_square_area", "channels": "BGR", "scale": 1},
        "wd_odd": {"size": [61, 61], "resize": "pad_square_area", "channels": "BGR", "scale": 1, "pad_fill": 0},
        "wd32": {"size": 32, "resize": "pad_square_area", "channels": "BGR", "scale": 1},
        "wdv3": {"size": 448, "resize": "pad_square_bicubic", "channels": "BGR", "scale": 1, "pad": 255},
        "wdv3_small": {"size": 64, "resize": "pad_square_bicubic", "channels": "BGR", "scale": 1, "pad": 255},
    }
    jobs = []
    for i, path in enumerate(images):
        for key, spec in specs.items():
            jobs.append({"name": f"{i}_{key}", "image": path, "input": spec, "signature": key == "tf224"})
    with open(os.path.join(work, "jobs.json"), "w") as f:
        json.dump({"out_dir": work, "jobs": jobs}, f)
    env = dict(os.environ, ACG2VEC_IMAGE_PARITY_JOBS=os.path.join(work, "jobs.json"))
    proc = subprocess.run([TEST_BIN, "--gtest_also_run_disabled_tests", "--gtest_filter=ImageParityDump.DISABLED_WriteOutputs"], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        print(proc.stdout)
        return 1
    with open(os.path.join(work, "results.json")) as f:
        results = json.load(f)

    # TensorFlow.js on the same decoded pixels: the implementation the _tf mode is named after.
    if shutil.which("node") is None or not os.path.isdir(os.path.join(SOURCE, "tools", "node_modules", "@tensorflow", "tfjs")):
        print("FAIL: node and tools/node_modules/@tensorflow/tfjs are needed (scripts/setup.sh)")
        return 1
    tfjs_keys = {"tf512": ((512, 512), False, True), "tf224": ((224, 224), False, True), "tf_odd": ((100, 150), False, True),
                 "nsfw": ((224, 224), True, False), "nsfw_odd": ((33, 70), True, False)}
    tfjs_jobs = []
    for i in range(len(images)):
        h, w, _ = results[f"{i}_tf512"]["decoded"]
        for key, (size, align, half) in tfjs_keys.items():
            tfjs_jobs.append({"rgb": os.path.join(work, f"{i}_tf512.rgb"), "height": h, "width": w, "size": list(size),
                              "align_corners": align, "half_pixel_centers": half,
                              "out": os.path.join(work, f"{i}_{key}.tfjs.f32")})
    with open(os.path.join(work, "tfjs_jobs.json"), "w") as f:
        json.dump({"jobs": tfjs_jobs}, f)
    tfjs = subprocess.run(["node", os.path.join(SOURCE, "tools", "tfjs_resize_reference.js"),
                           os.path.join(work, "tfjs_jobs.json")], cwd=os.path.join(SOURCE, "tools"),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(tfjs.stdout.strip())
    if tfjs.returncode != 0:
        print("FAIL: tools/tfjs_resize_reference.js failed")
        return 1

    worst = {}

    def record(kind, value):
        worst[kind] = max(worst.get(kind, 0.0), float(value))

    for i, path in enumerate(images):
        base = os.path.basename(path)
        r0 = results[f"{i}_tf512"]
        h, w, _ = r0["decoded"]
        rgb = np.fromfile(os.path.join(work, f"{i}_tf512.rgb"), np.uint8).reshape(h, w, 3)

        # Decoding against PIL (real files only; the noise PNGs are ours to begin with).
        if path in real:
            ref = pil_decode_on_white(path)
            diff = np.abs(ref - rgb.astype(np.int32)).max()
            tol = TOL_DECODE_JPEG if path.endswith(".jpg") else TOL_DECODE_PNG
            record("decode", diff)
            check(f"decode {base}", diff <= tol, f"max diff {diff} levels (tol {tol})")

        def ours(key):
            shape = results[f"{i}_{key}"]["shape"]
            return np.fromfile(os.path.join(work, f"{i}_{key}.f32"), np.float32).reshape(shape)[0]

        for dtype, tol, label in ((np.float64, TOL_BILINEAR, ""), (np.float32, TOL_BILINEAR_F32, " (torch float32)")):
            x = rgb.astype(dtype)
            for key, (oh, ow) in (("tf512", (512, 512)), ("tf224", (224, 224)), ("tf_odd", (100, 150))):
                ref = torch_resize(x, oh, ow, mode="bilinear", align_corners=False, antialias=False) / 255.0
                diff = np.abs(ours(key) - ref).max()
                record("stretch_bilinear_tf" + label, diff)
                check(f"{key}{label} {base}", diff <= tol, f"max diff {diff:.2e}")

            for key, (oh, ow) in (("nsfw", (224, 224)), ("nsfw_odd", (33, 70))):
                ref = torch_resize(x / 255.0, oh, ow, mode="bilinear", align_corners=True)
                diff = np.abs(ours(key) - ref).max()
                record("stretch_bilinear_align_corners" + label, diff)
                check(f"{key}{label} {base}", diff <= tol, f"max diff {diff:.2e}")

        for key, ((oh, ow), align, _) in tfjs_keys.items():
            ref = np.fromfile(os.path.join(work, f"{i}_{key}.tfjs.f32"), np.float32).reshape(oh, ow, 3)
            diff = np.abs(ours(key) - ref).max()
            kind = "stretch_bilinear_align_corners" if align else "stretch_bilinear_tf"
            record(kind + " (tfjs float32)", diff)
            check(f"{key} (tfjs) {base}", diff <= TOL_BILINEAR_TFJS, f"max diff {diff:.2e}")

        c = min(h, w)
        top, left = (h - c) // 2, (w - c) // 2
        cropped = Image.fromarray(rgb, "RGB").crop((left, top, left + c, top + c))
        for key, size in (("clip_pre", 224), ("clip_pre336", 336)):
            pil = np.asarray(cropped.resize((size, size), Image.BICUBIC), np.float32) / 255.0
            got = ours(key).transpose(1, 2, 0)  # NCHW -> HWC
            diff = np.abs(got - pil).max()
            record("clip_center_crop_bicubic (pre-normalisation)", diff)
            check(f"{key} {base}", diff <= TOL_CLIP_PRE, f"max diff {diff:.2e} ({diff * 255:.2f} levels)")
            if key == "clip_pre":
                ref = ((pil - CLIP_MEAN) / CLIP_STD).transpose(2, 0, 1)
                diff = np.abs(ours("clip") - ref).max()
                record("clip_center_crop_bicubic (normalised, vs PIL)", diff)
                check(f"clip {base}", diff <= TOL_CLIP_NORM + TOL_CLIP_PRE / CLIP_STD.min(), f"max diff {diff:.2e}")
                # Same pixels, so normalisation alone must agree to float rounding.
                mine = ((got - CLIP_MEAN) / CLIP_STD).transpose(2, 0, 1)
                diff = np.abs(ours("clip") - mine).max()
                record("clip normalisation", diff)
                check(f"clip norm {base}", diff <= TOL_CLIP_NORM, f"max diff {diff:.2e}")

        for key, size, fill in (("wd448", 448, 255), ("wd_odd", 61, 0), ("wd32", 32, 255)):
            padded = pad_square(rgb, fill)
            ref = area_reference(padded, size, size)[..., ::-1]  # BGR
            diff = np.abs(ours(key) - ref).max()
            record("pad_square_area", diff)
            check(f"{key} {base}", diff <= TOL_AREA, f"max diff {diff:.2e}")
            if padded.shape[0] % size == 0:
                tref = torch_resize(padded.astype(np.float32), size, size, mode="area")[..., ::-1]
                diff = np.abs(ours(key) - tref).max()
                record("pad_square_area vs torch area (integer ratio)", diff)
                check(f"{key} torch-area {base}", diff <= TOL_AREA, f"max diff {diff:.2e}")

        # SmilingWolf's wd-tagger app (prepare_image), step by step in PIL on the same decoded pixels.
        for key, size in (("wdv3", 448), ("wdv3_small", 64)):
            side = max(h, w)
            canvas = Image.new("RGB", (side, side), (255, 255, 255))
            canvas.paste(Image.fromarray(rgb, "RGB"), ((side - w) // 2, (side - h) // 2))
            if side != size:
                canvas = canvas.resize((size, size), Image.BICUBIC)
            ref = np.asarray(canvas, np.float32)[:, :, ::-1]
            diff = np.abs(ours(key) - ref).max()
            record("pad_square_bicubic (WD v3 reference app)", diff / 255.0)
            check(f"{key} {base}", diff / 255.0 <= TOL_CLIP_PRE, f"max diff {diff:.2f} levels")

        sig = np.fromfile(os.path.join(work, f"{i}_tf224.sig"), np.float32)
        ref = signature_reference(rgb)
        diff = np.abs(sig - ref).max()
        record("signature", diff)
        check(f"signature {base}", diff <= TOL_SIGNATURE, f"max diff {diff:.2e}")

    print("\nworst differences:")
    for k, v in worst.items():
        print(f"  {k}: {v:.3g}")
    if failures:
        print(f"{len(failures)} checks failed: {failures[:10]}")
        return 1
    print("all preprocess parity checks passed")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
