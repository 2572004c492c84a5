#pragma once
// ONNX model files (protobuf, opsets 11-17, external data) to the runtime IR.

#include "runtime/graph.h"

#include <ATen/ATen.h>

#include <filesystem>
#include <string_view>

namespace acg2vec::runtime {

struct onnx_load_options {
  /// Convert fp16 weights, constants, casts and graph inputs/outputs to fp32: libtorch's CPU
  /// kernels do not cover half precision, and fp16 files are mostly stored that way for size.
  bool upcast_fp16 = true;
};

/// @brief Loads an .onnx file; external-data files are resolved next to it (never outside
/// its directory). Throws acg2vec::error on unreadable, malformed or unsupported files.
graph load_onnx(const std::filesystem::path& file, const onnx_load_options& options = {});

/// @brief Loads a serialized ModelProto; base_dir is where external data lives (empty: refused).
graph load_onnx_bytes(std::string_view bytes, const std::filesystem::path& base_dir = {},
                      const onnx_load_options& options = {});

/// @brief Reads a serialized TensorProto file (the input_N.pb / output_N.pb of ONNX test cases).
at::Tensor load_onnx_tensor(const std::filesystem::path& file);

}  // namespace acg2vec::runtime
