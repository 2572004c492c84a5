#pragma once
// Building blocks shared by the DistilBERT and CLIP towers: weights pulled by name from a checkpoint with
// shape checks, and encoder layers written with plain ATen ops (inference only, float32).

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/safetensors.h"

namespace acg2vec::models {

/// Hidden activations the configs name ("gelu", "quick_gelu", "gelu_new"/"gelu_pytorch_tanh", "relu").
enum class activation { gelu, quick_gelu, gelu_tanh, relu };

/// @brief Parses an HF activation name; not_implemented for anything else.
activation parse_activation(const std::string& name);
/// @brief Applies the activation.
at::Tensor activate(const at::Tensor& x, activation act);

/// Looks weights up by name under a prefix and checks their shapes.
class weight_reader {
 public:
  weight_reader(const runtime::tensor_map& tensors, std::string origin) : tensors_(tensors), origin_(std::move(origin)) {}
  /// @brief The float32 tensor `name`; bad_parameter when missing or of another shape (-1 matches any size).
  [[nodiscard]] at::Tensor get(const std::string& name, const std::vector<std::int64_t>& shape) const;
  /// @brief True when the checkpoint has `name`.
  [[nodiscard]] bool has(const std::string& name) const { return tensors_.count(name) != 0; }

 private:
  const runtime::tensor_map& tensors_;
  std::string origin_;
};

struct linear {
  at::Tensor weight;  ///< [out, in]
  at::Tensor bias;    ///< [out] or undefined
  [[nodiscard]] at::Tensor operator()(const at::Tensor& x) const;
  static linear read(const weight_reader& w, const std::string& name, std::int64_t in, std::int64_t out, bool bias = true);
};

struct layer_norm {
  at::Tensor weight;
  at::Tensor bias;
  double eps = 1e-5;
  [[nodiscard]] at::Tensor operator()(const at::Tensor& x) const;
  static layer_norm read(const weight_reader& w, const std::string& name, std::int64_t dim, double eps);
};

/// One transformer encoder layer: multi-head self-attention plus a two-layer MLP.
struct encoder_layer {
  linear q, k, v, out;
  layer_norm norm1, norm2;  ///< before (pre-LN) or after (post-LN) the attention and the MLP
  linear fc1, fc2;
  std::int64_t heads = 1;
  activation act = activation::gelu;

  /// @brief Self-attention over x [B,S,D]; `mask` is additive, broadcastable to [B,H,S,S], or undefined.
  [[nodiscard]] at::Tensor attention(const at::Tensor& x, const at::Tensor& mask) const;
  /// @brief x + attn(LN1(x)), then + MLP(LN2(.)) (CLIP).
  [[nodiscard]] at::Tensor forward_pre_ln(const at::Tensor& x, const at::Tensor& mask) const;
  /// @brief LN1(x + attn(x)), then LN2(. + MLP(.)) (BERT/DistilBERT).
  [[nodiscard]] at::Tensor forward_post_ln(const at::Tensor& x, const at::Tensor& mask) const;
};

/// @brief Additive mask [B,1,1,S] from a 0/1 attention mask: 0 where attended, a large negative elsewhere.
at::Tensor padding_mask(const at::Tensor& attention_mask);
/// @brief Additive causal mask [S,S] (0 on and below the diagonal, -inf above).
at::Tensor causal_mask(std::int64_t length);

}  // namespace acg2vec::models