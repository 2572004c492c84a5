#!/usr/bin/python3
"""PyTorch eager peer for `acg2vec bench model`.

Rebuilds the torch module behind an ONNX file written by tools/export_onnx_models.py (the
manifest.json beside the file names its profile; weights come from the same seed), checks that
eager mode reproduces the batch-1 output the exporter saved (so the weights really are the ones in
the ONNX file), then runs the caller's input for a fixed time and prints one JSON line with the
throughput, latencies and the conv/linear FLOPs per item (counted with forward hooks).

    /usr/bin/python3 bench/torch_peer.py --onnx F --input IN.bin --shape 8,3,224,224 --output OUT.bin
                     [--seconds 3] [--threads 2] [--warmup 2] [--seed 1234]
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import export_onnx_models as exporter  # noqa: E402


def rebuild(onnx_path, seed):
    folder = os.path.dirname(os.path.abspath(onnx_path))
    manifest_path = os.path.join(folder, "manifest.json")
    if not os.path.exists(manifest_path):
        raise SystemExit(f"torch peer: {manifest_path} not found; only files from tools/export_onnx_models.py "
                         "can be rebuilt as torch modules")
    with open(manifest_path) as f:
        manifest = json.load(f)
    entry = next((m for m in manifest["models"] if m["file"] == os.path.basename(onnx_path)), None)
    if entry is None:
        raise SystemExit(f"torch peer: {os.path.basename(onnx_path)} is not listed in {manifest_path}")
    spec = exporter.specs(manifest["profile"])[entry["name"]]
    # Same call sequence as exporter.export(), so the random weights are identical.
    torch.manual_seed(seed)
    model = exporter.randomise(spec["build"](), seed)
    case = next((c for c in entry["cases"] if c["name"] == "b1"), None)
    if case is not None and len(case["inputs"]) == 1:
        def load(d):
            return torch.from_numpy(np.fromfile(os.path.join(folder, d["file"]), dtype=d["dtype"]).reshape(d["shape"]))
        with torch.no_grad():
            got = model(load(case["inputs"][0]))
        want = load(case["outputs"][0])
        diff = (got - want).abs().max().item()
        if diff > 1e-4 * max(1.0, want.abs().max().item()):
            raise SystemExit(f"torch peer: rebuilt {entry['name']} differs from the exported eager output by {diff}")
    return entry["name"], model


def count_flops(model, x):
    """Multiply-adds x2 of Conv2d and Linear layers for one forward pass of x."""
    total = [0]

    def conv(m, inp, out):
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        total[0] += 2 * out.numel() * k

    def linear(m, inp, out):
        total[0] += 2 * out.numel() * m.in_features

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return total[0]


def main():
    ap = argparse.ArgumentParser()
    for k in ("onnx", "input", "shape", "output"):
        ap.add_argument("--" + k, required=True)
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    name, model = rebuild(a.onnx, a.seed)
    shape = [int(s) for s in a.shape.split(",")]
    x = torch.from_numpy(np.fromfile(a.input, dtype=np.float32).reshape(shape))
    flops = count_flops(model, x[:1])
    lat = []
    with torch.inference_mode():
        out = model(x)
        out = out[0] if isinstance(out, tuple) else out
        out.contiguous().numpy().astype("<f4").tofile(a.output)
        for _ in range(1, a.warmup):
            model(x)
        start = time.perf_counter()
        while time.perf_counter() - start < a.seconds or len(lat) < 3:
            t = time.perf_counter()
            model(x)
            lat.append((time.perf_counter() - t) * 1e3)
        total = time.perf_counter() - start
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]  # noqa: E731
    print(json.dumps({"peer": f"pytorch {torch.__version__} eager", "model": name, "runs": len(lat),
                      "seconds": total, "items_per_s": shape[0] * len(lat) / total, "p50_ms": q(0.5),
                      "p95_ms": q(0.95), "output_shape": list(out.shape), "flops_per_item": flops}))


if __name__ == "__main__":
    main()
