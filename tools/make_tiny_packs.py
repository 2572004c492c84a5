#!/usr/bin/env python3
"""Writes two tiny random-weight ONNX packs into DEST: tiny-tagger (a tagger with tags.txt) and
tiny-pix2score (three softmax heads shaped like pix2score's).

No real tagger or pix2score weights can be obtained offline, so the browser test uses these packs to
exercise the page's tag lists, score bars, threshold sliders and popularity bars end to end. The
tagger's final biases are spread from strongly negative to strongly positive so that its scores cover
the whole 0..1 range whatever the image is (random weights alone would leave every score near 0.5).
Deterministic: same seed, same packs.

    /usr/bin/python3 tools/make_tiny_packs.py DEST
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


HEADS = [("bookmarkPredict", 15), ("viewPredict", 15), ("sanityPredict", 5)]
INPUT = {"size": [SIZE, SIZE], "resize": "stretch_bilinear_tf", "layout": "NHWC", "scale": 255, "channels": "RGB"}


class Features(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1)

    def forward(self, x):  # x: NHWC in [0, 1], like DeepDanbooru's and pix2score's input
        x = x.permute(0, 3, 1, 2)
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)


class TinyTagger(torch.nn.Module):
    def __init__(self, n_out):
        super().__init__()
        self.features = Features()
        self.fc = torch.nn.Linear(16, n_out)

    def forward(self, x):
        return torch.sigmoid(self.fc(self.features(x)))


class TinyScores(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.features = Features()
        self.heads = torch.nn.ModuleList([torch.nn.Linear(16, n) for _, n in HEADS])

    def forward(self, x):
        f = self.features(x)
        return tuple(torch.softmax(h(f) * 4.0, dim=1) for h in self.heads)


def export(model, path, outputs):
    dummy = torch.rand(1, SIZE, SIZE, 3)
    axes = {name: {0: "batch"} for name in ["input", *outputs]}
    torch.onnx.export(model, dummy, path, input_names=["input"], output_names=outputs, opset_version=13,
                      dynamic_axes=axes)


def write_json(path, value):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2)


def make_tagger(dest):
    os.makedirs(dest, exist_ok=True)
    torch.manual_seed(20240508)
    labels = GENERAL + CHARACTER + RATING
    model = TinyTagger(len(labels)).eval()
    with torch.no_grad():
        model.fc.weight.mul_(0.5)
        spread = torch.linspace(-3.5, 3.5, len(labels))
        model.fc.bias.copy_(spread[torch.randperm(len(labels))])
    export(model, os.path.join(dest, "model.onnx"), ["tags"])
    with open(os.path.join(dest, "tags.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(labels) + "\n")
    write_json(os.path.join(dest, "manifest.json"), {
        "name": "tiny-tagger",
        "task": "tagger",
        "format": "onnx",
        "file": "model.onnx",
        "input": INPUT,
        "labels": {"file": "tags.txt", "format": "lines",
                   "character_range": [len(GENERAL), len(GENERAL) + len(CHARACTER)]},
        "thresholds": {"general": 0.5, "character": 0.6, "rating": "argmax"},
    })


def make_scores(dest):
    os.makedirs(dest, exist_ok=True)
    torch.manual_seed(20240509)
    names = [name for name, _ in HEADS]
    export(TinyScores().eval(), os.path.join(dest, "model.onnx"), names)
    write_json(os.path.join(dest, "manifest.json"), {
        "name": "tiny-pix2score",
        "task": "scores",
        "format": "onnx",
        "file": "model.onnx",
        "input": INPUT,
        "outputs": [{"name": name} for name in names],
    })


def main(dest):
    make_tagger(os.path.join(dest, "tiny-tagger"))
    make_scores(os.path.join(dest, "tiny-pix2score"))
    print(f"tiny-tagger and tiny-pix2score packs written to {dest}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_tiny_packs.py DEST")
    main(sys.argv[1])
