#!/usr/bin/python3
"""Independent python3-torch reference for the C++ text/vision towers.

Builds tiny random-weight models from torch's own layers (nn.TransformerEncoderLayer, nn.LayerNorm,
nn.Embedding, nn.Conv2d, nn.Linear), exports their weights under Hugging Face key names in the checkpoint
formats users have (model.safetensors, sharded safetensors + index, pytorch_model.bin, the
sentence-transformers folder layout) and writes reference outputs for fixed inputs.

Usage: /usr/bin/python3 make_text_model_fixtures.py OUT_DIR [--full-clip-l14 | --full-acgvoc2vec]

--full-clip-l14 instead writes one full-size ViT-L/14 CLIPModel config (random weights) to OUT_DIR/clip_l14
with its reference outputs, for a one-off measurement; --full-acgvoc2vec does the same for acgvoc2vec's
real shape (distilbert-base-multilingual-cased + Dense 768->512, as a pytorch_model.bin folder).
"""
import collections
import json
import os
import struct
import sys

import torch
from torch import nn

DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64",
          torch.int32: "I32", torch.float64: "F64", torch.uint8: "U8", torch.int8: "I8", torch.bool: "BOOL"}


def write_safetensors(path, tensors):
    """The safetensors layout: u64 little-endian header length, JSON header, raw little-endian data."""
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        if t.dtype == torch.bfloat16:
            data = t.view(torch.int16).numpy().tobytes()
        else:
            data = t.numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)


def write_bin(path, tensors):
    # Views are kept as they are: q/k/v slices of the packed in-projection share one storage at different
    # offsets, as tied or sliced weights do in real checkpoints.
    sd = collections.OrderedDict((k, v.detach()) for k, v in tensors.items())
    sd._metadata = collections.OrderedDict({"": {"version": 1}})  # what Module.state_dict() attaches
    torch.save(sd, path)


def randomize(module, gen):
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("weight") and p.dim() == 1:  # LayerNorm gains
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))


def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


def export_layer(prefix, layer, names):
    """Splits nn.MultiheadAttention's packed in-projection into the separate q/k/v linears of HF."""
    q, k, v, o, ln1, fc1, fc2, ln2 = names
    d = layer.self_attn.embed_dim
    w, b = layer.self_attn.in_proj_weight, layer.self_attn.in_proj_bias
    out = {}
    for i, n in enumerate((q, k, v)):
        out[f"{prefix}{n}.weight"] = w[i * d:(i + 1) * d]
        out[f"{prefix}{n}.bias"] = b[i * d:(i + 1) * d]
    out[f"{prefix}{o}.weight"] = layer.self_attn.out_proj.weight
    out[f"{prefix}{o}.bias"] = layer.self_attn.out_proj.bias
    for mod, n in ((layer.norm1, ln1), (layer.linear1, fc1), (layer.linear2, fc2), (layer.norm2, ln2)):
        out[f"{prefix}{n}.weight"] = mod.weight
        out[f"{prefix}{n}.bias"] = mod.bias
    return out


class RefDistilBert(nn.Module):
    """DistilBERT: post-LN encoder layers with GELU, as nn.TransformerEncoderLayer(norm_first=False)."""

    def __init__(self, c):
        super().__init__()
        self.word = nn.Embedding(c["vocab_size"], c["dim"])
        self.pos = nn.Embedding(c["max_position_embeddings"], c["dim"])
        self.ln = nn.LayerNorm(c["dim"], eps=1e-12)
        self.layers = nn.ModuleList([
            nn.TransformerEncoderLayer(c["dim"], c["n_heads"], c["hidden_dim"], dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=False, layer_norm_eps=1e-12)
            for _ in range(c["n_layers"])])

    def forward(self, ids, mask):
        x = self.ln(self.word(ids) + self.pos(torch.arange(ids.shape[1])))
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=(mask == 0))
        return x

    def hf_state(self):
        sd = {"embeddings.word_embeddings.weight": self.word.weight,
              "embeddings.position_embeddings.weight": self.pos.weight,
              "embeddings.LayerNorm.weight": self.ln.weight, "embeddings.LayerNorm.bias": self.ln.bias}
        for i, layer in enumerate(self.layers):
            sd.update(export_layer(f"transformer.layer.{i}.", layer,
                                   ("attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin",
                                    "sa_layer_norm", "ffn.lin1", "ffn.lin2", "output_layer_norm")))
        return sd


class RefSentenceEncoder(nn.Module):
    def __init__(self, c, out_dim):
        super().__init__()
        self.bert = RefDistilBert(c)
        self.dense = nn.Linear(c["dim"], out_dim)

    def forward(self, ids, mask):
        h = self.bert(ids, mask)
        m = mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return torch.tanh(self.dense(pooled))


