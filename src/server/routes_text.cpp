// Text models over HTTP: acgvoc2vec and dclip features (seed paths), batch text embeddings, and
// similar-tag suggestions over the acgvoc2vec pack's tag vocabulary.
#include <spdlog/spdlog.h>

#include <fstream>
#include <atomic>
#include <mutex>

#include "image/decode.h"
#include "models/postprocess.h"
#include "models/registry.h"
#include "server/routes.h"
#include "server/seed_records.h"
#include "text/unicode.h"

namespace acg2vec::server {

using json = nlohmann::json;

namespace {

constexpr std::string_view msg_acgvoc2vec = "获取acgvoc2vec文本特征向量成功";
constexpr std::string_view msg_clip_text = "获取clip文本特征向量成功";
constexpr std::string_view msg_clip_image = "获取clip图片特征向量成功";
constexpr std::size_t max_text_bytes = 100'000;

std::string checked_text(const std::string& text, const char* field) {
  if (text.empty()) fail(errc::bad_parameter, "parameter '{}' is empty", field);
  if (text.size() > max_text_bytes) fail(errc::too_large, "parameter '{}' is longer than {} bytes", field, max_text_bytes);
  text::utf8_decode(text);  // invalid UTF-8 → bad_parameter
  return text;
}

// The pack named by ?model=, else one answering to the seed's name, else the first of the task.
std::shared_ptr<const models::model_entry> text_pack(const models::model_registry& reg, const http_request& req,
                                             std::string_view seed_name, models::model_task task) {
  if (auto name = find_param(req, "model")) return reg.resolve(*name, task);
  try {
    auto e = reg.get(seed_name);
    if (e->manifest.task == task) return e;
  } catch (const error& err) {
    if (err.code() != errc::not_found) throw;
  }
  return reg.resolve("", task);
}

// Danbooru tags use '_' for spaces; the text models read them as words.
std::string spaced(std::string s) {
  for (auto& c : s) {
    if (c == '_') c = ' ';
  }
  return s;
}

/// Vectors of a text pack's tag vocabulary ("vocabulary": {"file", "format", "limit"}), built on
/// first use and kept for the life of the server.
class tag_vocabulary {
 public:
  /// Builds the vector matrix now (once); stop makes a build in progress give up between batches.
  void build_once(const models::model_entry& e, const std::atomic<bool>* stop = nullptr) {
    std::call_once(built_, [&] { build(e, stop); });
  }

  std::vector<std::string> nearest(const models::model_entry& e, const std::string& query, std::size_t k) {
    build_once(e);
    if (!error_.empty()) fail(errc::unavailable, "{}", error_);
    auto q = e.text->embed({spaced(query)})[0];
    q = q / q.norm().clamp_min(1e-12);
    auto scores = at::matmul(matrix_, q);
    auto n = std::min<std::int64_t>(static_cast<std::int64_t>(k) + 1, scores.size(0));
    auto top = at::topk(scores, n);
    auto idx = std::get<1>(top);
    std::vector<std::string> out;
    for (std::int64_t i = 0; i < n && out.size() < k; ++i) {
      const auto& name = names_[static_cast<std::size_t>(idx[i].item<std::int64_t>())];
      if (spaced(name) != spaced(query)) out.push_back(name);
    }
    return out;
  }

 private:
  void build(const models::model_entry& e, const std::atomic<bool>* stop) {
    const auto& raw = e.manifest.raw;
    if (!raw.contains("vocabulary")) {
      error_ = fmt::format("pack '{}' has no tag vocabulary (add \"vocabulary\": {{\"file\": ...}} to its manifest)",
                           e.manifest.name);
      return;
    }
    try {
      const auto& v = raw["vocabulary"];
      auto labels = models::load_labels(e.manifest.dir / v.at("file").get<std::string>(), v.value("format", "lines"));
      std::size_t limit = v.value("limit", std::size_t{20000});
      if (labels.size() > limit) labels.resize(limit);
      std::vector<at::Tensor> parts;
      std::vector<std::string> batch;
      auto flush = [&] {
        if (batch.empty()) return;
        std::vector<std::string> texts;
        for (const auto& b : batch) texts.push_back(spaced(b));
        parts.push_back(e.text->embed(texts));
        for (auto& b : batch) names_.push_back(std::move(b));
        batch.clear();
      };
      for (auto& l : labels) {
        batch.push_back(l.name);
        if (batch.size() == 64) flush();
        if (stop && stop->load()) {
          error_ = "the server is shutting down";
          return;
        }
      }
      flush();
      if (parts.empty()) fail(errc::bad_parameter, "the vocabulary is empty");
      auto m = at::cat(parts, 0);
      matrix_ = m / m.norm(2, 1, true).clamp_min(1e-12);
      spdlog::info("tag vocabulary of '{}': {} tags", e.manifest.name, names_.size());
    } catch (const std::exception& ex) {
      error_ = fmt::format("tag vocabulary of '{}' could not be built: {}", e.manifest.name, ex.what());
    }
  }

