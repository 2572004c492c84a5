#!/usr/bin/env python3
"""Fixtures for the dataset-captioning tests: small PNG images whose pixels ARE the tagger scores,
and WD-style tagger packs whose model returns those pixels.

    /usr/bin/python3 tools/make_caption_fixtures.py images DEST   # the committed test images
    /usr/bin/python3 tools/make_caption_fixtures.py packs DEST    # the packs (made at test time)

Each image is 16x16 RGB. The packs read it at 16x16 (no resizing: half-pixel bilinear at the same
size is the identity) and divide by 255, so the flattened pixel bytes b[0..767] become values
b/255. "fixed-tagger" returns b[0:len(LABELS_A)] as its scores and "fixed-tagger-b" returns
b[384:384+len(LABELS_B)]: a test therefore knows every score exactly by reading the PNG, and can
write the expected captions from the option definitions alone. "slow-tagger" is fixed-tagger with
a heavy branch whose result is multiplied by zero (it only makes each image cost about a billion
multiply-adds, so that a run can be killed midway).

Score bytes are drawn from LEVELS, which keep clear of the thresholds the tests use (0.15, 0.35,
0.5, 0.85); each image is redrawn until the largest gap between its sorted general (and character)
scores is unique by a margin, so that MCut has one answer in any float precision.
"""
import csv
import os
import random
import sys

import numpy as np

RATINGS = ["general", "sensitive", "questionable", "explicit"]
GENERAL = ["1girl", "solo", "long_hair", "smile", "open_mouth", "^_^", ">_<", "o_o", "blue_eyes",
           "school_uniform", "hat", "(o)_(o)", "star_(symbol)", "skirt", "outdoors", "upper_body"]
CHARACTER = ["hatsune_miku", "eileen_(renpy)", "kaname_madoka", "lucy_(renpy)"]
LABELS_A = [(t, 9) for t in RATINGS] + [(t, 0) for t in GENERAL] + [(t, 4) for t in CHARACTER]
# B knows most of A's tags, lacks some, and has two of its own.
GENERAL_B = ["1girl", "solo", "long_hair", "smile", "blue_eyes", "hat", "skirt", "tail", "animal_ears"]
CHARACTER_B = ["hatsune_miku", "kaname_madoka"]
LABELS_B = [(t, 9) for t in RATINGS] + [(t, 0) for t in GENERAL_B] + [(t, 4) for t in CHARACTER_B]
OFFSET_B = 384
SIZE = 16
LEVELS = [3, 17, 38, 66, 71, 113, 146, 166, 205, 236, 252]
LOW = [3, 17, 38, 66, 71]  # most tags of an image are unlikely

# 52 images in nested folders, plus one file that is not an image.
LAYOUT = [("", 10), ("set_a", 14), ("set_a/close_ups", 10), ("set_b", 12), ("set_b/deep/deeper", 6)]


def unique_max_gap(values):
    v = sorted(values, reverse=True)
    gaps = sorted((v[i] - v[i + 1] for i in range(len(v) - 1)), reverse=True)
    return len(gaps) < 2 or gaps[0] - gaps[1] >= 3


def draw_scores(rng, labels):
    while True:
        out = []
        for _, cat in labels:
            pool = LEVELS if cat == 9 or rng.random() < 0.4 else LOW
            out.append(rng.choice(pool))
        general = [b for b, (_, c) in zip(out, labels) if c == 0]
        character = [b for b, (_, c) in zip(out, labels) if c == 4]
        ratings = [b for b, (_, c) in zip(out, labels) if c == 9]
        if unique_max_gap(general) and unique_max_gap(character) and ratings.count(max(ratings)) == 1:
            return out


