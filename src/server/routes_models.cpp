#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>

#include "image/decode.h"
#include "models/postprocess.h"
#include "models/registry.h"
#include "server/request_parsing.h"
#include "server/routes.h"
#include "server/seed_records.h"

namespace acg2vec::server {

using json = nlohmann::json;

namespace {

// The seed's fixed success messages, kept so its clients see the same bodies.
constexpr std::string_view msg_tags = "获取插画预测标签成功";
constexpr std::string_view msg_illust2vec = "获取illust2vec图片特征向量成功";
constexpr std::string_view msg_scores = "获取插画预测分数成功";
constexpr std::string_view msg_labels = "获取插画预测标签成功";

image::image_rgb8 uploaded_image(const http_request& req, const model_route_context& ctx) {
  auto bytes = require_file(req, {"image", "file"}, ctx.max_upload_bytes);
  return image::decode_image(bytes, decode_limits_of(ctx));
}

const models::graph_model& image_graph(const models::model_entry& e) {
  if (!e.graph || !e.graph->takes_images()) {
    fail(errc::bad_parameter, "model '{}' does not take images", e.manifest.name);
  }
  return *e.graph;
}

std::string model_param(const http_request& req) { return find_param(req, "model").value_or(""); }

// A pack the seed's routes call by the seed's TF-Serving name (first of `names` that is installed).
// Missing is 503 naming the pack to install, as for every seed model: the route exists, the
// model behind it is what is unavailable.
std::shared_ptr<const models::model_entry> seed_model(const models::model_registry& reg, std::initializer_list<std::string_view> names) {
  for (auto name : names) {
    try {
      return reg.get(name);
    } catch (const error& e) {
      if (e.code() != errc::not_found) throw;
    }
  }
  fail(errc::unavailable, "the seed's '{}' model is not installed: add a pack named or aliased '{}' to {}",
       *names.begin(), *names.begin(), reg.dir().string());
}

// ?model= names a pack explicitly (404 when unknown); otherwise the seed's pack.
std::shared_ptr<const models::model_entry> seed_or_named(const models::model_registry& reg, const http_request& req,
                                                 std::initializer_list<std::string_view> names) {
  auto name = model_param(req);
  return name.empty() ? seed_model(reg, names) : reg.get(name);
}

// The heads of the 1.0.0 "deepix" model behind POST /images/labels, by their API names.
constexpr std::array<std::string_view, 5> deepix_heads = {"bookmark", "view", "sanity", "restrict", "xRestrict"};

// pix2score's three heads, by the manifest's output names or, failing that, by position.
json score_heads(const models::model_entry& e, const std::vector<at::Tensor>& outputs) {
  json data = json::object();
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    std::string name = i < e.manifest.outputs.size() ? e.manifest.outputs[i].name : e.graph->output_names()[i];
    data[name] = models::to_json_array(outputs[i]);
  }
  return data;
}

}  // namespace

