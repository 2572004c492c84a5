#include "models/text_model.h"

#include <c10/core/InferenceMode.h>

#include "core/error.h"
#include "runtime/compute.h"
#include "runtime/onnx_loader.h"

#include <fstream>

namespace acg2vec::models {

namespace {

std::filesystem::path find_tokenizer(const model_manifest& m) {
  if (m.raw.contains("tokenizer")) return m.dir / m.raw["tokenizer"].get<std::string>();
  // sentence-transformers folders keep the tokenizer at the root or in 0_Transformer/.
  for (auto p : {m.dir / "tokenizer.json", m.dir / "0_Transformer" / "tokenizer.json", m.dir / "vocab.txt",
                 m.dir / "bpe_simple_vocab_16e6.txt.gz"}) {
    if (std::filesystem::exists(p)) return p;
  }
  fail(errc::not_found, "pack '{}': no tokenizer (tokenizer.json, vocab.txt or bpe_simple_vocab_16e6.txt.gz) in {}",
       m.name, m.dir.string());
}

at::Tensor stack_ids(const std::vector<text::encoding>& enc, bool mask) {
  auto rows = static_cast<std::int64_t>(enc.size());
  auto cols = static_cast<std::int64_t>(enc.at(0).input_ids.size());
  auto t = at::empty({rows, cols}, at::kLong);
  for (std::int64_t r = 0; r < rows; ++r) {
    const auto& src = mask ? enc[r].attention_mask : enc[r].input_ids;
    std::copy(src.begin(), src.end(), t[r].data_ptr<std::int64_t>());
  }
  return t;
}

}  // namespace

std::shared_ptr<text_model> text_model::load(const model_manifest& m) {
  auto out = std::make_shared<text_model>();
  auto tok = find_tokenizer(m);
  auto weights_dir = m.file.empty() ? m.dir : (std::filesystem::is_directory(m.file) ? m.file : m.dir);
  if (m.format == model_format::sentence_transformers) {
    out->wordpiece_ = std::make_unique<text::wordpiece_tokenizer>(
        tok.extension() == ".txt" ? text::wordpiece_tokenizer::from_vocab_txt(tok, {})
                                  : text::wordpiece_tokenizer::from_json_file(tok));
    out->sentence_ = models::sentence_encoder::load(weights_dir);
    out->max_length_ = static_cast<std::size_t>(m.raw.value("max_length", out->sentence_->max_seq_length()));
  } else if (m.format == model_format::hf_clip) {
    out->bpe_ = std::make_unique<text::clip_tokenizer>(tok.extension() == ".gz"
                                                           ? text::clip_tokenizer::from_merges_file(tok)
                                                           : text::clip_tokenizer::from_json_file(tok));
    auto both = models::clip_model::load(weights_dir);
    out->clip_ = std::move(both.text);
    out->vision_ = std::move(both.vision);
    out->max_length_ = static_cast<std::size_t>(m.raw.value("max_length", out->clip_->context_length()));
  } else if (m.format == model_format::onnx) {
    // An exported text tower: token ids (and, with two inputs, the attention mask) → pooled vectors.
    auto vocab_json = tok.extension() == ".json" ? nlohmann::json::parse(std::ifstream(tok), nullptr, false)
                                                 : nlohmann::json();
    bool bpe = tok.extension() == ".gz" ||
               (vocab_json.is_object() && vocab_json.contains("model") && vocab_json["model"].value("type", "") == "BPE");
    if (bpe) {
      out->bpe_ = std::make_unique<text::clip_tokenizer>(tok.extension() == ".gz" ? text::clip_tokenizer::from_merges_file(tok)
                                                                                   : text::clip_tokenizer::from_json(vocab_json));
    } else {
      out->wordpiece_ = std::make_unique<text::wordpiece_tokenizer>(
          tok.extension() == ".txt" ? text::wordpiece_tokenizer::from_vocab_txt(tok, {})
                                    : text::wordpiece_tokenizer::from_json(vocab_json));
    }
    out->graph_ = std::make_unique<runtime::executor>(runtime::load_onnx(m.file));
    if (out->graph_->inputs().empty() || out->graph_->inputs().size() > 2) {
      fail(errc::bad_parameter, "pack '{}': a text graph takes token ids and optionally an attention mask", m.name);
    }
    out->max_length_ = static_cast<std::size_t>(m.raw.value("max_length", bpe ? 77 : 128));
    // The output width, from one dummy row.
    auto ids = at::zeros({1, static_cast<std::int64_t>(out->max_length_)}, at::kLong);
    out->graph_dim_ = out->embed_ids(ids, at::ones_like(ids)).size(1);
  } else {
    fail(errc::bad_parameter, "pack '{}': format '{}' is not a text format", m.name, to_string(m.format));
  }
  return out;
}

std::int64_t text_model::dim() const {
  if (sentence_) return sentence_->dim();
  if (clip_) return clip_->dim();
  return graph_dim_;
}

at::Tensor text_model::embed(const std::vector<std::string>& texts) const {
  if (texts.empty()) fail(errc::bad_parameter, "no text given");
  std::vector<text::encoding> enc;
  for (const auto& t : texts) {
    if (t.empty()) fail(errc::bad_parameter, "text is empty");
    if (t.size() > 100'000) fail(errc::too_large, "text is longer than 100000 bytes");
    enc.push_back(wordpiece_ ? wordpiece_->encode(t, max_length_) : bpe_->encode(t, max_length_));
  }
  return embed_ids(stack_ids(enc, false), stack_ids(enc, true));
}

at::Tensor text_model::embed_ids(const at::Tensor& ids, const at::Tensor& mask) const {
  // Text encoders run on the process's compute thread like every other forward (runtime/compute.h).
  if (!runtime::on_compute_thread_now()) {
    runtime::single_openmp_thread();
    return runtime::on_compute_thread([&] { return embed_ids(ids, mask); });
  }
  c10::InferenceMode guard;
  if (ids.dim() != 2) fail(errc::bad_parameter, "token ids must be [batch, length]");
  auto long_ids = ids.to(at::kLong);
  if (sentence_) {
    auto m = mask.defined() ? mask.to(at::kLong) : (long_ids != 0).to(at::kLong);
    if (m.sizes() != long_ids.sizes()) fail(errc::bad_parameter, "attention_mask must have the shape of input_ids");
    return sentence_->encode(long_ids, m);
  }
  if (graph_) {
    std::vector<at::Tensor> feeds;
    const auto& in = graph_->inputs();
    feeds.push_back(long_ids.to(in[0].dtype));
    if (in.size() > 1) {
      auto m = mask.defined() ? mask : (long_ids != 0);
      feeds.push_back(m.to(in[1].dtype));
    }
    auto out = graph_->run(feeds).at(0);
    if (out.dim() != 2) fail(errc::bad_parameter, "text graph output must be [batch, dim], got rank {}", out.dim());
    return out.to(at::kFloat);
  }
  return clip_->encode(long_ids);
}

clip_image_model::clip_image_model(std::shared_ptr<const models::clip_vision_encoder> vision)
    : vision_(std::move(vision)), spec_(image::clip_preprocess_spec(static_cast<int>(vision_->image_size()))) {}

at::Tensor clip_image_model::embed(const image::image_rgb8& img) const {
  runtime::single_openmp_thread();
  c10::InferenceMode guard;
  auto f = image::preprocess(img, spec_);
  auto t = at::from_blob(f.data.data(), {1, f.channels, f.height, f.width}, at::kFloat);
  return runtime::on_compute_thread([&] {
    c10::InferenceMode compute_guard;
    return vision_->encode(t).squeeze(0).contiguous();
  });
}

}  // namespace acg2vec::models