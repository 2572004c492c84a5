#pragma once
// CLIP text and vision towers (HF CLIPModel key names; any size via config.json). dclip is a CLIP ViT-L/14
// fine-tune: text -> 768 (argmax-EOT pooling, text_projection), image -> 768 (class token, visual_projection).
// Outputs are the raw projections, not L2-normalised, as the seed serves them.

#include <ATen/core/Tensor.h>

#include <filesystem>
#include <memory>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "models/transformer.h"
#include "runtime/safetensors.h"

namespace acg2vec::models {

struct clip_tower_config {
  std::int64_t hidden_size = 512;
  std::int64_t intermediate_size = 2048;
  std::int64_t num_attention_heads = 8;
  std::int64_t num_hidden_layers = 12;
  double layer_norm_eps = 1e-5;
  activation act = activation::quick_gelu;
  // text only
  std::int64_t vocab_size = 49408;
  std::int64_t max_position_embeddings = 77;
  // vision only
  std::int64_t image_size = 224;
  std::int64_t patch_size = 32;
  std::int64_t num_channels = 3;
};

/// @brief Text tower settings from a CLIPConfig (its text_config) or a CLIPTextConfig; HF defaults fill gaps.
clip_tower_config clip_text_config(const nlohmann::json& config);
/// @brief Vision tower settings from a CLIPConfig (its vision_config) or a CLIPVisionConfig.
clip_tower_config clip_vision_config(const nlohmann::json& config);
/// @brief projection_dim of a CLIPConfig (512 when absent).
std::int64_t clip_projection_dim(const nlohmann::json& config);

class clip_text_encoder {
 public:
  /// @brief Loads config.json and the weights (model.safetensors, sharded index or pytorch_model.bin) of a folder.
  static std::unique_ptr<clip_text_encoder> load(const std::filesystem::path& dir);
  /// @brief Builds from weights already loaded (e.g. shared with the vision tower).
  clip_text_encoder(const runtime::tensor_map& weights, const nlohmann::json& config, const std::string& origin);
  /// @brief Token ids [B,S] (S <= max positions) -> [B,dim()] float32, pooled at each row's largest id (EOT).
  [[nodiscard]] at::Tensor encode(const at::Tensor& input_ids) const;
  [[nodiscard]] std::int64_t dim() const { return projection_.size(0); }
  [[nodiscard]] std::int64_t context_length() const { return config_.max_position_embeddings; }

 private:
  clip_tower_config config_;
  at::Tensor token_embedding_;
  at::Tensor position_embedding_;
  std::vector<encoder_layer> layers_;
  layer_norm final_norm_;
  at::Tensor projection_;  ///< [proj, hidden]
};

class clip_vision_encoder {
 public:
  /// @brief Loads config.json and the weights of a folder.
  static std::unique_ptr<clip_vision_encoder> load(const std::filesystem::path& dir);
  /// @brief Builds from weights already loaded.
  clip_vision_encoder(const runtime::tensor_map& weights, const nlohmann::json& config, const std::string& origin);
  /// @brief Normalised pixels NCHW [B,3,image_size,image_size] float -> [B,dim()] float32.
  [[nodiscard]] at::Tensor encode(const at::Tensor& pixels) const;
  [[nodiscard]] std::int64_t dim() const { return projection_.size(0); }
  [[nodiscard]] std::int64_t image_size() const { return config_.image_size; }

 private:
  clip_tower_config config_;
  at::Tensor patch_weight_;  ///< [hidden, C, P, P]
  at::Tensor class_embedding_;
  at::Tensor position_embedding_;
  layer_norm pre_norm_;
  std::vector<encoder_layer> layers_;
  layer_norm post_norm_;
  at::Tensor projection_;
};

/// Both towers of one CLIPModel folder, built from a single read of its weights.
struct clip_model {
  std::unique_ptr<clip_text_encoder> text;
  std::unique_ptr<clip_vision_encoder> vision;
  /// @brief Loads config.json and the weights once and builds both towers.
  static clip_model load(const std::filesystem::path& dir);
};

}  // namespace acg2vec::models