"""acgvoc2vec- and CLIP-text-shaped models exported to ONNX run through acg2vec's runtime and give
the same vectors as python3-torch eager on the same weights, and as the same weights loaded from
safetensors; token ids come from @huggingface/tokenizers on the packs' tokenizer.json.

Tolerance: max abs diff <= 1e-4 * max|reference| (float32 on both sides)."""
import json
import os
import sys
import tempfile
import unittest

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.environ.get("ACG2VEC_SOURCE_DIR", os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, os.path.join(SOURCE, "tools"))
sys.path.insert(0, os.path.join(SOURCE, "tests", "integration"))
import make_text_model_fixtures as ref  # noqa: E402
from acg2vec_harness import Server  # noqa: E402
from packs import reference_ids, webapp_pad as pad  # noqa: E402

TEXTS = ["1girl, solo, long hair", "初音ミク 東方Project", "a photo of a cat sitting on a chair " * 3, "Ünïcödé ✨"]
TOL = 1e-4


def dump(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f)


class TextOnnxParity(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="acg2vec-textonnx-")
        models = os.path.join(cls.tmp.name, "models")
        vocab = os.path.join(SOURCE, "models", "vocab")
        gen = torch.Generator().manual_seed(5)

        text = {"vocab_size": 49408, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4,
                "num_hidden_layers": 2, "max_position_embeddings": 77, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5}
        vision = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4, "num_hidden_layers": 1,
                  "image_size": 32, "patch_size": 16, "num_channels": 3, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5}
        cls.clip = ref.RefClipText(text, 64).eval()
        cv = ref.RefClipVision(vision, 64)
        ref.randomize(cls.clip, gen)
        ref.randomize(cv, gen)
        clip_tok = os.path.join(vocab, "acg2vec_CLIPTokenizer.json")
        d = os.path.join(models, "clip-onnx")
        os.makedirs(d)
        ids = torch.randint(1, 49000, (2, 77))
        torch.onnx.export(cls.clip, ids, os.path.join(d, "model.onnx"), input_names=["text"], output_names=["embedding"],
                          opset_version=14, dynamic_axes={"text": {0: "batch"}, "embedding": {0: "batch"}})
        dump(os.path.join(d, "manifest.json"), {"name": "clip-onnx", "task": "clip_text", "format": "onnx",
                                                "file": "model.onnx", "tokenizer": clip_tok, "max_length": 77})
        sd = dict(cls.clip.hf_state())
        sd.update(cv.hf_state())
        sd["logit_scale"] = torch.tensor(2.6592)
        d = os.path.join(models, "clip-st")
        ref.write_clip(d, ref.clip_config(text, vision, 64), sd, "safetensors")
        dump(os.path.join(d, "manifest.json"), {"name": "clip-st", "task": "clip_text", "format": "hf_clip",
                                                "tokenizer": clip_tok})

        bert = {"vocab_size": 119547, "dim": 32, "n_heads": 4, "n_layers": 2, "hidden_dim": 64,
                "max_position_embeddings": 128, "activation": "gelu", "sinusoidal_pos_embds": False}
        cls.st = ref.RefSentenceEncoder(bert, 48).eval()
        ref.randomize(cls.st, gen)
        wp_tok = os.path.join(vocab, "acg2vec_SentenceTransformersTokenizer_distilbert-multilingual.json")
        d = os.path.join(models, "st-onnx")
        os.makedirs(d)
        ids = torch.randint(1, 1000, (2, 128))
        mask = torch.ones(2, 128, dtype=torch.int64)
        torch.onnx.export(cls.st, (ids, mask), os.path.join(d, "model.onnx"), input_names=["input_ids", "attention_mask"],
                          output_names=["embedding"], opset_version=14,
                          dynamic_axes={"input_ids": {0: "batch"}, "attention_mask": {0: "batch"}, "embedding": {0: "batch"}})
        dump(os.path.join(d, "manifest.json"), {"name": "st-onnx", "task": "text_embedding", "format": "onnx",
                                                "file": "model.onnx", "tokenizer": wp_tok, "max_length": 128})
        d = os.path.join(models, "st-safetensors")
        ref.write_sentence_model(d, cls.st, bert, 48, "safetensors")
        dump(os.path.join(d, "manifest.json"), {"name": "st-safetensors", "task": "text_embedding",
                                                "format": "sentence_transformers", "tokenizer": wp_tok})
        cls.clip_ids = [pad(i, 77) for i in reference_ids(clip_tok, TEXTS)]
        cls.wp_ids = reference_ids(wp_tok, TEXTS)
        cls.srv = Server(models_dir=models)
        cls.srv.start()
        cls.srv.wait_ready()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.srv.tmp.cleanup()
        cls.tmp.cleanup()

    def embed(self, model):
        status, body = self.srv.json("POST", "/v1/embed/text", {"texts": TEXTS, "model": model})
        self.assertEqual(status, 200, body)
        return torch.tensor(body["data"]["vectors"])

    def check(self, ours, expected, what):
        diff = (ours - expected).abs().max().item()
        bound = TOL * expected.abs().max().item()
        print(f"{what}: max abs diff {diff:.3g} (bound {bound:.3g})")
        self.assertLessEqual(diff, bound, what)

    def test_clip_text_onnx_and_safetensors_match_torch(self):
        with torch.no_grad():
            expected = self.clip(torch.tensor(self.clip_ids))
        self.check(self.embed("clip-onnx"), expected, "CLIP text, ONNX through the runtime vs torch eager")
        self.check(self.embed("clip-st"), expected, "CLIP text, safetensors vs torch eager")

    def test_sentence_encoder_onnx_and_safetensors_match_torch(self):
        n = 128
        ids = torch.tensor([pad(i, n) for i in self.wp_ids])
        mask = torch.tensor([pad([1] * len(i), n) for i in self.wp_ids])
        with torch.no_grad():
            expected = self.st(ids, mask)
        self.check(self.embed("st-onnx"), expected, "DistilBERT+mean+Dense, ONNX through the runtime vs torch eager")
        self.check(self.embed("st-safetensors"), expected, "DistilBERT+mean+Dense, safetensors vs torch eager")


if __name__ == "__main__":
    unittest.main(verbosity=2)
