#include "server/request_parsing.h"

#include "core/json_guard.h"

#include <charconv>

#include "core/base64.h"

namespace acg2vec::server {

using json = nlohmann::json;

namespace {

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == ',' || c == ' ') {
      if (!cur.empty()) out.push_back(std::move(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

std::vector<std::string> json_list(const json& j, const char* field) {
  if (j.is_string()) return split_list(j.get<std::string>());
  if (!j.is_array()) fail(errc::bad_parameter, "'{}' must be a list of tags", field);
  std::vector<std::string> out;
  for (const auto& e : j) {
    if (!e.is_string()) fail(errc::bad_parameter, "'{}' must hold strings", field);
    out.push_back(e.get<std::string>());
  }
  return out;
}

std::size_t size_field(const json& j, const char* name, std::size_t fallback) {
  if (!j.contains(name)) return fallback;
  const auto& v = j[name];
  if (!v.is_number_integer()) fail(errc::bad_parameter, "'{}' must be an integer", name);
  auto n = v.get<std::int64_t>();
  if (n < 0) fail(errc::bad_parameter, "'{}' must not be negative", name);
  return static_cast<std::size_t>(n);
}

}  // namespace

tf_predict_body parse_tf_predict_body(const json& body) {
  if (!body.is_object()) fail(errc::bad_parameter, "request body must be a JSON object");
  tf_predict_body out;
  out.row = body.contains("instances");
  if (!out.row && !body.contains("inputs")) {
    fail(errc::bad_parameter, "missing 'instances' or 'inputs' key in the request body");
  }
  out.items = out.row ? body["instances"] : body["inputs"];
  // Columnar form with a named input: {"inputs": {"b64_input_bytes": [...]}}.
  if (!out.row && out.items.is_object() && out.items.size() == 1) out.items = out.items.begin().value();
  if (!out.items.is_array()) out.items = json::array({out.items});
  if (out.items.empty()) fail(errc::bad_parameter, "no instances in the request");
  if (out.items.size() > 1024) fail(errc::too_large, "at most 1024 instances per request");
  return out;
}

std::string tf_instance_image_bytes(const json& instance) {
  const json* v = &instance;
  if (v->is_object() && !v->contains("b64")) {
    if (v->size() != 1) fail(errc::bad_parameter, "an image instance must have exactly one field (b64_input_bytes)");
    v = &v->begin().value();
  }
  if (v->is_object()) {
    if (!v->contains("b64") || !(*v)["b64"].is_string()) fail(errc::bad_parameter, "expected {{\"b64\": \"...\"}}");
    v = &(*v)["b64"];
  }
  if (!v->is_string()) fail(errc::bad_parameter, "an image instance must be a base64 string");
  auto bytes = base64_decode(v->get<std::string>());
  if (!bytes) fail(errc::bad_parameter, "image input is not valid base64");
  return *bytes;
}

json parse_metadata_param(const std::optional<std::string>& text, const char* field) {
  if (!text || text->empty()) return json::object();
  json j = parse_json_guarded(*text, fmt::format("'{}'", field));
  if (!j.is_object()) fail(errc::bad_parameter, "'{}' must be a JSON object", field);
  return j;
}

std::string parse_seed_item_id(const std::string& text) {
  std::int64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || p != text.data() + text.size()) {
    fail(errc::bad_parameter, "imageId must be an integer, got '{}'", text.substr(0, 64));
  }
  if (v < 0) fail(errc::bad_parameter, "imageId must not be negative, got {}", v);
  return std::to_string(v);
}

std::optional<float> unit_float_param(const http_request& req, const std::string& name) {
  auto v = find_param(req, name);
  if (!v) return std::nullopt;
  try {
    std::size_t used = 0;
    float f = std::stof(*v, &used);
    if (used != v->size() || !(f >= 0.0f && f <= 1.0f)) throw std::invalid_argument("range");
    return f;
  } catch (const std::exception&) {
    fail(errc::bad_parameter, "parameter '{}' must be a number in [0, 1]", name);
  }
}

bool bool_param(const http_request& req, const std::string& name) {
  auto v = find_param(req, name);
  return v && (*v == "1" || *v == "true" || *v == "yes");
}

search::search_request search_request_from_json(const json& b) {
  search::search_request r;
  if (!b.is_object()) fail(errc::bad_parameter, "search body must be a JSON object");
  if (b.contains("id")) r.item_id = store::item_id_from_json(b["id"]).first;
  if (b.contains("text")) {
    if (!b["text"].is_string() || b["text"].get<std::string>().empty()) fail(errc::bad_parameter, "'text' must be a non-empty string");
    r.text = b["text"].get<std::string>();
  }
  if (b.contains("space")) r.space = b["space"].get<std::string>();
  r.k = size_field(b, "k", 10);
  r.offset = size_field(b, "offset", 0);
  if (b.contains("cutoff")) {
    if (!b["cutoff"].is_number()) fail(errc::bad_parameter, "'cutoff' must be a number");
    r.cutoff = b["cutoff"].get<float>();
  }
  const json tags = b.value("tags", json::object());
  if (tags.is_array() || tags.is_string()) {
    r.filter.all_of = json_list(tags, "tags");
  } else if (tags.is_object()) {
    if (tags.contains("all")) r.filter.all_of = json_list(tags["all"], "tags.all");
    if (tags.contains("any")) r.filter.any_of = json_list(tags["any"], "tags.any");
    if (tags.contains("none")) r.filter.none_of = json_list(tags["none"], "tags.none");
  } else {
    fail(errc::bad_parameter, "'tags' must be a list or {{all, any, none}}");
  }
  if (b.contains("rating")) r.filter.rating = b["rating"].get<std::string>();
  if (b.contains("tagger")) r.filter.tagger = b["tagger"].get<std::string>();
  if (b.contains("min_score")) r.filter.min_score = b["min_score"].get<float>();
  return r;
}

search::search_request search_request_from_params(const http_request& req) {
  json b = json::object();
  for (const char* f : {"id", "text", "space", "tags", "any", "none", "rating", "tagger"}) {
    if (auto v = find_param(req, f)) b[f] = *v;
  }
  if (b.contains("any") || b.contains("none")) {
    json t = json::object();
    if (b.contains("tags")) t["all"] = b["tags"];
    if (b.contains("any")) t["any"] = b["any"];
    if (b.contains("none")) t["none"] = b["none"];
    b.erase("any");
    b.erase("none");
    b["tags"] = t;
  }
  auto r = search_request_from_json(b);
  r.k = static_cast<std::size_t>(int_param(req, "k", 10, 1, 1000));
  r.offset = static_cast<std::size_t>(int_param(req, "offset", 0, 0, 100000));
  if (auto c = find_param(req, "cutoff")) {
    try {
      r.cutoff = std::stof(*c);
    } catch (const std::exception&) {
      fail(errc::bad_parameter, "'cutoff' must be a number");
    }
  }
  if (auto m = find_param(req, "min_score")) {
    try {
      r.filter.min_score = std::stof(*m);
    } catch (const std::exception&) {
      fail(errc::bad_parameter, "'min_score' must be a number");
    }
  }
  return r;
}

search::search_request search_request_from_http(const http_request& req,
                                        const std::function<image::image_rgb8(std::string_view)>& decode) {
  search::search_request r;
  if (req.is_multipart_form_data()) {
    r = search_request_from_params(req);
    if (req.has_file("image") || req.has_file("file")) {
      auto part = req.has_file("image") ? req.get_file_value("image") : req.get_file_value("file");
      if (!part.filename.empty() || !part.content.empty()) r.image = decode(part.content);
    }
  } else if (req.method == "POST" && !req.body.empty()) {
    r = search_request_from_json(parse_json_body(req));
  } else {
    r = search_request_from_params(req);
  }
  return r;
}

}  // namespace acg2vec::server