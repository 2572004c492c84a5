#!/usr/bin/python3
"""Exports reference vision and text models to ONNX with random weights, plus eager outputs.

Run with Debian's /usr/bin/python3 (python3-torch 1.13, which ships without torchvision, so the
standard architectures are written out below from torch.nn layers).

    export_onnx_models.py --out DIR [--profile ci|full] [--models resnet50,vit_b16,...]

For each model DIR gets <name>.onnx (dynamic batch axis; the BERT encoder also has a dynamic
sequence axis) and, for batch 1 and batch 4, the inputs and PyTorch eager outputs as raw
little-endian arrays, all listed in DIR/manifest.json. BatchNorm running statistics and affine
parameters are randomised so that BatchNorm folding in a runtime is actually exercised.

Profiles: "ci" keeps every architecture's structure (and so its ONNX op types) at reduced
width/depth and 64x64 images so that the parity test runs in seconds on 2 cores; "full" uses
the published sizes at 224x224 (ResNet-50, MobileNetV2, ConvNeXt-T, ViT-B/16, Swin-T, BERT-base),
DeepDanbooru v3 at 512x512 with its 9176 tags and a WD-style tagger ViT-B/16 at 448x448 (NHWC
input, 10,861 sigmoid outputs), for benchmarks. "mixed" is a small 96x96 graph of the op mix where
per-node overhead and fusion decide (conv+BN+hardswish, depthwise and grouped conv, squeeze-excite,
attention with LayerNorm), the same in both profiles.
"""