void register_model_routes(http_server& server, model_route_context ctx) {
  auto& reg = *ctx.registry;

  server.add("POST", "/images/labelsByDeepDanbooru", "seed.labelsByDeepDanbooru",
             [&reg, ctx](const http_request& req, http_response& res) {
               auto img = uploaded_image(req, ctx);
               // The DeepDanbooru pack, not whichever tagger loaded first: its vocabulary and its
               // rating:* names are what the seed's clients expect.
               auto e = seed_or_named(reg, req, {"deepdanbooru"});
               if (e->manifest.task != models::model_task::tagger) {
                 fail(errc::bad_parameter, "model '{}' is not a tagger", e->manifest.name);
               }
               auto out = image_graph(*e).run_image(img);
               // The seed drops an empty data member (Jackson NON_EMPTY).
               reply_seed(res, models::tags_above(e->manifest, out.at(0), 0.5f), msg_tags);
             }, route_access::read);

  server.add("POST", "/v1/tag", "v1.tag", [&reg, ctx](const http_request& req, http_response& res) {
    auto img = uploaded_image(req, ctx);
    auto e = reg.resolve(model_param(req), models::model_task::tagger);
    auto out = image_graph(*e).run_image(img);
    models::tag_options opts;
    opts.include_all = bool_param(req, "all");
    for (auto cat : {models::tag_category::general, models::tag_category::character, models::tag_category::copyright, models::tag_category::artist,
                     models::tag_category::meta}) {
      if (auto t = unit_float_param(req, "threshold_" + std::string(to_string(cat)))) opts.thresholds[cat] = *t;
    }
    if (auto t = unit_float_param(req, "threshold")) {
      for (auto cat : {models::tag_category::general, models::tag_category::character}) opts.thresholds.try_emplace(cat, *t);
    }
    reply(res, models::tag_report(e->manifest, out.at(0), opts));
  }, route_access::read);

  server.add("POST", "/models/illust2vec/feature", "seed.illust2vec",
             [&reg, ctx](const http_request& req, http_response& res) {
               auto img = uploaded_image(req, ctx);
               auto e = seed_or_named(reg, req, {"illust2vec", "img_semantics_feature_extract_model"});
               auto out = image_graph(*e).run_image(img);
               reply(res, models::to_json_array(out.at(0)), msg_illust2vec);
             }, route_access::read);

  // ---- the 1.0.0 release's routes (seed-spec §1.2), registered before the item routes ----
  server.add("POST", "/images/features", "seed.images.features",
             [&reg, ctx](const http_request& req, http_response& res) {
               auto img = uploaded_image(req, ctx);
               auto e = seed_or_named(reg, req, {"illust2vec", "img_semantics_feature_extract_model"});
               reply(res, models::to_json_array(image_graph(*e).run_image(img).at(0)), msg_illust2vec);
             }, route_access::read);

  // deepix's five softmax heads, each answered as the label of its best class. Only a pack with
  // those heads can answer; DeepDanbooru or pix2score cannot stand in for it.
  server.add("POST", "/images/labels", "seed.images.labels", [&reg, ctx](const http_request& req, http_response& res) {
    auto img = uploaded_image(req, ctx);
    auto e = seed_or_named(reg, req, {"deepix"});
    const auto& outs = e->manifest.outputs;
    auto head_index = [&](std::string_view head) -> std::optional<std::size_t> {
      for (std::size_t i = 0; i < outs.size(); ++i) {
        if (outs[i].name == head) return i;
      }
      return std::nullopt;
    };
    for (auto head : deepix_heads) {
      if (!head_index(head)) {
        fail(errc::unavailable, "pack '{}' has no '{}' head; /images/labels needs a deepix-style pack with the heads "
             "bookmark, view, sanity, restrict and xRestrict (manifest \"outputs\")", e->manifest.name, head);
      }
    }
    auto out = image_graph(*e).run_image(img);
    json data = json::object();
    for (std::size_t i = 0; i < outs.size() && i < out.size(); ++i) {
      auto probs = out[i].detach().to(at::kFloat).contiguous().flatten();
      auto best = probs.argmax().item<std::int64_t>();
      const auto& labels = outs[i].labels;
      data[outs[i].name] = static_cast<std::size_t>(best) < labels.size() ? json(labels[static_cast<std::size_t>(best)])
                                                                          : json(std::to_string(best));
    }
    reply(res, data, msg_labels);
  }, route_access::read);

  // A stub in the seed (it answered no data). Here: the DeepDanbooru tags as text, underscores
  // read as spaces and ratings left out, which is what a caller of "text labels" can use.
  server.add("POST", "/images/textLabels", "seed.images.textLabels",
             [&reg, ctx](const http_request& req, http_response& res) {
               auto img = uploaded_image(req, ctx);
               auto e = seed_or_named(reg, req, {"deepdanbooru"});
               if (e->manifest.task != models::model_task::tagger) {
                 fail(errc::bad_parameter, "model '{}' is not a tagger", e->manifest.name);
               }
               auto out = image_graph(*e).run_image(img);
               json data = json::array();
               for (auto& t : models::label_scores(e->manifest, out.at(0))) {
                 if (t.category == models::tag_category::rating || t.score < 0.5f) continue;
                 // Kaomoji such as ^_^ keep their underscore; words are joined by it.
                 if (std::any_of(t.name.begin(), t.name.end(), [](unsigned char c) { return std::isalpha(c); })) {
                   std::replace(t.name.begin(), t.name.end(), '_', ' ');
                 }
                 data.push_back(t.name);
               }
               reply_seed(res, data, msg_tags);
             }, route_access::read);

  auto pix2score = [&reg, ctx](const http_request& req, http_response& res) {
    auto img = uploaded_image(req, ctx);
    // The pack answering to the seed's name, else the first scores pack (503 when there is none).
    std::shared_ptr<const models::model_entry> e;
    if (model_param(req).empty()) {
      try {
        e = reg.get("pix2score");
      } catch (const error& err) {
        if (err.code() != errc::not_found) throw;
      }
    }
    if (!e) e = reg.resolve(model_param(req), models::model_task::scores);
    auto out = image_graph(*e).run_image(img);
    reply(res, score_heads(*e, out), msg_scores);
  };
  server.add("POST", "/images/socresByPix2Score", "seed.socresByPix2Score", pix2score, route_access::read);
  server.add("POST", "/pix2score", "seed.pix2score", pix2score, route_access::read);

  server.add("POST", "/v1/classify", "v1.classify", [&reg, ctx](const http_request& req, http_response& res) {
    auto img = uploaded_image(req, ctx);
    auto e = reg.resolve(model_param(req), models::model_task::classifier);
    auto out = image_graph(*e).run_image(img);
    auto classes = models::class_report(e->manifest, out.at(0));
    reply(res, json{{"model", e->manifest.name}, {"top", classes.at(0).at("name")}, {"classes", classes}});
  }, route_access::read);

  server.add("POST", "/v1/embed/image", "v1.embed.image", [&reg, ctx](const http_request& req, http_response& res) {
    auto img = uploaded_image(req, ctx);
    auto name = model_param(req);
    auto e = name.empty() ? reg.resolve("", models::model_task::image_embedding) : reg.get(name);
    if (!e->takes_images()) fail(errc::bad_parameter, "model '{}' does not take images", name);
    auto out = e->run_image(img);
    auto v = models::to_json_array(out.at(0));
    reply(res, json{{"model", e->manifest.name}, {"dim", v.size()}, {"vector", v}});
  }, route_access::read);

  server.add("GET", "/v1/models", "v1.models", [&reg](const http_request&, http_response& res) {
    json list = json::array();
    for (const auto& e : reg.entries()) {
      json m = e->graph ? e->graph->describe() : json{{"name", e->manifest.name}};
      m["state"] = e->state == models::model_state::ready ? "ready" : e->state == models::model_state::loading ? "loading" : "failed";
      if (!e->error.empty()) m["error"] = e->error;
      m["aliases"] = e->manifest.aliases;
      list.push_back(m);
    }
    reply(res, list, "ok", static_cast<std::int64_t>(list.size()));
  }, route_access::read);

  // Raw inference: a multipart image, or JSON {"inputs": [nested numbers]} for a model's first input.
  server.add("POST", R"(/v1/models/([^/:]+)/infer)", "v1.models.infer",
             [&reg, ctx](const http_request& req, http_response& res) {
               auto e = reg.get(req.matches[1].str());
               if (!e->graph) fail(errc::bad_parameter, "model '{}' has no tensor interface", e->manifest.name);
               std::vector<at::Tensor> out;
               if (req.is_multipart_form_data()) {
                 out = image_graph(*e).run_image(uploaded_image(req, ctx));
                 for (auto& o : out) o = o.unsqueeze(0);
               } else {
                 auto body = parse_json_body(req);
                 if (!body.is_object() || !body.contains("inputs")) {
                   fail(errc::bad_parameter, "expected a JSON object with \"inputs\"");
                 }
                 const auto& info = e->graph->executor().inputs().at(0);
                 auto t = models::tensor_from_json(body["inputs"], info.dtype);
                 if (t.dim() > 0 && static_cast<std::size_t>(t.size(0)) > ctx.max_instances) {
                   fail(errc::too_large, "batch of {} rows in one request; the limit is {} (--max-instances)", t.size(0),
                        ctx.max_instances);
                 }
                 check_input_shape(info, t, 0);
                 // Rows run in passes of the pack's max_batch, as predict does.
                 std::int64_t pass = std::max(1, e->manifest.max_batch);
                 std::vector<std::vector<at::Tensor>> parts;
                 std::int64_t rows = t.dim() > 0 ? t.size(0) : 1;
                 for (std::int64_t start = 0; start < rows; start += pass) {
                   auto outs = e->graph->run_batch(t.dim() > 0 ? t.narrow(0, start, std::min(pass, rows - start)) : t);
                   if (parts.empty()) parts.resize(outs.size());
                   for (std::size_t o = 0; o < outs.size(); ++o) parts[o].push_back(std::move(outs[o]));
                 }
                 for (auto& p : parts) out.push_back(p.size() == 1 ? p[0] : at::cat(p, 0));
               }
               json outputs = json::object();
               for (std::size_t i = 0; i < out.size(); ++i) {
                 std::string name =
                     i < e->manifest.outputs.size() ? e->manifest.outputs[i].name : e->graph->output_names()[i];
                 outputs[name] = models::to_nested_json(out[i]);
               }
               reply(res, json{{"model", e->manifest.name}, {"outputs", outputs}});
             }, route_access::read);
}

}  // namespace acg2vec::server