def make_images(dest):
    from PIL import Image

    rng = random.Random(20261206)
    n = 0
    for folder, count in LAYOUT:
        d = os.path.join(dest, folder)
        os.makedirs(d, exist_ok=True)
        for _ in range(count):
            flat = [rng.randrange(256) for _ in range(SIZE * SIZE * 3)]
            flat[0:len(LABELS_A)] = draw_scores(rng, LABELS_A)
            flat[OFFSET_B:OFFSET_B + len(LABELS_B)] = draw_scores(rng, LABELS_B)
            img = Image.fromarray(np.array(flat, dtype=np.uint8).reshape(SIZE, SIZE, 3), "RGB")
            img.save(os.path.join(d, f"img_{n:03d}.png"))
            n += 1
    with open(os.path.join(dest, "set_b", "broken.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + b"this is not the rest of a PNG file")
    print(f"{n} images and one broken file written to {dest}")


def write_labels(path, labels):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["tag_id", "name", "category", "count"])
        for i, (name, cat) in enumerate(labels):
            w.writerow([i, name, cat, 1000 - i])


def build_graph(n_labels, offset, heavy):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Reshape", ["input", "flat_shape"], ["flat"]),
        helper.make_node("Slice", ["flat", "starts", "ends", "axes"], ["scores" if not heavy else "picked"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([-1, SIZE * SIZE * 3], dtype=np.int64), "flat_shape"),
        numpy_helper.from_array(np.array([offset], dtype=np.int64), "starts"),
        numpy_helper.from_array(np.array([offset + n_labels], dtype=np.int64), "ends"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"),
    ]
    if heavy:
        rng = np.random.default_rng(7)
        width, rounds = 512, 6
        inits += [
            numpy_helper.from_array((rng.standard_normal((SIZE * SIZE * 3, width)) * 0.05).astype(np.float32), "w0"),
            numpy_helper.from_array((rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32), "w"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "ax1"),
            numpy_helper.from_array(np.array([1, width, 1], dtype=np.int64), "reps"),
            numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
        ]
        nodes += [
            helper.make_node("MatMul", ["flat", "w0"], ["h0"]),
            helper.make_node("Unsqueeze", ["h0", "ax1"], ["h0u"]),
            helper.make_node("Tile", ["h0u", "reps"], ["h_0"]),
        ]
        for r in range(rounds):
            nodes += [helper.make_node("MatMul", [f"h_{r}", "w"], [f"m_{r}"]),
                      helper.make_node("Tanh", [f"m_{r}"], [f"h_{r + 1}"])]
        nodes += [
            helper.make_node("ReduceMean", [f"h_{rounds}"], ["mean"], axes=[1, 2], keepdims=0),
            helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
            helper.make_node("Unsqueeze", ["nothing", "ax1"], ["nothing2"]),
            helper.make_node("Add", ["picked", "nothing2"], ["scores"]),
        ]
    graph = helper.make_graph(
        nodes, "fixed_scores",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", SIZE, SIZE, 3])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", n_labels])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model


def make_pack(dest, name, labels, offset, heavy=False, max_batch=8):
    import json

    import onnx

    d = os.path.join(dest, name)
    os.makedirs(d, exist_ok=True)
    onnx.save(build_graph(len(labels), offset, heavy), os.path.join(d, "model.onnx"))
    write_labels(os.path.join(d, "selected_tags.csv"), labels)
    manifest = {
        "name": name,
        "task": "tagger",
        "format": "onnx",
        "file": "model.onnx",
        "input": {"size": [SIZE, SIZE], "resize": "stretch_bilinear_tf", "layout": "NHWC", "scale": 255,
                  "channels": "RGB"},
        "labels": {"file": "selected_tags.csv", "format": "csv"},
        "thresholds": {"general": 0.35, "character": 0.85, "rating": "argmax"},
        "max_batch": max_batch,
    }
    with open(os.path.join(d, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)


def make_packs(dest):
    make_pack(dest, "fixed-tagger", LABELS_A, 0)
    make_pack(dest, "fixed-tagger-b", LABELS_B, OFFSET_B)
    make_pack(dest, "slow-tagger", LABELS_A, 0, heavy=True, max_batch=2)
    print(f"fixed-tagger, fixed-tagger-b and slow-tagger written to {dest}")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("images", "packs"):
        sys.exit("usage: make_caption_fixtures.py images|packs DEST")
    (make_images if sys.argv[1] == "images" else make_packs)(sys.argv[2])
