#!/usr/bin/python3
"""Random-weight model folders in the layouts publishers ship, without a manifest.json, for the
drop-in, shipped-manifest and models-pull tests. Weights come from python3-torch (torch.onnx.export).

Usage: /usr/bin/python3 tools/make_layout_packs.py OUT_DIR [--wd-size 448] [--clip-size 224]

Writes
  OUT_DIR/wd-tagger/     model.onnx (NHWC float [N, S, S, 3] 0..255 BGR → sigmoid scores, a ViT with
                         patch 16 as WD v3 ViT, narrow and shallow) + selected_tags.csv (WD columns,
                         built from tests/data/tags/deepdanbooru-v3-20211112_tags.txt: 4 ratings,
                         6,891 general, 2,282 character = 9,177 rows)
  OUT_DIR/immich-clip/   visual/model.onnx (NCHW [N, 3, S, S] → [N, 64], CLIP ViT-B/32 shape with
                         patch 32, narrow), visual/preprocess_cfg.json, textual/model.onnx (int64
                         [N, 77] ids → [N, 64]), textual/tokenizer.json (the real CLIP BPE vocabulary)
"""
import argparse
import csv
import json
import os
import shutil
import sys

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import make_text_model_fixtures as ref  # noqa: E402

TAGS = os.path.join(ROOT, "tests", "data", "tags", "deepdanbooru-v3-20211112_tags.txt")
CHARACTERS = (6891, 9173)  # [first, end) of the character tags in that list


class WdVit(nn.Module):
    """WD v3's interface: NHWC 0..255 floats in, per-tag sigmoid probabilities out."""

    def __init__(self, size, tags, dim=32, heads=2):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 16, 16)
        n = (size // 16) ** 2
        self.pos = nn.Parameter(torch.randn(1, n, dim) * 0.02)
        self.block = nn.TransformerEncoderLayer(dim, heads, dim * 2, dropout=0.0, batch_first=True, norm_first=True)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, tags)

    def forward(self, x):
        x = (x.permute(0, 3, 1, 2) - 127.5) / 127.5
        x = self.patch(x).flatten(2).transpose(1, 2) + self.pos
        x = self.norm(self.block(x)).mean(dim=1)
        return torch.sigmoid(self.head(x) * 4.0)


def write_wd_csv(path):
    with open(TAGS) as f:
        names = [line.strip() for line in f if line.strip()]
    rows = [("9999999", "general", 9), ("9999998", "sensitive", 9), ("9999997", "questionable", 9),
            ("9999996", "explicit", 9)]
    for i, name in enumerate(names):
        if name.startswith("rating:"):
            continue
        rows.append((str(100000 + i), name, 4 if CHARACTERS[0] <= i < CHARACTERS[1] else 0))
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["tag_id", "name", "category", "count"])
        for tag_id, name, cat in rows:
            w.writerow([tag_id, name, cat, 1000])
    return len(rows)


def make_wd(out, size):
    d = os.path.join(out, "wd-tagger")
    os.makedirs(d, exist_ok=True)
    n = write_wd_csv(os.path.join(d, "selected_tags.csv"))
    model = WdVit(size, n).eval()
    x = torch.rand(1, size, size, 3) * 255
    torch.onnx.export(model, x, os.path.join(d, "model.onnx"), input_names=["input"], output_names=["output"],
                      opset_version=14, dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    return d


def make_immich(out, size):
    d = os.path.join(out, "immich-clip")
    os.makedirs(os.path.join(d, "visual"), exist_ok=True)
    os.makedirs(os.path.join(d, "textual"), exist_ok=True)
    gen = torch.Generator().manual_seed(3)
    text = {"vocab_size": 49408, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4,
            "num_hidden_layers": 1, "max_position_embeddings": 77, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5}
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4, "num_hidden_layers": 1,
              "image_size": size, "patch_size": 32, "num_channels": 3, "hidden_act": "quick_gelu",
              "layer_norm_eps": 1e-5}
    ct, cv = ref.RefClipText(text, 64).eval(), ref.RefClipVision(vision, 64).eval()
    ref.randomize(ct, gen)
    ref.randomize(cv, gen)
    torch.onnx.export(cv, torch.rand(1, 3, size, size), os.path.join(d, "visual", "model.onnx"), input_names=["image"],
                      output_names=["embedding"], opset_version=14,
                      dynamic_axes={"image": {0: "batch"}, "embedding": {0: "batch"}})
    torch.onnx.export(ct, torch.randint(1, 49000, (1, 77)), os.path.join(d, "textual", "model.onnx"),
                      input_names=["text"], output_names=["embedding"], opset_version=14,
                      dynamic_axes={"text": {0: "batch"}, "embedding": {0: "batch"}})
    with open(os.path.join(d, "visual", "preprocess_cfg.json"), "w") as f:
        json.dump({"size": [size, size], "mode": "RGB", "mean": [0.48145466, 0.4578275, 0.40821073],
                   "std": [0.26862954, 0.26130258, 0.27577711], "interpolation": "bicubic", "resize_mode": "shortest",
                   "fill_color": 0}, f)
    shutil.copy(os.path.join(ROOT, "models", "vocab", "acg2vec_CLIPTokenizer.json"),
                os.path.join(d, "textual", "tokenizer.json"))
    return d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--wd-size", type=int, default=448)
    ap.add_argument("--clip-size", type=int, default=224)
    args = ap.parse_args()
    torch.manual_seed(11)
    os.makedirs(args.out, exist_ok=True)
    make_wd(args.out, args.wd_size)
    make_immich(args.out, args.clip_size)


if __name__ == "__main__":
    main()
