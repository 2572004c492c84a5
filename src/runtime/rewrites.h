#pragma once
// Load-time graph rewrites of the executor (executor.cpp runs them in this order, after pruning
// to the requested outputs and before sorting). Each leaves the graph's results unchanged and
// never fuses through a value that is requested or read by more than one node.

#include "runtime/graph.h"

#include <set>
#include <string>

namespace acg2vec::runtime {

/// @brief True for the default ONNX domain ("" or "ai.onnx").
inline bool is_default_domain(const std::string& d) { return d.empty() || d == "ai.onnx"; }

/// @brief A Pad of zeros on the spatial axes whose only reader is a Conv becomes that Conv's
/// padding (Keras/TF SAME padding of strided convolutions).
void fold_pads(graph& g, const std::set<std::string>& keep);
/// @brief Folds y = BN(Conv(x)) with constant parameters into the convolution's weights and bias.
void fold_batch_norms(graph& g, const std::set<std::string>& keep);
/// @brief Exported GELU chains become Gelu; MatMul(x, W) + b with constant W, b becomes MatMulAdd.
void fuse_patterns(graph& g, const std::set<std::string>& keep);
/// @brief Every Conv / ConvTranspose moves to the fused domain (oneDNN directly, fused_conv.h),
/// absorbing a following Add and activation where the values in between are private.
void fuse_convolutions(graph& g, const std::set<std::string>& keep);
/// @brief MatMulAdd followed by Relu or Gelu (approximate none / tanh) runs the activation in
/// place on the GEMM's result (attribute "activation").
void fuse_gemm_activations(graph& g, const std::set<std::string>& keep);
/// @brief MatMul -> [scalar Mul/Div] -> Softmax(last axis) -> MatMul, with an optional scalar Mul
/// on the first MatMul's left input, becomes one Attention(Q, K^T, V) node (ops_fused.cpp).
void fuse_attention(graph& g, const std::set<std::string>& keep);
/// @brief The decomposed LayerNorm that torch.onnx exports before opset 17 (ReduceMean, Sub, Pow,
/// ReduceMean, Add, Sqrt, Div, Mul, Add over the last axis) becomes one LayerNormalization node.
void fuse_layer_norms(graph& g, const std::set<std::string>& keep);

}  // namespace acg2vec::runtime