class RefClipText(nn.Module):
    def __init__(self, t, proj):
        super().__init__()
        d = t["hidden_size"]
        self.tok = nn.Embedding(t["vocab_size"], d)
        self.pos = nn.Embedding(t["max_position_embeddings"], d)
        self.layers = nn.ModuleList([
            nn.TransformerEncoderLayer(d, t["num_attention_heads"], t["intermediate_size"], dropout=0.0,
                                       activation=quick_gelu, batch_first=True, norm_first=True,
                                       layer_norm_eps=t["layer_norm_eps"])
            for _ in range(t["num_hidden_layers"])])
        self.final = nn.LayerNorm(d, eps=t["layer_norm_eps"])
        self.proj = nn.Linear(d, proj, bias=False)

    def forward(self, ids):
        s = ids.shape[1]
        x = self.tok(ids) + self.pos(torch.arange(s))
        causal = torch.full((s, s), float("-inf")).triu(1)
        for layer in self.layers:
            x = layer(x, src_mask=causal)
        x = self.final(x)
        pooled = x[torch.arange(ids.shape[0]), ids.argmax(dim=-1)]
        return self.proj(pooled)

    def hf_state(self):
        p = "text_model."
        sd = {p + "embeddings.token_embedding.weight": self.tok.weight,
              p + "embeddings.position_embedding.weight": self.pos.weight,
              p + "embeddings.position_ids": torch.arange(self.pos.weight.shape[0]).unsqueeze(0),
              p + "final_layer_norm.weight": self.final.weight, p + "final_layer_norm.bias": self.final.bias,
              "text_projection.weight": self.proj.weight}
        for i, layer in enumerate(self.layers):
            sd.update(export_layer(f"{p}encoder.layers.{i}.", layer, CLIP_LAYER_NAMES))
        return sd


CLIP_LAYER_NAMES = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
                    "layer_norm1", "mlp.fc1", "mlp.fc2", "layer_norm2")


class RefClipVision(nn.Module):
    def __init__(self, v, proj):
        super().__init__()
        d = v["hidden_size"]
        n = (v["image_size"] // v["patch_size"]) ** 2 + 1
        self.patch = nn.Conv2d(v["num_channels"], d, v["patch_size"], stride=v["patch_size"], bias=False)
        self.cls = nn.Parameter(torch.zeros(d))
        self.pos = nn.Embedding(n, d)
        self.pre = nn.LayerNorm(d, eps=v["layer_norm_eps"])
        self.layers = nn.ModuleList([
            nn.TransformerEncoderLayer(d, v["num_attention_heads"], v["intermediate_size"], dropout=0.0,
                                       activation=quick_gelu, batch_first=True, norm_first=True,
                                       layer_norm_eps=v["layer_norm_eps"])
            for _ in range(v["num_hidden_layers"])])
        self.post = nn.LayerNorm(d, eps=v["layer_norm_eps"])
        self.proj = nn.Linear(d, proj, bias=False)

    def forward(self, pixels):
        x = self.patch(pixels).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], 1, -1), x], dim=1) + self.pos.weight
        x = self.pre(x)
        for layer in self.layers:
            x = layer(x)
        return self.proj(self.post(x[:, 0]))

    def hf_state(self):
        p = "vision_model."
        sd = {p + "embeddings.class_embedding": self.cls, p + "embeddings.patch_embedding.weight": self.patch.weight,
              p + "embeddings.position_embedding.weight": self.pos.weight,
              p + "pre_layrnorm.weight": self.pre.weight, p + "pre_layrnorm.bias": self.pre.bias,
              p + "post_layernorm.weight": self.post.weight, p + "post_layernorm.bias": self.post.bias,
              "visual_projection.weight": self.proj.weight}
        for i, layer in enumerate(self.layers):
            sd.update(export_layer(f"{p}encoder.layers.{i}.", layer, CLIP_LAYER_NAMES))
        return sd


def dump_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)


