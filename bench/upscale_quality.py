#!/usr/bin/python3
"""Quality of the Real-CUGAN packs against plain interpolation, on anime images.

Each source image gives one fixed-size crop (the most detailed fully opaque window on a coarse
grid; transparent sprites are composited over white only when no fully opaque window exists).
The crop is the ground truth. It is downscaled by 2 with PIL's bicubic filter (which, when
shrinking, widens its support: an antialiased bicubic), then brought back to the crop size with
  - `acg2vec upscale --model PACK` for each Real-CUGAN pack (one process per pack, PNG output),
  - PIL bicubic and PIL Lanczos (Image.resize).
Metrics, all on 8-bit values, no border shaved:
  - PSNR on RGB: 10 log10(255^2 / MSE), MSE over all pixels and the three channels;
  - PSNR on Y: the same on BT.601 luma Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 (floats);
  - SSIM on Y: Wang et al. 2004, 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, L = 255,
    mean of the SSIM map over the window positions that lie wholly inside the image.
The metric code checks itself first (identical images: SSIM 1, PSNR infinite; a constant +1
offset: PSNR 48.13 dB).

    /usr/bin/python3 bench/upscale_quality.py [--acg2vec build/release/acg2vec]
        [--models-dir var/models] [--crop 256] [--work /tmp/acg2vec-upscale-quality] IMAGE...

Prints a Markdown table per method (means) and the per-image figures, and writes them as JSON
to WORK/quality.json.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time

import numpy as np
from PIL import Image

PACKS = ["realcugan-pro-conservative", "realcugan-pro-no-denoise", "realcugan-pro-denoise3x"]


# ---- metrics -----------------------------------------------------------------------------------

def luma(rgb):
    """BT.601 Y (studio range) of a uint8 [H, W, 3] image, as float64."""
    x = rgb.astype(np.float64)
    return 16.0 + (65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]) / 255.0


def psnr(a, b, peak=255.0):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def gaussian_window(size=11, sigma=1.5):
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(r * r) / (2.0 * sigma * sigma))
    return g / g.sum()


def filter_valid(img, g):
    """Separable 2-D correlation with the 1-D kernel g, 'valid' positions only."""
    k = len(g)
    h, w = img.shape
    rows = sum(g[i] * img[i:h - k + 1 + i, :] for i in range(k))
    return sum(g[j] * rows[:, j:w - k + 1 + j] for j in range(k))


def ssim(a, b, peak=255.0, k1=0.01, k2=0.03):
    """Mean SSIM of two single-channel images (Wang, Bovik, Sheikh, Simoncelli 2004)."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    g = gaussian_window()
    c1, c2 = (k1 * peak) ** 2, (k2 * peak) ** 2
    mu_a, mu_b = filter_valid(a, g), filter_valid(b, g)
    var_a = filter_valid(a * a, g) - mu_a * mu_a
    var_b = filter_valid(b * b, g) - mu_b * mu_b
    cov = filter_valid(a * b, g) - mu_a * mu_b
    m = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(m.mean())


def self_check():
    rng = np.random.default_rng(7)
    x = rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)
    assert abs(ssim(luma(x), luma(x)) - 1.0) < 1e-12, "SSIM of identical images must be 1"
    assert psnr(x, x) == math.inf, "PSNR of identical images must be infinite"
    y = x.astype(np.int32) + 1
    assert abs(psnr(x, y) - 20 * math.log10(255)) < 1e-9, "PSNR of a +1 offset must be 48.13 dB"
    # More noise, lower SSIM; a flat image has SSIM 1 with itself through the constants alone.
    def noisy(amp):
        return np.clip(x.astype(np.int32) + rng.integers(-amp, amp + 1, x.shape), 0, 255).astype(np.uint8)
    s10, s60 = ssim(luma(x), luma(noisy(10))), ssim(luma(x), luma(noisy(60)))
    assert 1.0 > s10 > s60, (s10, s60)
    flat = np.full((32, 32), 100.0)
    assert abs(ssim(flat, flat) - 1.0) < 1e-12
    assert abs(gaussian_window().sum() - 1.0) < 1e-12


# ---- images ------------------------------------------------------------------------------------

