#!/usr/bin/python3
"""Writes a WD-style tagger pack with random weights, for benchmarks of the captioning path.

    make_wd_tagger_pack.py --out DIR [--image 448] [--patch 16] [--dim 256] [--depth 4] [--heads 4]
                           [--general 8000] [--characters 2857] [--max-batch 8] [--seed 1234]

The graph has the interface of SmilingWolf's WD taggers (wd-vit-tagger-v3 and relatives): one
input `input` of shape [batch, S, S, 3], NHWC, BGR, values 0..255 (no normalisation), and one
output of sigmoid probabilities, one per row of `selected_tags.csv` (columns tag_id, name,
category, count; category 9 rating, 0 general, 4 character, in that order as in the WD files).
The network inside is the timm-style ViT of tools/export_onnx_models.py (patch convolution,
class token, pre-norm encoder blocks, LayerNorm, linear head), at a reduced width and depth by
default so that a benchmark over a hundred images takes seconds per pass on 2 cores; `--dim 768
--depth 12 --heads 12` gives the ViT-B/16 size of wd-vit-tagger-v3 (10,861 labels by default,
as there).

The head's biases are spread from strongly negative to strongly positive so that the scores cover
the whole range and thresholds keep some tags and drop others. The manifest asks for the WD v3
reference app's preprocessing: pad to a white square, PIL bicubic to S, BGR, scale 1.
Run with Debian's /usr/bin/python3 (python3-torch, python3-onnx).
"""

import argparse
import csv
import json
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_onnx_models import ViT, randomise  # noqa: E402


class WdStyleTagger(nn.Module):
    """NHWC 0..255 BGR in, sigmoid probabilities out, as the WD tagger ONNX files are."""

    def __init__(self, image, patch, dim, depth, heads, labels):
        super().__init__()
        self.vit = ViT(image, patch, dim, depth, heads, labels)

    def forward(self, x):
        # The WD files take raw 0..255 values; scaling here keeps the random network's activations
        # in a useful range without changing the interface.
        return torch.sigmoid(self.vit(x.permute(0, 3, 1, 2) * (1.0 / 255.0)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="pack directory to write")
    ap.add_argument("--name", default="wd-style-vit")
    ap.add_argument("--image", type=int, default=448)
    ap.add_argument("--patch", type=int, default=16)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--general", type=int, default=8000)
    ap.add_argument("--characters", type=int, default=2857)
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()
    if a.image % a.patch != 0:
        ap.error("--image must be a multiple of --patch")

    ratings = ["general", "sensitive", "questionable", "explicit"]
    labels = [(r, 9) for r in ratings]
    labels += [(f"general_tag_{i:05d}", 0) for i in range(a.general)]
    labels += [(f"character_{i:04d}_(series)", 4) for i in range(a.characters)]

    torch.manual_seed(a.seed)
    model = randomise(WdStyleTagger(a.image, a.patch, a.dim, a.depth, a.heads, len(labels)), a.seed)
    with torch.no_grad():
        n = len(labels)
        model.vit.head.bias.copy_(torch.linspace(-10.0, 1.0, n)[torch.randperm(n, generator=torch.Generator().manual_seed(a.seed))])

    os.makedirs(a.out, exist_ok=True)
    example = torch.rand(2, a.image, a.image, 3) * 255.0
    with torch.no_grad():
        torch.onnx.export(model, (example,), os.path.join(a.out, "model.onnx"), input_names=["input"],
                          output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                          opset_version=17, do_constant_folding=True)
    with open(os.path.join(a.out, "selected_tags.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["tag_id", "name", "category", "count"])
        for i, (name, cat) in enumerate(labels):
            w.writerow([i, name, cat, len(labels) - i])
    manifest = {
        "name": a.name,
        "task": "tagger",
        "format": "onnx",
        "file": "model.onnx",
        "input": {"size": [a.image, a.image], "resize": "pad_square_bicubic", "pad": 255, "layout": "NHWC",
                  "channels": "BGR", "scale": 1},
        "labels": {"file": "selected_tags.csv", "format": "csv"},
        "thresholds": {"general": 0.35, "character": 0.85, "rating": "argmax"},
        "max_batch": a.max_batch,
        "description": f"WD-style tagger, random weights: ViT patch {a.patch}, dim {a.dim}, depth {a.depth}, "
                       f"{a.image}x{a.image}, {len(labels)} labels (tools/make_wd_tagger_pack.py, seed {a.seed})",
    }
    with open(os.path.join(a.out, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
    print(f"{a.name}: {len(labels)} labels, {a.image}x{a.image}, written to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
