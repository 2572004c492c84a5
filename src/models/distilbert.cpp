#include "models/distilbert.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace acg2vec::models {

namespace {

nlohmann::json read_json(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) fail(errc::not_found, "cannot open {}", path.string());
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail(errc::bad_parameter, "{} is not valid JSON: {}", path.string(), e.what());
  }
}

void check_ids(const at::Tensor& ids, const at::Tensor& mask, std::int64_t vocab, std::int64_t max_len) {
  if (ids.dim() != 2) fail(errc::bad_parameter, "input_ids must be [batch, sequence], got {} dimensions", ids.dim());
  if (!mask.sizes().equals(ids.sizes())) fail(errc::bad_parameter, "attention_mask shape differs from input_ids");
  if (ids.size(1) > max_len) fail(errc::bad_parameter, "sequence length {} exceeds the model's {}", ids.size(1), max_len);
  if (ids.numel() > 0 && (ids.min().item<std::int64_t>() < 0 || ids.max().item<std::int64_t>() >= vocab)) {
    fail(errc::bad_parameter, "token id outside the vocabulary of {}", vocab);
  }
}

}  // namespace

distilbert_config distilbert_config::from_json(const nlohmann::json& json) {
  distilbert_config c;
  if (json.contains("model_type") && json["model_type"] != "distilbert") {
    fail(errc::not_implemented, "model_type {} is not distilbert", json["model_type"].dump());
  }
  c.vocab_size = json.value("vocab_size", c.vocab_size);
  c.dim = json.value("dim", c.dim);
  c.n_layers = json.value("n_layers", c.n_layers);
  c.n_heads = json.value("n_heads", c.n_heads);
  c.hidden_dim = json.value("hidden_dim", c.hidden_dim);
  c.max_position_embeddings = json.value("max_position_embeddings", c.max_position_embeddings);
  c.act = parse_activation(json.value("activation", std::string("gelu")));
  if (c.n_heads <= 0 || c.dim % c.n_heads != 0) fail(errc::bad_parameter, "dim {} is not divisible by n_heads {}", c.dim, c.n_heads);
  return c;
}

distilbert_encoder::distilbert_encoder(const runtime::tensor_map& weights, const distilbert_config& config,
                                       const std::string& origin)
    : config_(config) {
  const weight_reader w(weights, origin);
  const std::string p = w.has("distilbert.embeddings.word_embeddings.weight") ? "distilbert." : "";
  const auto d = config.dim;
  word_embeddings_ = w.get(p + "embeddings.word_embeddings.weight", {config.vocab_size, d});
  position_embeddings_ = w.get(p + "embeddings.position_embeddings.weight", {config.max_position_embeddings, d});
  embedding_norm_ = layer_norm::read(w, p + "embeddings.LayerNorm", d, 1e-12);
  for (std::int64_t i = 0; i < config.n_layers; ++i) {
    const std::string l = p + "transformer.layer." + std::to_string(i) + ".";
    encoder_layer layer;
    layer.q = linear::read(w, l + "attention.q_lin", d, d);
    layer.k = linear::read(w, l + "attention.k_lin", d, d);
    layer.v = linear::read(w, l + "attention.v_lin", d, d);
    layer.out = linear::read(w, l + "attention.out_lin", d, d);
    layer.norm1 = layer_norm::read(w, l + "sa_layer_norm", d, 1e-12);
    layer.fc1 = linear::read(w, l + "ffn.lin1", d, config.hidden_dim);
    layer.fc2 = linear::read(w, l + "ffn.lin2", config.hidden_dim, d);
    layer.norm2 = layer_norm::read(w, l + "output_layer_norm", d, 1e-12);
    layer.heads = config.n_heads;
    layer.act = config.act;
    layers_.push_back(std::move(layer));
  }
}

at::Tensor distilbert_encoder::forward(const at::Tensor& input_ids, const at::Tensor& attention_mask) const {
  c10::InferenceMode guard;
  check_ids(input_ids, attention_mask, config_.vocab_size, config_.max_position_embeddings);
  const at::Tensor ids = input_ids.to(at::kLong);
  const auto s = ids.size(1);
  at::Tensor x = at::embedding(word_embeddings_, ids) + position_embeddings_.slice(0, 0, s).unsqueeze(0);
  x = embedding_norm_(x);
  const at::Tensor mask = padding_mask(attention_mask);
  for (const auto& layer : layers_) x = layer.forward_post_ln(x, mask);
  return x;
}

sentence_encoder::sentence_encoder(std::unique_ptr<distilbert_encoder> encoder, pooling pool,
                                   std::vector<dense> dense_layers, bool normalize, std::int64_t max_seq_length)
    : encoder_(std::move(encoder)),
      pooling_(pool),
      dense_(std::move(dense_layers)),
      normalize_(normalize),
      max_seq_length_(max_seq_length) {}

