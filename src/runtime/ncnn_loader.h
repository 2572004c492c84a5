#pragma once
// ncnn model files (a .param text graph and its .bin weights) to the runtime IR.
//
// .param: the magic line 7767517, "layer_count blob_count", then one line per layer:
// "Type name bottom_count top_count bottoms... tops... k=v..." where v is an int, a float or,
// for keys at or below -23300, an array "n,v1,...,vn" of parameter -key-23300.
// .bin: the layers' weights in layer order; each weight tensor that ncnn loads "with a flag"
// starts with a 4-byte tag that says how it is stored (fp32, fp16, int8, or 8-bit indices into a
// 256-entry float table); biases and scales are plain fp32 without a tag.
//
// Layout: ncnn blobs have no batch and 1 to 3 dimensions (w; w,h; w,h,c). In the IR they get a
// leading batch of 1: a 3-D blob is NCHW [1,c,h,w], a 2-D one [1,h,w], a 1-D one [1,w]. ncnn's
// broadcasting of a 1-D blob against a 3-D one (per channel) is translated explicitly.
//
// Layers: Input, Convolution, ConvolutionDepthWise, Deconvolution (fused activations: ReLU,
// leaky ReLU, clip, sigmoid, mish, hard-swish), ReLU (slope), Sigmoid, TanH, Eltwise, BinaryOp,
// Crop (offset/size and starts/ends/axes forms), Pooling (max/avg, global), Padding (constant,
// replicate, reflect), Interp (nearest, bilinear, bicubic), Split, Concat, InnerProduct,
// PixelShuffle, Flatten, Reshape, Dropout/Noop. Anything else is a load error naming the layer.
// int8 weights are dequantised with their per-channel scales and run in fp32.

#include "runtime/graph.h"

#include <filesystem>
#include <string_view>

namespace acg2vec::runtime {

/// @brief Loads an ncnn model; throws acg2vec::error (bad_parameter for malformed or unsupported
/// content, naming the line or layer; not_found for a missing file).
graph load_ncnn(const std::filesystem::path& param_file, const std::filesystem::path& bin_file);

/// @brief As load_ncnn on the files' contents (the fuzz target's entry).
graph load_ncnn_bytes(std::string_view param_text, std::string_view bin_bytes);

}  // namespace acg2vec::runtime