def write_sentence_model(out, model, cfg, out_dim, fmt):
    os.makedirs(os.path.join(out, "0_Transformer"), exist_ok=True)
    os.makedirs(os.path.join(out, "1_Pooling"), exist_ok=True)
    os.makedirs(os.path.join(out, "2_Dense"), exist_ok=True)
    dump_json(os.path.join(out, "modules.json"), [
        {"idx": 0, "name": "0", "path": "0_Transformer", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}])
    dump_json(os.path.join(out, "0_Transformer", "config.json"), dict(cfg, model_type="distilbert",
                                                                      architectures=["DistilBertModel"]))
    dump_json(os.path.join(out, "0_Transformer", "sentence_bert_config.json"), {"max_seq_length": 128, "do_lower_case": False})
    dump_json(os.path.join(out, "1_Pooling", "config.json"), {
        "word_embedding_dimension": cfg["dim"], "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False})
    dump_json(os.path.join(out, "2_Dense", "config.json"), {
        "in_features": cfg["dim"], "out_features": out_dim, "bias": True,
        "activation_function": "torch.nn.modules.activation.Tanh"})
    bert = model.bert.hf_state()
    dense = {"linear.weight": model.dense.weight, "linear.bias": model.dense.bias}
    if fmt == "safetensors":
        write_safetensors(os.path.join(out, "0_Transformer", "model.safetensors"), bert)
        write_safetensors(os.path.join(out, "2_Dense", "model.safetensors"), dense)
    else:
        write_bin(os.path.join(out, "0_Transformer", "pytorch_model.bin"), bert)
        write_bin(os.path.join(out, "2_Dense", "pytorch_model.bin"), dense)


def clip_config(text, vision, proj):
    return {"architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": proj,
            "text_config": text, "vision_config": vision}


def write_clip(out, cfg, sd, fmt):
    os.makedirs(out, exist_ok=True)
    dump_json(os.path.join(out, "config.json"), cfg)
    if fmt == "safetensors":
        write_safetensors(os.path.join(out, "model.safetensors"), sd)
    elif fmt == "bin":
        write_bin(os.path.join(out, "pytorch_model.bin"), sd)
    elif fmt == "sharded_bin":
        names = list(sd.keys())
        half = len(names) // 2
        shards = {"pytorch_model-00001-of-00002.bin": names[:half], "pytorch_model-00002-of-00002.bin": names[half:]}
        weight_map = {}
        for file, keys in shards.items():
            write_bin(os.path.join(out, file), {k: sd[k] for k in keys})
            weight_map.update({k: file for k in keys})
        dump_json(os.path.join(out, "pytorch_model.bin.index.json"), {"metadata": {}, "weight_map": weight_map})
    else:  # two shards and an index
        names = list(sd.keys())
        half = len(names) // 2
        shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
        weight_map = {}
        for file, keys in shards.items():
            write_safetensors(os.path.join(out, file), {k: sd[k] for k in keys})
            weight_map.update({k: file for k in keys})
        dump_json(os.path.join(out, "model.safetensors.index.json"), {"metadata": {}, "weight_map": weight_map})


def small(out):
    gen = torch.Generator().manual_seed(1234)
    torch.manual_seed(1234)
    expected = {}

    bert_cfg = {"vocab_size": 100, "dim": 32, "n_heads": 4, "n_layers": 2, "hidden_dim": 64,
                "max_position_embeddings": 40, "activation": "gelu", "sinusoidal_pos_embds": False}
    st = RefSentenceEncoder(bert_cfg, 16)
    randomize(st, gen)
    ids = torch.randint(1, 100, (3, 12), generator=gen)
    mask = torch.zeros(3, 12, dtype=torch.int64)
    for row, n in enumerate((12, 7, 3)):
        mask[row, :n] = 1
        ids[row, n:] = 0
    expected["st_input_ids"], expected["st_attention_mask"] = ids, mask
    expected["st_output"] = st(ids, mask).detach()
    write_sentence_model(os.path.join(out, "st_safetensors"), st, bert_cfg, 16, "safetensors")
    write_sentence_model(os.path.join(out, "st_bin"), st, bert_cfg, 16, "bin")

    text = {"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4,
            "num_hidden_layers": 2, "max_position_embeddings": 16, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5}
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
              "image_size": 32, "patch_size": 8, "num_channels": 3, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5}
    ct, cv = RefClipText(text, 24), RefClipVision(vision, 24)
    randomize(ct, gen)
    randomize(cv, gen)
    tids = torch.randint(1, 62, (3, 16), generator=gen)
    for row, eot in enumerate((15, 6, 1)):  # EOT (the largest id) then zero padding
        tids[row, 0] = 62
        tids[row, eot] = 63
        tids[row, eot + 1:] = 0
    pixels = torch.randn(2, 3, 32, 32, generator=gen)
    expected["clip_input_ids"], expected["clip_pixels"] = tids, pixels
    expected["clip_text_output"] = ct(tids).detach()
    expected["clip_vision_output"] = cv(pixels).detach()
    sd = dict(ct.hf_state())
    sd.update(cv.hf_state())
    sd["logit_scale"] = torch.tensor(2.6592)
    cfg = clip_config(text, vision, 24)
    for fmt, name in (("safetensors", "clip_safetensors"), ("bin", "clip_bin"), ("sharded", "clip_sharded"),
                      ("sharded_bin", "clip_sharded_bin")):
        write_clip(os.path.join(out, name), cfg, sd, fmt)

    # Half-precision checkpoints (how CLIP weights are often published): the reference runs the same models
    # with their weights rounded to float16 / bfloat16 and computes in float32.
    for dtype, name, fmt in ((torch.float16, "clip_f16", "safetensors"), (torch.bfloat16, "clip_bf16", "bin")):
        rounded = {k: (v.detach().to(dtype) if v.is_floating_point() else v) for k, v in sd.items()}
        write_clip(os.path.join(out, name), cfg, rounded, fmt)
        with torch.no_grad():
            for m in (ct, cv):
                for p in m.parameters():
                    p.copy_(p.to(dtype).float())
        tag = "f16" if dtype == torch.float16 else "bf16"
        expected[f"clip_text_output_{tag}"] = ct(tids).detach()
        expected[f"clip_vision_output_{tag}"] = cv(pixels).detach()

    # Dtype conversions: the stored half/bfloat16 values and their exact float32 expansions.
    base = torch.randn(5, 3, generator=gen)
    expected["dtype_f16"] = base.half()
    expected["dtype_f16_as_f32"] = base.half().float()
    expected["dtype_bf16"] = base.bfloat16()
    expected["dtype_bf16_as_f32"] = base.bfloat16().float()
    expected["dtype_i32"] = torch.arange(-3, 3, dtype=torch.int32)
    expected["dtype_f64"] = base.double()
    expected["dtype_u8"] = torch.arange(0, 250, 50, dtype=torch.uint8)
    expected["dtype_bool"] = torch.tensor([True, False, True])
    expected["dtype_empty"] = torch.zeros(0, 4)
    write_safetensors(os.path.join(out, "expected.safetensors"), expected)


def full_l14(out):
    gen = torch.Generator().manual_seed(7)
    text = {"vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
            "num_hidden_layers": 12, "max_position_embeddings": 77, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5}
    vision = {"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16, "num_hidden_layers": 24,
              "image_size": 224, "patch_size": 14, "num_channels": 3, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5}
    ct, cv = RefClipText(text, 768), RefClipVision(vision, 768)
    with torch.no_grad():  # realistic scales: CLIP-like initialisation
        for m in (ct, cv):
            for name, p in m.named_parameters():
                if name.endswith("weight") and p.dim() == 1:
                    p.copy_(1.0 + 0.05 * torch.randn(p.shape, generator=gen))
                else:
                    p.copy_(0.02 * torch.randn(p.shape, generator=gen))
    tids = torch.zeros(2, 77, dtype=torch.int64)
    tids[0, :5] = torch.tensor([49406, 320, 1929, 539, 49407])
    tids[1, :] = torch.randint(1, 49000, (77,), generator=gen)
    tids[1, 0], tids[1, 76] = 49406, 49407
    pixels = torch.randn(1, 3, 224, 224, generator=gen)
    expected = {"clip_input_ids": tids, "clip_pixels": pixels}
    expected["clip_text_output"] = ct(tids).detach()
    expected["clip_vision_output"] = cv(pixels).detach()
    sd = dict(ct.hf_state())
    sd.update(cv.hf_state())
    write_clip(os.path.join(out, "clip_l14"), clip_config(text, vision, 768), sd, "safetensors")
    write_safetensors(os.path.join(out, "clip_l14_expected.safetensors"), expected)


def full_acgvoc2vec(out):
    """acgvoc2vec's real shape: distilbert-base-multilingual-cased (vocab 119547) + mean pooling + Dense 768->512."""
    gen = torch.Generator().manual_seed(11)
    cfg = {"vocab_size": 119547, "dim": 768, "n_heads": 12, "n_layers": 6, "hidden_dim": 3072,
           "max_position_embeddings": 512, "activation": "gelu", "sinusoidal_pos_embds": False}
    st = RefSentenceEncoder(cfg, 512)
    with torch.no_grad():
        for name, p in st.named_parameters():
            if name.endswith("weight") and p.dim() == 1:
                p.copy_(1.0 + 0.05 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.02 * torch.randn(p.shape, generator=gen))
    ids = torch.zeros(2, 128, dtype=torch.int64)
    mask = torch.zeros(2, 128, dtype=torch.int64)
    ids[0, :6] = torch.tensor([101, 31178, 10315, 11250, 24883, 102])
    mask[0, :6] = 1
    ids[1, :] = torch.randint(1000, 119547, (128,), generator=gen)
    ids[1, 0], ids[1, 127] = 101, 102
    mask[1, :] = 1
    expected = {"st_input_ids": ids, "st_attention_mask": mask, "st_output": st(ids, mask).detach()}
    write_sentence_model(os.path.join(out, "acgvoc2vec"), st, cfg, 512, "bin")
    write_safetensors(os.path.join(out, "acgvoc2vec_expected.safetensors"), expected)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    os.makedirs(sys.argv[1], exist_ok=True)
    if "--full-clip-l14" in sys.argv[2:]:
        full_l14(sys.argv[1])
    elif "--full-acgvoc2vec" in sys.argv[2:]:
        full_acgvoc2vec(sys.argv[1])
    else:
        small(sys.argv[1])
    print("fixtures written to", sys.argv[1])
