#!/usr/bin/python3
"""Independent PyTorch reference for the Real-CUGAN 2x "pro" models, from their ncnn files.

The network is the upstream architecture (bilibili/ailab Real-CUGAN upcunet_v3: UpCunet2x =
UNet1 with a deconvolution tail + UNet2 with a convolution tail, squeeze-and-excitation blocks,
LeakyReLU 0.1, valid convolutions), written here from torch.nn layers. Its weights are read from
the ncnn .bin with a small reader of its own (it knows only the three weighted layer types these
files use), in the order the .param lists the layers, and assigned to the modules in forward
order with a shape check for each.

Pre/post-processing is realcugan-ncnn-vulkan's for these files (the pro affine input/output
transform of the PyTorch release is folded into the ncnn weights): input = pixel / 255, reflect
padding of 18 pixels (plus one on the right/bottom for an odd size), output = net * 255 (the float
value before rounding is written, so that comparisons are not limited by 8-bit quantisation).

Usage: realcugan_reference.py --models DIR --images DIR --out DIR
  writes DIR/manifest.json and, per (model, case), the uint8 input [H, W, 3], the float32
  reference output [1, 3, 2H, 2W] and, for the first case, the raw network input/output.
"""
import argparse
import json
import os
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

TAG_FP16 = 0x01306B47


def read_ncnn_weights(param_path, bin_path):
    """[(type, name, weight ndarray, bias ndarray|None)] for Convolution/Deconvolution/InnerProduct."""
    with open(param_path) as f:
        lines = [l.split() for l in f.read().splitlines()]
    assert lines[0] == ["7767517"], "not an ncnn param file"
    layers = []
    for tok in lines[2:]:
        if not tok:
            continue
        nb, nt = int(tok[2]), int(tok[3])
        params = dict(p.split("=", 1) for p in tok[4 + nb + nt:])
        layers.append((tok[0], tok[1], params))
    data = open(bin_path, "rb").read()
    pos = 0

    def flagged(n):
        nonlocal pos
        (tag,) = struct.unpack_from("<I", data, pos)
        pos += 4
        if tag == TAG_FP16:
            a = np.frombuffer(data, np.float16, n, pos).astype(np.float32)
            pos += (2 * n + 3) // 4 * 4
        elif tag == 0:
            a = np.frombuffer(data, np.float32, n, pos).copy()
            pos += 4 * n
        else:
            raise ValueError("unexpected storage tag %#x" % tag)
        return a

    def plain(n):
        nonlocal pos
        a = np.frombuffer(data, np.float32, n, pos).copy()
        pos += 4 * n
        return a

    out = []
    for typ, name, p in layers:
        if typ in ("Convolution", "Deconvolution"):
            n_out, k = int(p["0"]), int(p["1"])
            w = flagged(int(p["6"])).reshape(n_out, -1, k, k)
            b = plain(n_out) if p.get("5") == "1" else None
        elif typ == "InnerProduct":
            n_out = int(p["0"])
            w = flagged(int(p["2"])).reshape(n_out, -1)
            b = plain(n_out) if p.get("1") == "1" else None
        else:
            continue
        out.append((typ, name, w, b))
    assert pos == len(data), "the .bin holds %d bytes more than the layers read" % (len(data) - pos)
    return out


class SE(nn.Module):
    def __init__(self, ch, reduction=8):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch // reduction, 1, 1, 0, bias=True)
        self.conv2 = nn.Conv2d(ch // reduction, ch, 1, 1, 0, bias=True)

    def forward(self, x):
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.conv2(F.relu(self.conv1(s))))


class DoubleConv(nn.Module):
    def __init__(self, cin, cmid, cout, se):
        super().__init__()
        self.a = nn.Conv2d(cin, cmid, 3, 1, 0)
        self.b = nn.Conv2d(cmid, cout, 3, 1, 0)
        self.se = SE(cout) if se else None

    def forward(self, x):
        x = F.leaky_relu(self.b(F.leaky_relu(self.a(x), 0.1)), 0.1)
        return self.se(x) if self.se is not None else x

    def modules_in_order(self):
        m = [self.a, self.b]
        if self.se is not None:
            m += [self.se.conv1, self.se.conv2]
        return m


def crop(x, n):
    return x[:, :, n:-n, n:-n]


