#!/usr/bin/python3
"""Writes the seed corpus of the ncnn fuzz target: .param text, one NUL byte, then the .bin.

Small hand-built models covering every layer type the loader translates and every weight
storage format (fp32, fp16, int8 with scales, 8-bit table), plus the real Real-CUGAN .param
with a truncated weight file (a load error deep in the weights).
Usage: fuzz/make_ncnn_corpus.py   (writes fuzz/corpus/ncnn/)
"""
import os
import struct

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "ncnn")
rng = np.random.default_rng(7)


def fp32(n):
    return struct.pack("<I", 0) + rng.standard_normal(n).astype("<f4").tobytes()


def raw(n):
    return rng.standard_normal(n).astype("<f4").tobytes()


def pad4(b):
    return b + b"\0" * (-len(b) % 4)


def fp16(n):
    return struct.pack("<I", 0x01306B47) + pad4(rng.standard_normal(n).astype("<f2").tobytes())


def int8(n):
    return struct.pack("<I", 0x000D4B38) + pad4(rng.integers(-127, 128, n).astype("i1").tobytes())


def table(n):
    return struct.pack("<I", 0x01010101) + np.linspace(-1, 1, 256).astype("<f4").tobytes() + \
        pad4(rng.integers(0, 256, n).astype("u1").tobytes())


def write(name, param, binary):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(param.encode() + b"\0" + binary)


def main():
    os.makedirs(OUT, exist_ok=True)
    write("conv_fp32.ncnn", "7767517\n2 2\nInput in0 0 1 in0\n"
          "Convolution conv 1 1 in0 out 0=4 1=3 3=2 4=1 5=1 6=108 9=2 -23310=1,2.000000e-01\n", fp32(108) + raw(4))
    write("conv_fp16_table.ncnn", "7767517\n3 3\nInput in0 0 1 in0\n"
          "Convolution a 1 1 in0 x 0=3 1=3 5=1 6=54 9=4\nConvolution b 1 1 x out 0=3 1=1 5=1 6=9 9=6\n",
          fp16(54) + raw(3) + table(9) + raw(3))
    write("conv_int8.ncnn", "7767517\n2 2\nInput in0 0 1 in0\nConvolution conv 1 1 in0 out 0=3 1=3 5=1 6=54 8=1\n",
          int8(54) + raw(3) + raw(3) + raw(1))
    write("deconv_dw.ncnn", "7767517\n3 3\nInput in0 0 1 in0\n"
          "Deconvolution up 1 1 in0 a 0=6 1=4 3=2 4=3 5=1 6=384 9=1 18=1 19=1\n"
          "ConvolutionDepthWise dw 1 1 a out 0=6 1=3 4=-233 5=1 6=54 7=6 9=3 -23310=2,0.0,6.0\n",
          fp32(384) + raw(6) + fp32(54) + raw(6))
    write("se_block.ncnn", "7767517\n16 22\nInput in0 0 1 in0 0=12 1=12 2=8\nSplit sp 1 3 in0 s0 s1 s2\n"
          "Pooling gap 1 1 s0 g 0=1 4=1\nInnerProduct fc1 1 1 g f1 0=2 1=1 2=16 9=1\n"
          "InnerProduct fc2 1 1 f1 f2 0=8 1=1 2=16 9=4\nBinaryOp scale 2 1 s1 f2 se 0=2\n"
          "Crop crop 1 1 s2 c -23309=2,2,2 -23310=2,-2,-2 -23311=2,-2,-1\nPadding pad 1 1 c p 0=2 1=2 2=2 3=2 4=2\n"
          "Eltwise sum 2 1 se p e 0=1 -23301=2,1.0,-0.5\nReLU lrelu 1 1 e r 0=1.000000e-01\n"
          "Pooling maxp 1 1 r m 0=0 1=2 2=2\nInterp up 1 1 m u 0=2 3=12 4=12\nConcat cat 2 1 u r k 0=0\n"
          "PixelShuffle ps 1 1 k q 0=2\nSigmoid sig 1 1 q out\nFlatten flat 1 1 g flat_out\n",
          fp32(16) + raw(2) + fp32(16) + raw(8))
    write("reshape_binary.ncnn", "7767517\n5 5\nInput in0 0 1 in0\nReshape r 1 1 in0 a 0=6 1=4\n"
          "BinaryOp sub 1 1 a b 0=7 1=1 2=1.0\nReshape back 1 1 b c 0=4 1=3 2=2\n"
          "Crop old 1 1 c out 0=1 1=1 3=2 4=1\n", b"")
    cugan = os.path.join(HERE, "..", "models", "realcugan-pro-conservative")
    with open(os.path.join(cugan, "model.param")) as f:
        param = f.read()
    with open(os.path.join(cugan, "model.bin"), "rb") as f:
        write("realcugan_truncated.ncnn", param, f.read(4096))


if __name__ == "__main__":
    main()
