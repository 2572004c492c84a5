#!/usr/bin/env python3
"""Writes a tiny random-weight tagger pack (ONNX + tags.txt + manifest.json) into DEST.

No real tagger weights can be obtained offline, so the browser test uses this pack to exercise the
page's tag lists, score bars and threshold sliders end to end. The final layer's biases are spread
from strongly negative to strongly positive so that the scores cover the whole 0..1 range whatever the
image is (random weights alone would leave every score near 0.5). Deterministic: same seed, same pack.

    /usr/bin/python3 tools/make_tiny_tagger.py DEST
"""
import json
import os
import sys

import torch

GENERAL = ["1girl", "solo", "smile", "long_hair", "short_hair", "blue_eyes", "brown_hair", "blush",
           "open_mouth", "school_uniform", "outdoors", "sky", "simple_background", "white_background",
           "looking_at_viewer", "upper_body"]
CHARACTER = ["eileen_(renpy)", "lucy_(renpy)", "sylvie_(renpy)", "hatsune_miku", "kaname_madoka"]
RATING = ["rating:safe", "rating:questionable", "rating:explicit"]
SIZE = 64


class TinyTagger(torch.nn.Module):
    def __init__(self, n_out):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = torch.nn.Linear(16, n_out)

    def forward(self, x):  # x: NHWC in [0, 1], like DeepDanbooru's input
        x = x.permute(0, 3, 1, 2)
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
        return torch.sigmoid(self.fc(x))


def main(dest):
    os.makedirs(dest, exist_ok=True)
    torch.manual_seed(20240508)
    labels = GENERAL + CHARACTER + RATING
    model = TinyTagger(len(labels)).eval()
    with torch.no_grad():
        model.fc.weight.mul_(0.5)
        spread = torch.linspace(-3.5, 3.5, len(labels))
        model.fc.bias.copy_(spread[torch.randperm(len(labels))])
    dummy = torch.rand(1, SIZE, SIZE, 3)
    torch.onnx.export(model, dummy, os.path.join(dest, "model.onnx"), input_names=["input"],
                      output_names=["tags"], opset_version=13,
                      dynamic_axes={"input": {0: "batch"}, "tags": {0: "batch"}})
    with open(os.path.join(dest, "tags.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(labels) + "\n")
    manifest = {
        "name": "tiny-tagger",
        "task": "tagger",
        "format": "onnx",
        "file": "model.onnx",
        "input": {"size": [SIZE, SIZE], "resize": "stretch_bilinear_tf", "layout": "NHWC", "scale": 255,
                  "channels": "RGB"},
        "labels": {"file": "tags.txt", "format": "lines",
                   "character_range": [len(GENERAL), len(GENERAL) + len(CHARACTER)]},
        "thresholds": {"general": 0.5, "character": 0.6, "rating": "argmax"},
    }
    with open(os.path.join(dest, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
    print(f"tiny tagger pack with {len(labels)} tags written to {dest}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_tiny_tagger.py DEST")
    main(sys.argv[1])