  std::once_flag built_;
  std::string error_;
  std::vector<std::string> names_;
  at::Tensor matrix_;
};

}  // namespace

text_route_tasks register_text_routes(http_server& server, model_route_context ctx) {
  auto& reg = *ctx.registry;

  auto acgvoc2vec_feature = [&reg](const http_request& req, http_response& res) {
    auto text = checked_text(require_param(req, "text"), "text");
    auto e = text_pack(reg, req, "acgvoc2vec", models::model_task::text_embedding);
    reply(res, models::to_json_array(e->text->embed({text})[0]), msg_acgvoc2vec);
  };
  server.add("POST", "/models/acgvoc2vec/feature", "seed.acgvoc2vec", acgvoc2vec_feature, route_access::read);
  // The 1.0.0 release's text route. The seed sent word ids to the image model there; here the
  // text goes through the acgvoc2vec tokenizer and model, as /models/acgvoc2vec/feature does.
  server.add("POST", "/texts/features", "seed.texts.features", acgvoc2vec_feature, route_access::read);

  server.add("POST", "/models/dclip_text/feature", "seed.dclip_text", [&reg](const http_request& req, http_response& res) {
    auto text = checked_text(require_param(req, "text"), "text");
    auto e = text_pack(reg, req, "dclip_text", models::model_task::clip_text);
    reply(res, models::to_json_array(e->text->embed({text})[0]), msg_clip_text);
  }, route_access::read);

  server.add("POST", "/models/dclip_image/feature", "seed.dclip_image", [&reg, ctx](const http_request& req, http_response& res) {
    auto bytes = require_file(req, {"image", "file"}, ctx.max_upload_bytes);
    auto img = image::decode_image(bytes, decode_limits_of(ctx));
    auto e = text_pack(reg, req, "dclip_image", models::model_task::clip_image);
    reply(res, models::to_json_array(e->run_image(img).at(0)), msg_clip_image);
  }, route_access::read);

  server.add("POST", "/v1/embed/text", "v1.embed.text", [&reg](const http_request& req, http_response& res) {
    std::vector<std::string> texts;
    std::string model;
    if (req.get_header_value("Content-Type").find("application/json") != std::string::npos) {
      auto body = parse_json_body(req);
      if (!body.is_object() || !body.contains("texts") || !body["texts"].is_array()) {
        fail(errc::bad_parameter, "expected {{\"texts\": [\"...\"], \"model\"?: \"...\"}}");
      }
      if (body["texts"].size() > 256) fail(errc::too_large, "at most 256 texts per request");
      for (const auto& t : body["texts"]) {
        if (!t.is_string()) fail(errc::bad_parameter, "every text must be a string");
        texts.push_back(checked_text(t.get<std::string>(), "texts"));
      }
      model = body.value("model", "");
    } else {
      texts.push_back(checked_text(require_param(req, "text"), "text"));
      model = find_param(req, "model").value_or("");
    }
    std::shared_ptr<const models::model_entry> e;
    if (!model.empty()) {
      e = reg.get(model);
      if (!e->text) fail(errc::bad_parameter, "model '{}' is not a text model", model);
    } else if (auto t = reg.first(models::model_task::text_embedding)) {
      e = t;
    } else {
      e = reg.resolve("", models::model_task::clip_text);
    }
    auto v = e->text->embed(texts);
    json vectors = json::array();
    for (std::int64_t i = 0; i < v.size(0); ++i) vectors.push_back(models::to_json_array(v[i]));
    reply(res, json{{"model", e->manifest.name}, {"dim", v.size(1)}, {"vectors", vectors}}, "ok",
          static_cast<std::int64_t>(texts.size()));
  }, route_access::read);

  auto vocab = std::make_shared<std::map<std::string, std::unique_ptr<tag_vocabulary>>>();
  auto vocab_mutex = std::make_shared<std::mutex>();
  auto vocabulary_of = [vocab, vocab_mutex](const models::model_entry& e) {
    std::lock_guard lock(*vocab_mutex);
    auto& slot = (*vocab)[e.manifest.name];
    if (!slot) slot = std::make_unique<tag_vocabulary>();
    return slot.get();
  };
  server.add("GET", "/acgvoc2vec", "seed.acgvoc2vec.similar", [&reg, vocabulary_of](const http_request& req, http_response& res) {
    auto tag = checked_text(require_param(req, "tag"), "tag");
    auto k = static_cast<std::size_t>(int_param(req, "k", 20, 1, 200));
    auto e = text_pack(reg, req, "acgvoc2vec", models::model_task::text_embedding);
    reply_seed(res, vocabulary_of(*e)->nearest(*e, tag, k), "ok");
  }, route_access::read);

  // The demo page gives up after 50 s; embedding a full tag vocabulary can take longer than that
  // on a CPU, so the default pack's index is built as soon as the models have loaded.
  auto stop = std::make_shared<std::atomic<bool>>(false);
  text_route_tasks tasks;
  tasks.warm_up = [&reg, vocabulary_of, stop] {
    reg.wait();
    std::shared_ptr<const models::model_entry> e;
    try {
      e = reg.get("acgvoc2vec");
    } catch (const error&) {
      e = reg.first(models::model_task::text_embedding);
    }
    if (!e || !e->text || !e->manifest.raw.contains("vocabulary")) return;
    spdlog::info("building the tag vocabulary of '{}' in the background", e->manifest.name);
    vocabulary_of(*e)->build_once(*e, stop.get());
  };
  tasks.cancel = [stop] { stop->store(true); };
  return tasks;
}

}  // namespace acg2vec::server