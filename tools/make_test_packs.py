#!/usr/bin/python3
"""Small random-weight model packs under the seed's model names, for the route and TF-Serving
conformance tests. Weights come from python3-torch (reference layers in make_text_model_fixtures.py
and torch.onnx.export); tokenizers are the real vocabularies in models/vocab/.

Usage: /usr/bin/python3 tools/make_test_packs.py OUT_DIR

Writes OUT_DIR/{deepdanbooru-test, illust2vec-test, pix2score-test, acgvoc2vec-test, dclip-test}.
"""
import json
import os
import shutil
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_text_model_fixtures as ref  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB = os.path.join(ROOT, "models", "vocab")
TAGS = ["1girl", "solo", "long_hair", "smile", "blue_eyes", "short_hair", "open_mouth", "skirt", "hat", "dress",
        "school_uniform", "red_eyes", "blonde_hair", "black_hair", "brown_hair", "twintails", "flower", "sky",
        "hatsune_miku", "kirisame_marisa", "hakurei_reimu", "rating:safe", "rating:questionable", "rating:explicit"]


def dump(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)


class Tagger(nn.Module):
    """NHWC image → (sigmoid scores, a 4-D feature map named like DeepDanbooru's add_43 cut)."""

    def __init__(self, n):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.c2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.head = nn.Conv2d(16, n, 1)

    def forward(self, x):
        x = x.permute(0, 3, 1, 2)
        f = torch.relu(self.c1(x))
        f = self.c2(f) + 0.5
        s = torch.sigmoid(self.head(torch.relu(f)).mean(dim=(2, 3)))
        return s, f


class Scorer(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.heads = nn.ModuleList([nn.Linear(8, 15), nn.Linear(8, 15), nn.Linear(8, 5)])

    def forward(self, x):
        f = torch.relu(self.c1(x.permute(0, 3, 1, 2))).mean(dim=(2, 3))
        return tuple(torch.softmax(h(f), dim=1) for h in self.heads)


def export(model, path, outputs):
    x = torch.rand(1, 64, 64, 3)
    torch.onnx.export(model, x, path, input_names=["input"], output_names=outputs, opset_version=13,
                      dynamic_axes={"input": {0: "batch"}, **{o: {0: "batch"} for o in outputs}})


def image_input():
    return {"size": [64, 64], "resize": "stretch_bilinear_tf", "layout": "NHWC", "scale": 255, "channels": "RGB"}


def main(out):
    torch.manual_seed(7)
    os.makedirs(out, exist_ok=True)

    d = os.path.join(out, "deepdanbooru-test")
    os.makedirs(d, exist_ok=True)
    export(Tagger(len(TAGS)).eval(), os.path.join(d, "model.onnx"), ["scores", "add_43"])
    with open(os.path.join(d, "tags.txt"), "w") as f:
        f.write("\n".join(TAGS) + "\n")
    dump(os.path.join(d, "manifest.json"), {
        "name": "deepdanbooru-test", "task": "tagger", "format": "onnx", "file": "model.onnx", "input": image_input(),
        "labels": {"file": "tags.txt", "format": "lines", "character_range": [18, 21]},
        "outputs": [{"name": "scores", "value": "scores"}],
        "thresholds": {"general": 0.5, "character": 0.5, "rating": "argmax"}, "aliases": ["deepdanbooru"]})

    d = os.path.join(out, "illust2vec-test")
    os.makedirs(d, exist_ok=True)
    dump(os.path.join(d, "manifest.json"), {
        "name": "illust2vec-test", "task": "image_embedding", "base": "deepdanbooru-test",
        "cut": {"layer": "add_43", "pool": "gap"},
        "aliases": ["illust2vec", "img_semantics_feature_extract_model"]})

    d = os.path.join(out, "pix2score-test")
    os.makedirs(d, exist_ok=True)
    export(Scorer().eval(), os.path.join(d, "model.onnx"), ["bookmark", "view", "sanity"])
    dump(os.path.join(d, "manifest.json"), {
        "name": "pix2score-test", "task": "scores", "format": "onnx", "file": "model.onnx", "input": image_input(),
        "outputs": [{"name": "bookmarkPredict", "tf_name": "pix2score"}, {"name": "viewPredict", "tf_name": "pix2score_1"},
                    {"name": "sanityPredict", "tf_name": "pix2score_2"}],
        "aliases": ["pix2score"]})

    gen = torch.Generator().manual_seed(11)
    bert_cfg = {"vocab_size": 119547, "dim": 32, "n_heads": 4, "n_layers": 2, "hidden_dim": 64,
                "max_position_embeddings": 128, "activation": "gelu", "sinusoidal_pos_embds": False}
    st = ref.RefSentenceEncoder(bert_cfg, 512)
    ref.randomize(st, gen)
    d = os.path.join(out, "acgvoc2vec-test")
    ref.write_sentence_model(d, st, bert_cfg, 512, "safetensors")
    shutil.copy(os.path.join(VOCAB, "acg2vec_SentenceTransformersTokenizer_distilbert-multilingual.json"),
                os.path.join(d, "tokenizer.json"))
    with open(os.path.join(d, "vocabulary.txt"), "w") as f:
        f.write("\n".join(t for t in TAGS if not t.startswith("rating:")) + "\n")
    dump(os.path.join(d, "manifest.json"), {
        "name": "acgvoc2vec-test", "task": "text_embedding", "format": "sentence_transformers",
        "aliases": ["acgvoc2vec"], "vocabulary": {"file": "vocabulary.txt", "format": "lines"}})

    text = {"vocab_size": 49408, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4,
            "num_hidden_layers": 2, "max_position_embeddings": 77, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5}
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
              "image_size": 32, "patch_size": 16, "num_channels": 3, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5}
    ct, cv = ref.RefClipText(text, 768), ref.RefClipVision(vision, 768)
    ref.randomize(ct, gen)
    ref.randomize(cv, gen)
    sd = dict(ct.hf_state())
    sd.update(cv.hf_state())
    sd["logit_scale"] = torch.tensor(2.6592)
    d = os.path.join(out, "dclip-test")
    ref.write_clip(d, ref.clip_config(text, vision, 768), sd, "safetensors")
    shutil.copy(os.path.join(VOCAB, "acg2vec_CLIPTokenizer.json"), os.path.join(d, "tokenizer.json"))
    dump(os.path.join(d, "manifest.json"), {
        "name": "dclip-test", "task": "clip_text", "format": "hf_clip", "aliases": ["dclip_text"],
        "image_aliases": ["dclip_image"]})


if __name__ == "__main__":
    main(sys.argv[1])