import argparse
import hashlib
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# ---------------------------------------------------------------- ResNet-50 (bottleneck v1.5)
class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, layers, width=64, num_classes=1000):
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make(width, layers[0], 1)
        self.layer2 = self._make(width * 2, layers[1], 2)
        self.layer3 = self._make(width * 4, layers[2], 2)
        self.layer4 = self._make(width * 8, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width * 8 * 4, num_classes)

    def _make(self, planes, blocks, stride):
        down = None
        if stride != 1 or self.inplanes != planes * 4:
            down = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4))
        layers = [Bottleneck(self.inplanes, planes, stride, down)]
        self.inplanes = planes * 4
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ---------------------------------------------------------------- DeepDanbooru v3
class DeepDanbooru(nn.Module):
    """DeepDanbooru's resnet_custom_v3 (as tools/keras_reference.js builds it) in torch, for the
    runtime benchmarks and parity against ONNX Runtime and PyTorch: a 7x7/2 stem and 3x3/2 max-pool,
    then per stage one projection bottleneck (stride 1 in the first stage, 2 after) and N identity
    bottlenecks (1x1 f/4, 3x3 f/4, 1x1 f, BatchNorm after each conv), a bias-free 1x1 conv to the
    tags, global average pooling and a sigmoid. Padding is symmetric (torch's), where Keras 'same'
    pads strided layers on one side only: same shapes and FLOPs, not interchangeable weights."""

    def __init__(self, stem=64, filters=(256, 512, 1024, 1024, 2048, 4096), repeats=(2, 7, 19, 19, 2, 2),
                 classes=9176):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, stem, 7, 2, 3, bias=False), nn.BatchNorm2d(stem),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        blocks, inplanes = [], stem
        for i, (f, r) in enumerate(zip(filters, repeats)):
            stride = 1 if i == 0 else 2
            down = nn.Sequential(nn.Conv2d(inplanes, f, 1, stride, bias=False), nn.BatchNorm2d(f))
            blocks.append(Bottleneck(inplanes, f // 4, stride, down))
            inplanes = f
            blocks += [Bottleneck(f, f // 4) for _ in range(r)]
        self.blocks = nn.Sequential(*blocks)
        self.tags = nn.Conv2d(inplanes, classes, 1, bias=False)

    def forward(self, x):
        return torch.sigmoid(self.tags(self.blocks(self.stem(x))).mean((2, 3)))


# ---------------------------------------------------------------- MobileNetV2
def _divisible(v, d=8):
    n = max(d, int(v + d / 2) // d * d)
    return n + d if n < 0.9 * v else n


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin, cout, k=3, stride=1, groups=1):
        super().__init__(nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = int(round(cin * expand))
        self.use_res = stride == 1 and cin == cout
        layers = [] if expand == 1 else [ConvBNReLU(cin, hidden, 1)]
        layers += [ConvBNReLU(hidden, hidden, stride=stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, width_mult=1.0, num_classes=1000, depth_scale=1.0):
        super().__init__()
        setting = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2],
                   [6, 320, 1, 1]]
        cin = _divisible(32 * width_mult)
        self.last = _divisible(1280 * max(1.0, width_mult))
        features = [ConvBNReLU(3, cin, stride=2)]
        for t, c, n, s in setting:
            cout = _divisible(c * width_mult)
            for i in range(max(1, int(math.ceil(n * depth_scale)))):
                features.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        features.append(ConvBNReLU(cin, self.last, 1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(self.last, num_classes))

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


# ---------------------------------------------------------------- ConvNeXt-T
class ChannelsFirstLayerNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(0.5 + torch.rand(dim))

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    def __init__(self, depths=(3, 3, 9, 3), dims=(96, 192, 384, 768), num_classes=1000):
        super().__init__()
        self.downsample = nn.ModuleList([nn.Sequential(nn.Conv2d(3, dims[0], 4, 4), ChannelsFirstLayerNorm(dims[0]))])
        for i in range(3):
            self.downsample.append(nn.Sequential(ChannelsFirstLayerNorm(dims[i]), nn.Conv2d(dims[i], dims[i + 1], 2, 2)))
        self.stages = nn.ModuleList([nn.Sequential(*[ConvNeXtBlock(dims[i]) for _ in range(depths[i])]) for i in range(4)])
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x):
        for down, stage in zip(self.downsample, self.stages):
            x = stage(down(x))
        return self.head(self.norm(x.mean([-2, -1])))


# ---------------------------------------------------------------- ViT-B/16
class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, bias=None):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)
        if bias is not None:
            attn = attn + bias
        attn = attn.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class EncoderBlock(nn.Module):
    def __init__(self, dim, heads, mlp_ratio=4):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * mlp_ratio), nn.GELU(), nn.Linear(dim * mlp_ratio, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    def __init__(self, image=224, patch=16, dim=768, depth=12, heads=12, num_classes=1000):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        tokens = (image // patch) ** 2
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*[EncoderBlock(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


# ---------------------------------------------------------------- WD-style tagger ViT
class WDViT(nn.Module):
    """The shape of SmilingWolf's WD ViT taggers: a timm-style ViT-B/16 at 448x448 over an NHWC input
    (the ONNX files take BGR 0-255 pixels in NHWC), 10,861 tags, each an independent sigmoid."""

    def __init__(self, image=448, patch=16, dim=768, depth=12, heads=12, tags=10861):
        super().__init__()
        self.vit = ViT(image, patch, dim, depth, heads, tags)

    def forward(self, x):
        return torch.sigmoid(self.vit(x.permute(0, 3, 1, 2)))


# ---------------------------------------------------------------- mixed small graph
class SqueezeExcite(nn.Module):
    def __init__(self, c, r=4):
        super().__init__()
        self.reduce = nn.Conv2d(c, c // r, 1)
        self.expand = nn.Conv2d(c // r, c, 1)

    def forward(self, x):
        g = x.mean([-2, -1], keepdim=True)
        return x * F.hardsigmoid(self.expand(F.relu(self.reduce(g))))


class MixedNet(nn.Module):
    """A small graph of the op mix that per-node overhead and fusion decide: conv + BN + hardswish, a
    depthwise and a grouped conv, a squeeze-excite gate, multi-head attention with LayerNorm and GELU,
    token mean pooling (96x96 input)."""

    def __init__(self, c=32, dim=64, heads=4, classes=100):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), nn.Hardswish())
        self.expand = nn.Sequential(nn.Conv2d(c, 4 * c, 1, bias=False), nn.BatchNorm2d(4 * c), nn.Hardswish())
        self.depthwise = nn.Sequential(nn.Conv2d(4 * c, 4 * c, 3, 1, 1, groups=4 * c, bias=False),
                                       nn.BatchNorm2d(4 * c), nn.Hardswish())
        self.se = SqueezeExcite(4 * c)
        self.project = nn.Sequential(nn.Conv2d(4 * c, c, 1, bias=False), nn.BatchNorm2d(c))
        self.grouped = nn.Sequential(nn.Conv2d(c, dim, 3, 2, 1, groups=4, bias=False), nn.BatchNorm2d(dim),
                                     nn.Hardswish())
        self.blocks = nn.Sequential(EncoderBlock(dim, heads), EncoderBlock(dim, heads))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.project(self.se(self.depthwise(self.expand(x))))
        x = self.grouped(x).flatten(2).transpose(1, 2)
        return self.head(self.norm(self.blocks(x)).mean(1))


# ---------------------------------------------------------------- Swin-T
def window_partition(x, w):
    b, h, wd, c = x.shape
    x = x.view(b, h // w, w, wd // w, w, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, c)


def window_reverse(windows, w, h, wd):
    c = windows.shape[-1]
    x = windows.view(-1, h // w, wd // w, w, w, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, h, wd, c)


class WindowAttention(nn.Module):
    def __init__(self, dim, window, heads):
        super().__init__()
        self.window, self.heads = window, heads
        self.scale = (dim // heads) ** -0.5
        self.table = nn.Parameter(torch.randn((2 * window - 1) ** 2, heads) * 0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
        self.register_buffer("index", rel[:, :, 0] * (2 * window - 1) + rel[:, :, 1], persistent=False)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, mask=None):
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.table[self.index.reshape(-1)].reshape(n, n, -1).permute(2, 0, 1)
        attn = attn + bias.unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(-1, nw, self.heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.heads, n, n)
        attn = attn.softmax(-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(bw, n, c))


class SwinBlock(nn.Module):
    def __init__(self, dim, resolution, heads, window, shift):
        super().__init__()
        self.resolution, self.window, self.shift = resolution, window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        mask = None
        if shift > 0:
            h = w = resolution
            img = torch.zeros(1, h, w, 1)
            cnt = 0
            for hs in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
                for ws in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
                    img[:, hs, ws, :] = cnt
                    cnt += 1
            mw = window_partition(img, window).squeeze(-1)
            mask = mw.unsqueeze(1) - mw.unsqueeze(2)
            mask = mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x):
        b, l, c = x.shape
        h = w = self.resolution
        y = self.norm1(x).view(b, h, w, c)
        if self.shift > 0:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        # Pad to a multiple of the window as torchvision's Swin does (a zero-width pad here).
        pad = (self.window - h % self.window) % self.window
        y = F.pad(y, (0, 0, 0, pad, 0, pad))
        y = window_reverse(self.attn(window_partition(y, self.window), self.mask), self.window, h + pad, w + pad)
        y = y[:, :h, :w, :]
        if self.shift > 0:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + y.reshape(b, h * w, c)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    def __init__(self, dim, resolution):
        super().__init__()
        self.resolution = resolution
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x):
        b, l, c = x.shape
        x = x.view(b, self.resolution, self.resolution, c)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


class Swin(nn.Module):
    def __init__(self, image=224, patch=4, dim=96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24), window=7,
                 num_classes=1000):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.patch_norm = nn.LayerNorm(dim)
        res = image // patch
        layers = []
        for i, depth in enumerate(depths):
            for j in range(depth):
                layers.append(SwinBlock(dim, res, heads[i], window, 0 if j % 2 == 0 or res <= window else window // 2))
            if i < len(depths) - 1:
                layers.append(PatchMerging(dim, res))
                dim, res = dim * 2, res // 2
        self.layers = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.patch_norm(self.patch_embed(x).flatten(2).transpose(1, 2))
        x = self.norm(self.layers(x))
        return self.head(x.mean(1))


# ---------------------------------------------------------------- BERT-style encoder
class BertLayer(nn.Module):
    def __init__(self, dim, heads, inter):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.ln1 = nn.LayerNorm(dim, eps=1e-12)
        self.ff1, self.ff2 = nn.Linear(dim, inter), nn.Linear(inter, dim)
        self.ln2 = nn.LayerNorm(dim, eps=1e-12)

    def split(self, x):
        b, s, c = x.size()
        return x.view(b, s, self.heads, c // self.heads).permute(0, 2, 1, 3)

    def forward(self, x, mask_bias):
        q, k, v = self.split(self.q(x)), self.split(self.k(x)), self.split(self.v(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.size(-1)) + mask_bias
        ctx = torch.matmul(scores.softmax(-1), v).permute(0, 2, 1, 3).contiguous()
        ctx = ctx.view(ctx.size(0), ctx.size(1), -1)
        x = self.ln1(x + self.o(ctx))
        return self.ln2(x + self.ff2(F.gelu(self.ff1(x))))


class Bert(nn.Module):
    def __init__(self, vocab=30522, dim=768, layers=12, heads=12, inter=3072, max_pos=512):
        super().__init__()
        self.word = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(max_pos, dim)
        self.token_type = nn.Embedding(2, dim)
        self.max_pos = max_pos
        self.ln = nn.LayerNorm(dim, eps=1e-12)
        self.layers = nn.ModuleList([BertLayer(dim, heads, inter) for _ in range(layers)])
        self.pool = nn.Linear(dim, dim)

    def forward(self, input_ids, attention_mask):
        seq = input_ids.size(1)
        pos = (torch.arange(seq, device=input_ids.device) % self.max_pos).unsqueeze(0)
        types = torch.zeros_like(input_ids)
        types[:, seq // 2:] = 1  # sentence-pair segment ids; an in-place slice store (ScatterND)
        x = self.ln(self.word(input_ids) + self.pos(pos) + self.token_type(types))
        bias = (~attention_mask.bool())[:, None, None, :].to(x.dtype) * torch.finfo(x.dtype).min
        for layer in self.layers:
            x = layer(x, bias)
        # Mean pooling over real tokens (sentence-transformers style) and the BERT pooler.
        m = attention_mask.unsqueeze(-1).to(x.dtype)
        mean = (x * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return mean, torch.tanh(self.pool(x[:, 0]))


# ---------------------------------------------------------------- export
def randomise(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.weight.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            elif isinstance(m, nn.LayerNorm):
                m.weight.copy_(0.5 + torch.rand(m.normalized_shape, generator=g))
                m.bias.copy_(torch.randn(m.normalized_shape, generator=g) * 0.1)
    model.eval()
    return model


def specs(profile):
    ci = profile == "ci"
    img = 64 if ci else 224
    return {
        "resnet50": dict(opset=11, image=img, keep_bn=True,
                         build=lambda: ResNet([3, 4, 6, 3], width=16 if ci else 64, num_classes=100 if ci else 1000)),
        "deepdanbooru": dict(opset=11, image=64 if ci else 512, keep_bn=True,
                             build=lambda: DeepDanbooru(16, (32, 48, 64, 64, 96, 128), (1, 1, 2, 2, 1, 1), 37)
                             if ci else DeepDanbooru()),
        "mobilenetv2": dict(opset=13, image=img, keep_bn=True,
                            build=lambda: MobileNetV2(0.35 if ci else 1.0, 100 if ci else 1000, 0.34 if ci else 1.0)),
        "convnext_t": dict(opset=17, image=img,
                           build=lambda: ConvNeXt((1, 1, 2, 1), (16, 32, 64, 128), 100) if ci else ConvNeXt()),
        "vit_b16": dict(opset=17, image=img,
                        build=lambda: ViT(img, 16, 64, 2, 4, 100) if ci else ViT()),
        "swin_t": dict(opset=16, image=img,
                       build=lambda: Swin(img, 4, 16, (2, 2), (2, 4), 4, 100) if ci else Swin()),
        "wd_vit": dict(opset=17, image=64 if ci else 448, nhwc=True,
                       build=lambda: WDViT(64, 16, 64, 2, 4, 300) if ci else WDViT()),
        "mixed": dict(opset=17, image=96, keep_bn=True, build=lambda: MixedNet()),
        "bert": dict(opset=14, seq=16 if ci else 128,
                     build=lambda: Bert(1000, 64, 2, 4, 128, 64) if ci else Bert()),
    }


def save(arr, path):
    arr = np.ascontiguousarray(arr)
    arr.astype(arr.dtype.newbyteorder("<")).tofile(path)
    return {"dtype": str(arr.dtype), "shape": list(arr.shape), "file": os.path.basename(path)}


def export(name, spec, out_dir, seed):
    torch.manual_seed(seed)
    model = randomise(spec["build"](), seed)
    path = os.path.join(out_dir, name + ".onnx")
    cases = []
    if name == "bert":
        vocab = model.word.num_embeddings
        seq = spec["seq"]
        def make(batch):
            g = torch.Generator().manual_seed(seed + batch)
            ids = torch.randint(0, vocab, (batch, seq), generator=g)
            mask = torch.ones(batch, seq, dtype=torch.int64)
            for i in range(1, batch):  # rows padded to different lengths
                mask[i, seq - 3 * i:] = 0
            return (ids, mask)
        input_names, output_names = ["input_ids", "attention_mask"], ["mean_pooled", "pooled"]
        dynamic = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
                   "mean_pooled": {0: "batch"}, "pooled": {0: "batch"}}
    else:
        def make(batch):
            g = torch.Generator().manual_seed(seed + batch)
            if spec.get("nhwc"):
                return (torch.rand(batch, spec["image"], spec["image"], 3, generator=g) * 255,)
            return (torch.randn(batch, 3, spec["image"], spec["image"], generator=g),)
        input_names, output_names = ["image"], ["logits"]
        dynamic = {"image": {0: "batch"}, "logits": {0: "batch"}}
    with torch.no_grad():
        # PRESERVE (with the model in eval mode) keeps BatchNormalization and Dropout nodes that
        # the exporter's EVAL mode would fold away, so the runtime's own folding is tested.
        mode = torch.onnx.TrainingMode.PRESERVE if spec.get("keep_bn") else torch.onnx.TrainingMode.EVAL
        torch.onnx.export(model, make(2), path, input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic, opset_version=spec["opset"], do_constant_folding=True,
                          training=mode)
        for batch in (1, 4):
            args = make(batch)
            outs = model(*args)
            outs = outs if isinstance(outs, tuple) else (outs,)
            case = {"name": f"b{batch}", "inputs": [], "outputs": []}
            for i, (n, a) in enumerate(zip(input_names, args)):
                case["inputs"].append(dict(name=n, **save(a.numpy(), os.path.join(out_dir, f"{name}.b{batch}.in{i}.bin"))))
            for i, (n, o) in enumerate(zip(output_names, outs)):
                case["outputs"].append(dict(name=n, **save(o.numpy(), os.path.join(out_dir, f"{name}.b{batch}.out{i}.bin"))))
            cases.append(case)
    return {"name": name, "file": os.path.basename(path), "opset": spec["opset"], "cases": cases}


def script_hash():
    with open(os.path.abspath(__file__), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--profile", choices=["ci", "full"], default="ci")
    ap.add_argument("--models", default="")
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    all_specs = specs(args.profile)
    names = [n for n in args.models.split(",") if n] or list(all_specs)
    models = []
    for n in names:
        print(f"exporting {n} ({args.profile})", flush=True)
        models.append(export(n, all_specs[n], args.out, args.seed))
    manifest = {"generator": script_hash(), "profile": args.profile, "torch": torch.__version__, "models": models}
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