def pick_crop(path, size):
    """(name, uint8 [size, size, 3] crop, box, note)."""
    im = Image.open(path)
    im.load()
    if im.mode in ("RGBA", "LA", "P"):
        im = im.convert("RGBA")
        alpha = np.asarray(im)[..., 3]
    else:
        alpha = None
    rgb = np.asarray(im.convert("RGB")).astype(np.float64)
    h, w = rgb.shape[:2]
    if h < size or w < size:
        return None
    grad = np.zeros((h, w))
    grad[:, 1:] += np.abs(np.diff(rgb, axis=1)).sum(axis=2)
    grad[1:, :] += np.abs(np.diff(rgb, axis=0)).sum(axis=2)
    step = 16
    best = None
    for top in range(0, h - size + 1, step):
        for left in range(0, w - size + 1, step):
            opaque = alpha is None or alpha[top:top + size, left:left + size].min() == 255
            score = (opaque, grad[top:top + size, left:left + size].mean())
            if best is None or score > best[0]:
                best = (score, (left, top, left + size, top + size))
    (opaque, _), box = best
    note = ""
    if not opaque:
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im)
        note = "composited over white"
    crop = np.asarray(im.convert("RGB").crop(box))
    return os.path.splitext(os.path.basename(path))[0], crop, box, note


# ---- run ---------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="+")
    ap.add_argument("--acg2vec", default="build/release/acg2vec")
    ap.add_argument("--models-dir", default="var/models")
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--work", default="/tmp/acg2vec-upscale-quality")
    a = ap.parse_args()
    self_check()
    print("metric self-check: identical -> SSIM 1, PSNR inf; +1 offset -> PSNR 48.13 dB: ok", flush=True)

    shutil.rmtree(a.work, ignore_errors=True)
    lr_dir = os.path.join(a.work, "lr")
    os.makedirs(lr_dir)
    cases = []
    for path in a.images:
        c = pick_crop(path, a.crop)
        if c is None:
            print(f"skipped {path}: smaller than {a.crop}x{a.crop}", file=sys.stderr)
            continue
        name, hr, box, note = c
        lr = Image.fromarray(hr).resize((a.crop // 2, a.crop // 2), Image.BICUBIC)
        lr.save(os.path.join(lr_dir, name + ".png"))
        cases.append({"name": name, "source": path, "box": list(box), "note": note, "hr": hr, "lr": lr})

    outputs = {}  # method -> name -> uint8 [H, W, 3]
    for interp, flt in (("PIL bicubic", Image.BICUBIC), ("PIL Lanczos", Image.LANCZOS)):
        outputs[interp] = {c["name"]: np.asarray(c["lr"].resize((a.crop, a.crop), flt)) for c in cases}
    seconds = {}
    for pack in PACKS:
        out_dir = os.path.join(a.work, pack)
        os.makedirs(out_dir)
        lr_files = [os.path.join(lr_dir, c["name"] + ".png") for c in cases]
        cmd = [a.acg2vec, "--models-dir", a.models_dir, "upscale", *lr_files, "--output-dir", out_dir,
               "--model", pack, "--format", "png"]
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        seconds[pack] = time.perf_counter() - t
        outputs[pack] = {c["name"]: np.asarray(Image.open(os.path.join(out_dir, c["name"] + ".png")).convert("RGB"))
                         for c in cases}

    results = {}
    for method, by_name in outputs.items():
        rows = []
        for c in cases:
            sr = by_name[c["name"]]
            assert sr.shape == c["hr"].shape, (method, c["name"], sr.shape)
            rows.append({"image": c["name"], "psnr_rgb": psnr(c["hr"], sr), "psnr_y": psnr(luma(c["hr"]), luma(sr)),
                         "ssim_y": ssim(luma(c["hr"]), luma(sr))})
        results[method] = rows

    n = len(cases)
    print(f"\n{n} crops of {a.crop}x{a.crop}, downscaled to {a.crop // 2}x{a.crop // 2} (PIL bicubic), upscaled 2x\n")
    print("| Method | PSNR RGB (dB) | PSNR Y (dB) | SSIM Y |")
    print("|---|---|---|---|")
    for method, rows in results.items():
        mean = lambda k: sum(r[k] for r in rows) / len(rows)  # noqa: E731
        print(f"| {method} | {mean('psnr_rgb'):.2f} | {mean('psnr_y'):.2f} | {mean('ssim_y'):.4f} |")
    methods = list(results)
    print("\nPer image, PSNR Y (dB) / SSIM Y:\n")
    print("| Image (crop box) | " + " | ".join(methods) + " |")
    print("|---|" + "---|" * len(methods))
    for i, c in enumerate(cases):
        label = f"{c['name']} {tuple(c['box'])}" + (f", {c['note']}" if c["note"] else "")
        cells = [f"{results[m][i]['psnr_y']:.2f} / {results[m][i]['ssim_y']:.3f}" for m in methods]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("\nacg2vec wall time per pack (process start, load, %d upscales, PNG I/O): %s" %
          (n, ", ".join(f"{p} {s:.1f}s" for p, s in seconds.items())))
    with open(os.path.join(a.work, "quality.json"), "w") as f:
        json.dump({"crop": a.crop, "cases": [{k: c[k] for k in ("name", "source", "box", "note")} for c in cases],
                   "results": results, "acg2vec_seconds": seconds}, f, indent=1)


if __name__ == "__main__":
    main()