class UNet1(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = DoubleConv(3, 32, 64, se=False)
        self.conv1_down = nn.Conv2d(64, 64, 2, 2, 0)
        self.conv2 = DoubleConv(64, 128, 64, se=True)
        self.conv2_up = nn.ConvTranspose2d(64, 64, 2, 2, 0)
        self.conv3 = nn.Conv2d(64, 64, 3, 1, 0)
        self.conv_bottom = nn.ConvTranspose2d(64, 3, 4, 2, 3)

    def forward(self, x):
        x1 = self.conv1(x)
        x2 = F.leaky_relu(self.conv1_down(x1), 0.1)
        x2 = F.leaky_relu(self.conv2_up(self.conv2(x2)), 0.1)
        x3 = F.leaky_relu(self.conv3(crop(x1, 4) + x2), 0.1)
        return self.conv_bottom(x3)

    def modules_in_order(self):
        return (self.conv1.modules_in_order() + [self.conv1_down] + self.conv2.modules_in_order() +
                [self.conv2_up, self.conv3, self.conv_bottom])


class UNet2(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = DoubleConv(3, 32, 64, se=False)
        self.conv1_down = nn.Conv2d(64, 64, 2, 2, 0)
        self.conv2 = DoubleConv(64, 64, 128, se=True)
        self.conv2_down = nn.Conv2d(128, 128, 2, 2, 0)
        self.conv3 = DoubleConv(128, 256, 128, se=True)
        self.conv3_up = nn.ConvTranspose2d(128, 128, 2, 2, 0)
        self.conv4 = DoubleConv(128, 64, 64, se=True)
        self.conv4_up = nn.ConvTranspose2d(64, 64, 2, 2, 0)
        self.conv5 = nn.Conv2d(64, 64, 3, 1, 0)
        self.conv_bottom = nn.Conv2d(64, 3, 3, 1, 0)

    def forward(self, x):
        x1 = self.conv1(x)
        x2 = self.conv2(F.leaky_relu(self.conv1_down(x1), 0.1))
        x3 = self.conv3(F.leaky_relu(self.conv2_down(x2), 0.1))
        x3 = F.leaky_relu(self.conv3_up(x3), 0.1)
        x4 = self.conv4(crop(x2, 4) + x3)
        x4 = F.leaky_relu(self.conv4_up(x4), 0.1)
        x5 = F.leaky_relu(self.conv5(crop(x1, 16) + x4), 0.1)
        return self.conv_bottom(x5)

    def modules_in_order(self):
        return (self.conv1.modules_in_order() + [self.conv1_down] + self.conv2.modules_in_order() +
                [self.conv2_down] + self.conv3.modules_in_order() + [self.conv3_up] +
                self.conv4.modules_in_order() + [self.conv4_up, self.conv5, self.conv_bottom])


class UpCunet2x(nn.Module):
    def __init__(self):
        super().__init__()
        self.unet1 = UNet1()
        self.unet2 = UNet2()

    def forward(self, x):  # x: padded network input
        x = self.unet1(x)
        return self.unet2(x) + crop(x, 20)

    def load_ncnn(self, param_path, bin_path):
        weights = read_ncnn_weights(param_path, bin_path)
        mods = self.unet1.modules_in_order() + self.unet2.modules_in_order()
        assert len(weights) == len(mods), "%d weighted layers in the file, %d modules" % (len(weights), len(mods))
        with torch.no_grad():
            for (typ, name, w, b), m in zip(weights, mods):
                t = torch.from_numpy(w)
                if isinstance(m, nn.ConvTranspose2d):
                    assert typ == "Deconvolution", name
                    t = t.permute(1, 0, 2, 3)  # ncnn [out, in, kh, kw] -> torch [in, out, kh, kw]
                elif typ == "InnerProduct":
                    t = t.reshape(t.shape[0], t.shape[1], 1, 1)
                assert tuple(t.shape) == tuple(m.weight.shape), (name, t.shape, m.weight.shape)
                m.weight.copy_(t)
                assert b is not None and m.bias is not None, name
                m.bias.copy_(torch.from_numpy(b))
        return self


def prepare(rgb_u8):
    """uint8 [H, W, 3] -> padded network input [1, 3, H', W'] (realcugan-ncnn-vulkan)."""
    h, w = rgb_u8.shape[:2]
    x = torch.from_numpy(rgb_u8.astype(np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)
    ph, pw = (h + 1) // 2 * 2, (w + 1) // 2 * 2
    return F.pad(x, (18, 18 + pw - w, 18, 18 + ph - h), mode="reflect")


def upscale_float(net, rgb_u8):
    h, w = rgb_u8.shape[:2]
    with torch.no_grad():
        y = net(prepare(rgb_u8))
    return (y[:, :, :2 * h, :2 * w] * 255.0).contiguous()


def write(out_dir, name, array):
    array = np.ascontiguousarray(array)
    array.tofile(os.path.join(out_dir, name))
    return {"file": name, "shape": list(array.shape), "dtype": str(array.dtype)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", required=True, help="folder with up2x-*.param/.bin (or pack folders)")
    ap.add_argument("--images", required=True, help="folder with the source drawings")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    os.makedirs(args.out, exist_ok=True)
    # Two reduced sizes: square and odd-height/non-square (the odd size exercises the extra pad).
    src = Image.open(os.path.join(args.images, "thequestion_sylvie_blue_normal.png")).convert("RGB")
    cases = {"64x64": np.asarray(src.crop((50, 150, 114, 214))),
             "96x81": np.asarray(src.crop((30, 100, 126, 181)))}
    manifest = {"models": []}
    variants = ["up2x-conservative", "up2x-no-denoise", "up2x-denoise3x"]
    for v in variants:
        param = os.path.join(args.models, v + ".param")
        if not os.path.exists(param):
            param = os.path.join(args.models, "realcugan-pro-" + v.split("-", 1)[1], "model.param")
        binf = param[:-len(".param")] + ".bin"
        net = UpCunet2x().load_ncnn(param, binf).eval()
        entry = {"name": v, "param": os.path.abspath(param), "bin": os.path.abspath(binf), "cases": []}
        for i, (cname, rgb) in enumerate(cases.items()):
            prefix = "%s_%s" % (v, cname)
            c = {"name": cname, "input": write(args.out, prefix + "_in.u8", rgb),
                 "output": write(args.out, prefix + "_out.f32", upscale_float(net, rgb).numpy())}
            if i == 0:
                x = prepare(rgb)
                with torch.no_grad():
                    y = net(x)
                c["net_input"] = write(args.out, prefix + "_netin.f32", x.numpy())
                c["net_output"] = write(args.out, prefix + "_netout.f32", y.numpy())
            entry["cases"].append(c)
        manifest["models"].append(entry)
        print("reference:", v, flush=True)
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main()
