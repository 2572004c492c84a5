#include "models/clip.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace acg2vec::models {

namespace {

nlohmann::json read_config(const std::filesystem::path& dir) {
  std::ifstream in(dir / "config.json");
  if (!in) fail(errc::not_found, "cannot open {}", (dir / "config.json").string());
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail(errc::bad_parameter, "{} is not valid JSON: {}", (dir / "config.json").string(), e.what());
  }
}

void read_common(const nlohmann::json& j, clip_tower_config& c) {
  c.hidden_size = j.value("hidden_size", c.hidden_size);
  c.intermediate_size = j.value("intermediate_size", c.intermediate_size);
  c.num_attention_heads = j.value("num_attention_heads", c.num_attention_heads);
  c.num_hidden_layers = j.value("num_hidden_layers", c.num_hidden_layers);
  c.layer_norm_eps = j.value("layer_norm_eps", c.layer_norm_eps);
  c.act = parse_activation(j.value("hidden_act", std::string("quick_gelu")));
  if (c.num_attention_heads <= 0 || c.hidden_size % c.num_attention_heads != 0) {
    fail(errc::bad_parameter, "CLIP hidden_size {} is not divisible by num_attention_heads {}", c.hidden_size,
         c.num_attention_heads);
  }
}

std::vector<encoder_layer> read_layers(const weight_reader& w, const std::string& prefix, const clip_tower_config& c) {
  std::vector<encoder_layer> layers;
  const auto d = c.hidden_size;
  for (std::int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string l = prefix + "encoder.layers." + std::to_string(i) + ".";
    encoder_layer layer;
    layer.q = linear::read(w, l + "self_attn.q_proj", d, d);
    layer.k = linear::read(w, l + "self_attn.k_proj", d, d);
    layer.v = linear::read(w, l + "self_attn.v_proj", d, d);
    layer.out = linear::read(w, l + "self_attn.out_proj", d, d);
    layer.norm1 = layer_norm::read(w, l + "layer_norm1", d, c.layer_norm_eps);
    layer.fc1 = linear::read(w, l + "mlp.fc1", d, c.intermediate_size);
    layer.fc2 = linear::read(w, l + "mlp.fc2", c.intermediate_size, d);
    layer.norm2 = layer_norm::read(w, l + "layer_norm2", d, c.layer_norm_eps);
    layer.heads = c.num_attention_heads;
    layer.act = c.act;
    layers.push_back(std::move(layer));
  }
  return layers;
}

}  // namespace

clip_tower_config clip_text_config(const nlohmann::json& config) {
  const auto& j = config.contains("text_config") ? config["text_config"] : config;
  clip_tower_config c;
  read_common(j, c);
  c.vocab_size = j.value("vocab_size", c.vocab_size);
  c.max_position_embeddings = j.value("max_position_embeddings", c.max_position_embeddings);
  return c;
}

clip_tower_config clip_vision_config(const nlohmann::json& config) {
  const auto& j = config.contains("vision_config") ? config["vision_config"] : config;
  clip_tower_config c;
  c.hidden_size = 768;
  c.intermediate_size = 3072;
  c.num_attention_heads = 12;
  read_common(j, c);
  c.image_size = j.value("image_size", c.image_size);
  c.patch_size = j.value("patch_size", c.patch_size);
  c.num_channels = j.value("num_channels", c.num_channels);
  if (c.patch_size <= 0 || c.image_size % c.patch_size != 0) {
    fail(errc::bad_parameter, "CLIP image_size {} is not a multiple of patch_size {}", c.image_size, c.patch_size);
  }
  return c;
}

std::int64_t clip_projection_dim(const nlohmann::json& config) { return config.value("projection_dim", std::int64_t{512}); }

std::unique_ptr<clip_text_encoder> clip_text_encoder::load(const std::filesystem::path& dir) {
  const auto config = read_config(dir);
  return std::make_unique<clip_text_encoder>(runtime::load_checkpoint(dir), config, dir.string());
}

clip_text_encoder::clip_text_encoder(const runtime::tensor_map& weights, const nlohmann::json& config,
                                     const std::string& origin)
    : config_(clip_text_config(config)) {
  const weight_reader w(weights, origin);
  const std::string p = "text_model.";
  const auto d = config_.hidden_size;
  token_embedding_ = w.get(p + "embeddings.token_embedding.weight", {config_.vocab_size, d});
  position_embedding_ = w.get(p + "embeddings.position_embedding.weight", {config_.max_position_embeddings, d});
  layers_ = read_layers(w, p, config_);
  final_norm_ = layer_norm::read(w, p + "final_layer_norm", d, config_.layer_norm_eps);
  projection_ = w.get("text_projection.weight", {clip_projection_dim(config), d});
}

