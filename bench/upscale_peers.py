#!/usr/bin/python3
"""Real-CUGAN 2x speed: acg2vec vs PyTorch eager vs ONNX Runtime, in one run, on the same inputs.

1. Export: the upstream architecture in tools/realcugan_reference.py, loaded with the pack's ncnn
   weights, is exported with torch.onnx.export (opset 13, height and width dynamic) to
   WORK/PACK.onnx. The export is checked against PyTorch on one input: ONNX Runtime's output (via
   bench/ort_peer.js) minus PyTorch's, max abs, in pixel units (network output x 255).
2. For each size S (square RGB crops of a drawing, resized to S if the source is smaller):
   - acg2vec: `acg2vec upscale` on R+1 copies of the PNG in one process, --tile 0 (whole image,
     like the peers), the default (whole image when its estimated peak fits the memory budget,
     else the pack's tile), --tile S/2 (4 tiles, SE hand-overs kept) and with --recompute also
     --tile S/2 --memory-budget 0 (each SE pass recomputes every tile's prefix). The per-image seconds it prints
     (upscale + PNG encode of the output; decode and model load excluded) of the last R images.
     A 16x16 image gives the fixed cost per image (its figure is printed beside).
   - PyTorch eager: the same network on the same padded input (reflect 18 px), inference_mode,
     one untimed run, then R timed runs.
   - ONNX Runtime: node bench/ort_peer.js (onnxruntime-node, CPU provider, graph optimisation
     "all", sequential) on the same padded input, one untimed run, then at least 3 timed runs.
   All with the same number of intra-op threads (--threads; acg2vec upscale uses libtorch's
   default, the number of cores, so pass the core count). Megapixels/s counts input pixels
   (S*S / median seconds). The load average is printed beside every row: on a shared machine the
   figures are indicative.

    /usr/bin/python3 bench/upscale_peers.py [--acg2vec build/release/acg2vec] [--models-dir var/models]
        [--pack realcugan-pro-conservative] [--sizes 256,512] [--runs 3] [--threads 2]
        [--image tests/data/images/real/thequestion_bg_lecturehall.jpg] [--work /tmp/acg2vec-upscale-peers]
        [--baseline OTHER_ACG2VEC]   # e.g. a build from before a change, timed in the same run
    /usr/bin/python3 bench/upscale_peers.py --sizes 256 --fixed-onnx FILE   # static 1x3x292x292 export
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "tools"))
import realcugan_reference as ref  # noqa: E402


def load_average():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def export(net, path, size, dynamic=True):
    x = ref.prepare(np.zeros((size, size, 3), np.uint8))
    torch.onnx.export(net, x, path, opset_version=13, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {2: "h", 3: "w"}, "y": {2: "h2", 3: "w2"}} if dynamic else None)


def run_ort(onnx_path, x, work, threads, seconds):
    inp = os.path.join(work, "ort_in.bin")
    out = os.path.join(work, "ort_out.bin")
    x.numpy().astype("<f4").tofile(inp)
    cmd = ["node", os.path.join(ROOT, "bench/ort_peer.js"), "--onnx", onnx_path, "--input", inp,
           "--shape", ",".join(str(d) for d in x.shape), "--output", out, "--seconds", str(seconds),
           "--threads", str(threads), "--warmup", "1"]
    env = dict(os.environ, NODE_PATH=os.path.join(ROOT, "tools/node_modules"))
    res = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    j = json.loads(res.stdout.strip().splitlines()[-1])
    y = np.fromfile(out, dtype="<f4")
    return j, y


def run_acg2vec(a, png, tile, copies, work, budget=None, binary=None):
    d = os.path.join(work, f"acg_{os.path.basename(png)}_{tile}_{budget}" + ("_baseline" if binary else ""))
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, "in"))
    os.makedirs(os.path.join(d, "out"))
    files = []
    for i in range(copies):
        f = os.path.join(d, "in", f"c{i:02d}.png")
        shutil.copyfile(png, f)
        files.append(f)
    cmd = [binary or a.acg2vec, "--models-dir", a.models_dir, "upscale", *files, "--output-dir", os.path.join(d, "out"),
           "--model", a.pack]
    if tile is not None:
        cmd += ["--tile", str(tile)]
    if budget is not None:
        cmd += ["--memory-budget", str(budget)]
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    secs = [float(m) for m in re.findall(r", ([0-9.]+)s\)", res.stdout)]
    assert len(secs) == copies, res.stdout
    return secs, os.path.join(d, "out", "c00.png")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--acg2vec", default="build/release/acg2vec")
    ap.add_argument("--models-dir", default="var/models")
    ap.add_argument("--pack", default="realcugan-pro-conservative")
    ap.add_argument("--sizes", default="256,512")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--image", default=os.path.join(ROOT, "tests/data/images/real/thequestion_bg_lecturehall.jpg"))
    ap.add_argument("--work", default="/tmp/acg2vec-upscale-peers")
    ap.add_argument("--recompute", action="store_true", help="also time 4 tiles with --memory-budget 0")
    ap.add_argument("--baseline", metavar="BINARY", help="another acg2vec build (e.g. before a change): its whole "
                    "image and default rows are timed in the same run, right after this build's")
    ap.add_argument("--fixed-onnx", metavar="FILE", help="only write an export with a fixed input of the first "
                    "size (for `acg2vec bench model --onnx FILE`) and stop")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.fixed_onnx:
        pack_dir = os.path.join(a.models_dir, a.pack)
        net = ref.UpCunet2x().load_ncnn(os.path.join(pack_dir, "model.param"),
                                        os.path.join(pack_dir, "model.bin")).eval()
        export(net, a.fixed_onnx, int(a.sizes.split(",")[0]), dynamic=False)
        print(f"wrote {a.fixed_onnx}")
        return
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    sizes = [int(s) for s in a.sizes.split(",")]

    pack_dir = os.path.join(a.models_dir, a.pack)
    net = ref.UpCunet2x().load_ncnn(os.path.join(pack_dir, "model.param"), os.path.join(pack_dir, "model.bin")).eval()
    onnx_path = os.path.join(a.work, a.pack + ".onnx")
    export(net, onnx_path, 64)
    print(f"pack {a.pack}; torch {torch.__version__}; exported {onnx_path} (opset 13, dynamic H/W); "
          f"{a.threads} threads; {a.runs} timed runs", flush=True)

    src = Image.open(a.image).convert("RGB")
    tiny = os.path.join(a.work, "tiny16.png")
    src.resize((16, 16), Image.BICUBIC).save(tiny)
    tiny_secs, _ = run_acg2vec(a, tiny, None, a.runs + 1, a.work)
    print(f"acg2vec fixed cost per image (16x16 input, upscale + encode): median {statistics.median(tiny_secs[1:]):.3f}s",
          flush=True)

    rows = []
    checked = False
    for s in sizes:
        w, h = src.size
        img = src.crop(((w - min(w, h)) // 2, (h - min(w, h)) // 2, (w + min(w, h)) // 2, (h + min(w, h)) // 2))
        img = img.resize((s, s), Image.BICUBIC) if min(w, h) < s else img.crop((0, 0, s, s))
        png = os.path.join(a.work, f"in_{s}.png")
        img.save(png)
        rgb = np.asarray(img)
        x = ref.prepare(rgb)
        mp = s * s / 1e6

        # acg2vec: whole image, the default (whole image when it fits the memory budget, else the
        # pack's tile), 4 tiles with their SE hand-overs kept (default budget), and 4 tiles with
        # none kept (budget 0: each SE pass recomputes every tile's prefix)
        configs = [(0, None, "acg2vec --tile 0 (whole)"), (None, None, "acg2vec default"),
                   (s // 2, None, f"acg2vec 4 tiles (--tile {s // 2}), hand-overs kept")]
        if a.recompute:
            configs.append((s // 2, 0, f"acg2vec 4 tiles (--tile {s // 2}), --memory-budget 0"))
        configs = [(t, b, l, None) for t, b, l in configs]
        if a.baseline:
            configs[2:2] = [(0, None, "acg2vec baseline --tile 0 (whole)", a.baseline),
                            (None, None, "acg2vec baseline default", a.baseline)]
        for tile, budget, label, binary in configs:
            la = load_average()
            secs, out_png = run_acg2vec(a, png, tile, a.runs + 1, a.work, budget, binary)
            med = statistics.median(secs[1:])
            rows.append({"size": s, "runtime": label, "median_s": med, "runs": secs[1:], "mp_s": mp / med, "load": la})
            print(f"{s}x{s} {label}: {', '.join(f'{t:.2f}' for t in secs[1:])} s -> {mp / med:.4f} MP/s (load {la})",
                  flush=True)
            if tile == 0 and not binary:
                ours = np.asarray(Image.open(out_png).convert("RGB")).astype(np.float64)

        # PyTorch eager
        la = load_average()
        with torch.inference_mode():
            y = net(x)
            lat = []
            for _ in range(a.runs):
                t = time.perf_counter()
                net(x)
                lat.append(time.perf_counter() - t)
        ref_full = y.numpy().reshape(-1)
        y = y[:, :, :2 * s, :2 * s] * 255.0
        med = statistics.median(lat)
        rows.append({"size": s, "runtime": f"PyTorch {torch.__version__} eager", "median_s": med, "runs": lat,
                     "mp_s": mp / med, "load": la})
        print(f"{s}x{s} PyTorch eager: {', '.join(f'{t:.2f}' for t in lat)} s -> {mp / med:.4f} MP/s (load {la})",
              flush=True)
        want = np.clip(np.rint(y[0].permute(1, 2, 0).numpy()), 0, 255)
        print(f"  acg2vec 8-bit output vs PyTorch rounded: max abs diff {np.abs(ours - want).max():.0f}, "
              f"{int((ours != want).sum())} of {want.size} values differ", flush=True)

        # ONNX Runtime
        la = load_average()
        j, yo = run_ort(onnx_path, x, a.work, a.threads, 1)
        assert yo.size == ref_full.size, (yo.size, ref_full.size)
        diff = float(np.abs(yo - ref_full).max()) * 255.0
        if not checked:
            print(f"  ONNX export check ({s}x{s}): max |ORT - PyTorch| = {diff:.2e} in pixel units "
                  f"(network output x 255; max |PyTorch| = {float(np.abs(ref_full).max()) * 255:.1f})", flush=True)
            checked = True
        med = j["p50_ms"] / 1e3
        rows.append({"size": s, "runtime": j["peer"], "median_s": med, "runs": j["runs"], "mp_s": mp / med,
                     "load": la, "max_abs_diff_vs_torch": diff})
        print(f"{s}x{s} {j['peer']}: p50 {med:.2f} s over {j['runs']} runs -> {mp / med:.4f} MP/s (load {la}); "
              f"max |ORT - PyTorch| {diff:.2e}", flush=True)

    print("\n| Input | Runtime | Median s | MP/s | Load (1/5/15 min) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']}x{r['size']} | {r['runtime']} | {r['median_s']:.2f} | {r['mp_s']:.4f} | {r['load']} |")
    print()
    for s in sizes:
        by = {r["runtime"]: r for r in rows if r["size"] == s}
        ours = {n: r["mp_s"] for n, r in by.items() if n.startswith("acg2vec")}
        for name, r in by.items():
            if name.startswith("acg2vec"):
                continue
            print(f"{s}x{s} vs {name}: " + "; ".join(f"{n[8:]} {v / r['mp_s']:.2f}x" for n, v in ours.items()))
    with open(os.path.join(a.work, "peers.json"), "w") as f:
        json.dump({"rows": rows, "tiny_secs": tiny_secs, "threads": a.threads}, f, indent=1)


if __name__ == "__main__":
    main()
