// POST /v1/caption: the caption `acg2vec tag --captions` would write for one uploaded image, built
// by the same captioning functions (models/captioning.h) from form fields named like the command's
// flags, so that the page's Caption panel and the command line agree to the byte.
#include <algorithm>

#include "image/decode.h"
#include "models/captioning.h"
#include "models/postprocess.h"
#include "models/registry.h"
#include "server/routes.h"

namespace acg2vec::server {

using json = nlohmann::json;

namespace {

// Form fields: the tag command's caption flags without "--" (also the keys of its --config file).
constexpr const char* caption_fields[] = {
    "model", "ensemble", "thresh", "general-threshold", "character-threshold", "undesired-tags",
    "remove-underscore", "character-tags-first", "use-rating-tags", "use-rating-tags-as-last-tag",
    "always-first-tags", "tag-replacement", "caption-separator", "escape-parentheses", "mcut", "max-tags",
    "with-scores", "image", "file"};

std::optional<float> ranged(const http_request& req, const char* name, float hi) {
  auto v = find_param(req, name);
  if (!v || v->empty()) return std::nullopt;
  try {
    std::size_t used = 0;
    float f = std::stof(*v, &used);
    if (used != v->size() || !(f >= 0.0f && f <= hi)) throw std::invalid_argument("range");
    return f;
  } catch (const std::exception&) {
    fail(errc::bad_parameter, "'{}' must be a number in [0, {}], got '{}'", name, hi, v->substr(0, 40));
  }
}

bool flag(const http_request& req, const char* name) {
  auto v = find_param(req, name);
  if (!v || v->empty() || *v == "0" || *v == "false" || *v == "no" || *v == "off") return false;
  if (*v == "1" || *v == "true" || *v == "yes" || *v == "on") return true;
  fail(errc::bad_parameter, "'{}' must be true or false, got '{}'", name, v->substr(0, 40));
}

std::vector<std::string> model_names(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : text + ",") {
    if (c == ',') {
      auto b = cur.find_first_not_of(' ');
      auto e = cur.find_last_not_of(' ');
      if (b != std::string::npos) out.push_back(cur.substr(b, e - b + 1));
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (out.empty()) out.emplace_back();  // the first installed tagger
  return out;
}

}  // namespace

void register_caption_routes(http_server& server, model_route_context ctx) {
  auto& reg = *ctx.registry;
  server.add("POST", "/v1/caption", "v1.caption", [&reg, ctx](const http_request& req, http_response& res) {
    if (!req.is_multipart_form_data()) fail(errc::bad_parameter, "expected multipart/form-data with an 'image' part");
    for (const auto& [name, _] : req.files) {
      if (std::find(std::begin(caption_fields), std::end(caption_fields), name) == std::end(caption_fields)) {
        fail(errc::bad_parameter, "unknown field '{}' (fields are the caption flags of 'acg2vec tag' without '--')",
             name.substr(0, 60));
      }
    }
    models::caption_options o;
    o.thresholds.thresh = ranged(req, "thresh", 1.0f);
    o.thresholds.general = ranged(req, "general-threshold", 1.0f);
    o.thresholds.character = ranged(req, "character-threshold", 2.0f);  // above 1 drops them, as the flag
    o.separator = find_param(req, "caption-separator").value_or(", ");
    if (o.separator.empty()) fail(errc::bad_parameter, "'caption-separator' must not be empty");
    o.undesired = models::split_tags(find_param(req, "undesired-tags").value_or(""), o.separator);
    o.always_first = models::split_tags(find_param(req, "always-first-tags").value_or(""), o.separator);
    o.replacements = models::parse_tag_replacement(find_param(req, "tag-replacement").value_or(""));
    o.remove_underscore = flag(req, "remove-underscore");
    o.character_tags_first = flag(req, "character-tags-first");
    o.rating_first = flag(req, "use-rating-tags");
    o.rating_last = flag(req, "use-rating-tags-as-last-tag");
    o.escape_parentheses = flag(req, "escape-parentheses");
    o.mcut = flag(req, "mcut");
    o.with_scores = flag(req, "with-scores");
    o.max_tags = static_cast<int>(int_param(req, "max-tags", 0, 0, 100000));
    o.ensemble = models::parse_ensemble_mode(find_param(req, "ensemble").value_or("mean"));

    std::vector<std::shared_ptr<const models::model_entry>> models;
    for (const auto& name : model_names(find_param(req, "model").value_or(""))) {
      auto e = reg.resolve(name, models::model_task::tagger);
      if (!e->graph || !e->graph->takes_images()) fail(errc::bad_parameter, "model '{}' does not take images", e->manifest.name);
      models.push_back(e);
    }
    auto img = image::decode_image(require_file(req, {"image", "file"}, ctx.max_upload_bytes), decode_limits_of(ctx));

    // The command's steps for one image: per-model scores and thresholds, combined, then built.
    std::vector<models::model_scores> scores;
    for (const auto& e : models) {
      scores.push_back({models::label_scores(e->manifest, e->run_image(img).at(0)),
                        models::resolve_thresholds(o.thresholds, e->manifest)});
    }
    auto combined = models::combine(scores, o.ensemble, o.mcut);
    auto cap = models::build_caption(combined, scores.front().thresholds, o);

    json tags = json::array();
    for (const auto& t : cap.tags) {
      tags.push_back({{"name", t.raw}, {"text", t.text}, {"category", to_string(t.category)}, {"score", t.score}});
    }
    json ratings = json::object();
    for (const auto& t : combined) {
      if (t.category == models::tag_category::rating) ratings[t.name] = t.score;
    }
    json names = json::array();
    for (const auto& e : models) names.push_back(e->manifest.name);
    reply(res, json{{"caption", cap.text},
                    {"tags", tags},
                    {"rating", ratings},
                    {"thresholds", {{"general", cap.thresholds.general}, {"character", cap.thresholds.character}}},
                    {"models", names}});
  }, route_access::read);
}

}  // namespace acg2vec::server