std::unique_ptr<sentence_encoder> sentence_encoder::load(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  fs::path transformer_dir = dir;
  pooling pool = pooling::mean;
  std::vector<dense> dense_layers;
  bool normalize = false;
  if (fs::exists(dir / "modules.json")) {
    bool have_transformer = false;
    for (const auto& m : read_json(dir / "modules.json")) {
      const std::string type = m.value("type", "");
      const fs::path sub = dir / m.value("path", "");
      if (type.ends_with(".Transformer")) {
        transformer_dir = sub;
        have_transformer = true;
      } else if (type.ends_with(".Pooling")) {
        const auto cfg = read_json(sub / "config.json");
        if (cfg.value("pooling_mode_mean_tokens", false)) {
          pool = pooling::mean;
        } else if (cfg.value("pooling_mode_cls_token", false)) {
          pool = pooling::cls;
        } else if (cfg.value("pooling_mode_max_tokens", false)) {
          pool = pooling::max;
        } else {
          fail(errc::not_implemented, "{}: only mean, cls or max pooling is supported", sub.string());
        }
      } else if (type.ends_with(".Dense")) {
        const auto cfg = read_json(sub / "config.json");
        const std::string act = cfg.value("activation_function", "torch.nn.modules.activation.Tanh");
        dense layer;
        if (act == "torch.nn.modules.activation.Tanh") {
          layer.tanh = true;
        } else if (act != "torch.nn.modules.linear.Identity") {
          fail(errc::not_implemented, "{}: Dense activation {} is not supported", sub.string(), act);
        }
        const auto tensors = runtime::load_checkpoint(sub);
        layer.layer = linear::read(weight_reader(tensors, sub.string()), "linear", cfg.at("in_features").get<std::int64_t>(),
                                   cfg.at("out_features").get<std::int64_t>(), cfg.value("bias", true));
        dense_layers.push_back(std::move(layer));
      } else if (type.ends_with(".Normalize")) {
        normalize = true;
      } else {
        fail(errc::not_implemented, "{}: sentence-transformers module {} is not supported", dir.string(), type);
      }
    }
    if (!have_transformer) fail(errc::bad_parameter, "{}: modules.json has no Transformer module", dir.string());
  }
  const auto config = distilbert_config::from_json(read_json(transformer_dir / "config.json"));
  std::int64_t max_len = config.max_position_embeddings;
  if (fs::exists(transformer_dir / "sentence_bert_config.json")) {
    max_len = std::min(max_len, read_json(transformer_dir / "sentence_bert_config.json").value("max_seq_length", max_len));
  }
  const auto tensors = runtime::load_checkpoint(transformer_dir);
  auto encoder = std::make_unique<distilbert_encoder>(tensors, config, transformer_dir.string());
  std::int64_t width = config.dim;
  for (const auto& d : dense_layers) {
    if (d.layer.weight.size(1) != width) {
      fail(errc::bad_parameter, "{}: Dense input {} does not match the previous width {}", dir.string(), d.layer.weight.size(1), width);
    }
    width = d.layer.weight.size(0);
  }
  return std::unique_ptr<sentence_encoder>(
      new sentence_encoder(std::move(encoder), pool, std::move(dense_layers), normalize, max_len));
}

at::Tensor sentence_encoder::encode(const at::Tensor& input_ids, const at::Tensor& attention_mask) const {
  c10::InferenceMode guard;
  if (input_ids.dim() == 2 && input_ids.size(1) > max_seq_length_) {
    fail(errc::bad_parameter, "sequence length {} exceeds max_seq_length {}", input_ids.size(1), max_seq_length_);
  }
  const at::Tensor h = encoder_->forward(input_ids, attention_mask);
  const at::Tensor m = attention_mask.to(at::kFloat).unsqueeze(-1);
  at::Tensor x;
  switch (pooling_) {
    case pooling::mean:
      x = (h * m).sum(1) / m.sum(1).clamp_min(1e-9);
      break;
    case pooling::cls:
      x = h.select(1, 0);
      break;
    case pooling::max:
      x = std::get<0>(h.masked_fill(m == 0, -1e9).max(1));
      break;
  }
  for (const auto& d : dense_) {
    x = d.layer(x);
    if (d.tanh) x = at::tanh(x);
  }
  if (normalize_) x = x / x.norm(2, {1}, true).clamp_min(1e-12);
  return x;
}

std::int64_t sentence_encoder::dim() const {
  return dense_.empty() ? encoder_->config().dim : dense_.back().layer.weight.size(0);
}

}  // namespace acg2vec::models