at::Tensor clip_text_encoder::encode(const at::Tensor& input_ids) const {
  c10::InferenceMode guard;
  if (input_ids.dim() != 2 || input_ids.size(1) == 0) fail(errc::bad_parameter, "CLIP text input must be [batch, sequence]");
  const auto s = input_ids.size(1);
  if (s > config_.max_position_embeddings) {
    fail(errc::bad_parameter, "CLIP text length {} exceeds the context of {}", s, config_.max_position_embeddings);
  }
  const at::Tensor ids = input_ids.to(at::kLong);
  if (ids.numel() > 0 && (ids.min().item<std::int64_t>() < 0 || ids.max().item<std::int64_t>() >= config_.vocab_size)) {
    fail(errc::bad_parameter, "token id outside the vocabulary of {}", config_.vocab_size);
  }
  at::Tensor x = at::embedding(token_embedding_, ids) + position_embedding_.slice(0, 0, s).unsqueeze(0);
  const at::Tensor mask = causal_mask(s);
  for (const auto& layer : layers_) x = layer.forward_pre_ln(x, mask);
  x = final_norm_(x);
  // The EOT token has the largest id, so the argmax marks where each sequence ends.
  const at::Tensor eot = ids.argmax(-1);
  const at::Tensor pooled = x.index({at::arange(ids.size(0)), eot});
  return at::linear(pooled, projection_);
}

std::unique_ptr<clip_vision_encoder> clip_vision_encoder::load(const std::filesystem::path& dir) {
  const auto config = read_config(dir);
  return std::make_unique<clip_vision_encoder>(runtime::load_checkpoint(dir), config, dir.string());
}

clip_vision_encoder::clip_vision_encoder(const runtime::tensor_map& weights, const nlohmann::json& config,
                                         const std::string& origin)
    : config_(clip_vision_config(config)) {
  const weight_reader w(weights, origin);
  const std::string p = "vision_model.";
  const auto d = config_.hidden_size;
  const auto grid = config_.image_size / config_.patch_size;
  patch_weight_ = w.get(p + "embeddings.patch_embedding.weight", {d, config_.num_channels, config_.patch_size, config_.patch_size});
  class_embedding_ = w.get(p + "embeddings.class_embedding", {d});
  position_embedding_ = w.get(p + "embeddings.position_embedding.weight", {grid * grid + 1, d});
  pre_norm_ = layer_norm::read(w, p + "pre_layrnorm", d, config_.layer_norm_eps);
  layers_ = read_layers(w, p, config_);
  post_norm_ = layer_norm::read(w, p + "post_layernorm", d, config_.layer_norm_eps);
  projection_ = w.get("visual_projection.weight", {clip_projection_dim(config), d});
}

at::Tensor clip_vision_encoder::encode(const at::Tensor& pixels) const {
  c10::InferenceMode guard;
  if (pixels.dim() != 4 || pixels.size(1) != config_.num_channels || pixels.size(2) != config_.image_size ||
      pixels.size(3) != config_.image_size) {
    fail(errc::bad_parameter, "CLIP image input must be [batch, {}, {}, {}]", config_.num_channels, config_.image_size,
         config_.image_size);
  }
  const at::Tensor px = pixels.to(at::kFloat);
  at::Tensor x = at::conv2d(px, patch_weight_, {}, config_.patch_size).flatten(2).transpose(1, 2);  // [B,N,D]
  x = at::cat({class_embedding_.view({1, 1, -1}).expand({x.size(0), 1, x.size(2)}), x}, 1) + position_embedding_.unsqueeze(0);
  x = pre_norm_(x);
  for (const auto& layer : layers_) x = layer.forward_pre_ln(x, at::Tensor());
  return at::linear(post_norm_(x.select(1, 0)), projection_);
}

clip_model clip_model::load(const std::filesystem::path& dir) {
  const auto config = read_config(dir);
  const auto weights = runtime::load_checkpoint(dir);
  clip_model m;
  m.text = std::make_unique<clip_text_encoder>(weights, config, dir.string());
  m.vision = std::make_unique<clip_vision_encoder>(weights, config, dir.string());
  return m;
}

}  // namespace acg2vec::models