#pragma once
// DistilBERT encoder and the sentence-transformers stack built on it (acgvoc2vec: DistilBERT multilingual
// cased -> masked mean pooling -> Dense 768->512 tanh), loaded from Hugging Face checkpoint folders.

#include <ATen/core/Tensor.h>

#include <filesystem>
#include <memory>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "models/transformer.h"
#include "runtime/safetensors.h"

namespace acg2vec::models {

/// The fields of a DistilBERT config.json that shape the network (HF names and defaults).
struct distilbert_config {
  std::int64_t vocab_size = 30522;
  std::int64_t dim = 768;
  std::int64_t n_layers = 6;
  std::int64_t n_heads = 12;
  std::int64_t hidden_dim = 3072;
  std::int64_t max_position_embeddings = 512;
  activation act = activation::gelu;
  /// @brief Reads a config.json object.
  static distilbert_config from_json(const nlohmann::json& json);
};

/// DistilBertModel: embeddings + LayerNorm, post-LN encoder layers; returns the last hidden state.
class distilbert_encoder {
 public:
  /// @brief Builds from a state dict with DistilBertModel names (an optional "distilbert." prefix is accepted).
  distilbert_encoder(const runtime::tensor_map& weights, const distilbert_config& config, const std::string& origin);
  /// @brief input_ids, attention_mask [B,S] (integer) -> hidden states [B,S,dim] float32.
  [[nodiscard]] at::Tensor forward(const at::Tensor& input_ids, const at::Tensor& attention_mask) const;
  [[nodiscard]] const distilbert_config& config() const { return config_; }

 private:
  distilbert_config config_;
  at::Tensor word_embeddings_;
  at::Tensor position_embeddings_;
  layer_norm embedding_norm_;
  std::vector<encoder_layer> layers_;
};

/// A sentence-transformers model folder (modules.json with Transformer, Pooling, Dense, Normalize modules)
/// whose transformer is DistilBERT; a bare DistilBERT folder gets mean pooling.
class sentence_encoder {
 public:
  enum class pooling { mean, cls, max };

  /// @brief Loads the folder; weights from model.safetensors (sharded or not) or pytorch_model.bin.
  static std::unique_ptr<sentence_encoder> load(const std::filesystem::path& dir);
  /// @brief input_ids, attention_mask [B,S] -> sentence vectors [B,dim()] float32. Thread-safe.
  [[nodiscard]] at::Tensor encode(const at::Tensor& input_ids, const at::Tensor& attention_mask) const;
  /// @brief Output dimension (512 for acgvoc2vec).
  [[nodiscard]] std::int64_t dim() const;
  /// @brief Longest accepted sequence (max_seq_length from sentence_bert_config.json, else the position table).
  [[nodiscard]] std::int64_t max_seq_length() const { return max_seq_length_; }

 private:
  struct dense {
    linear layer;
    bool tanh = false;
  };
  sentence_encoder(std::unique_ptr<distilbert_encoder> encoder, pooling pool, std::vector<dense> dense_layers,
                   bool normalize, std::int64_t max_seq_length);

  std::unique_ptr<distilbert_encoder> encoder_;
  pooling pooling_;
  std::vector<dense> dense_;
  bool normalize_;
  std::int64_t max_seq_length_;
};

}  // namespace acg2vec::models