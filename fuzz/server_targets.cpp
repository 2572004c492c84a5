#include <memory>

#include "core/error.h"
#include "fuzz_util.h"
#include "image/decode.h"
#include "server/http_server.h"
#include "server/request_parsing.h"
#include "targets.h"

namespace acg2vec::fuzz {

using json = nlohmann::json;

namespace {

// Decoding is fuzzed on its own (fuzz_image); here a small pixel limit keeps requests fast.
constexpr image::decode_limits http_limits{1u << 20, 1u << 16};
constexpr std::size_t max_upload = 1u << 20;

// Routes shaped like the real ones (same paths, same request-reading steps, same http_server
// wrapper that turns errors into statuses), minus the models and the store behind them.
void add_routes(server::http_server& server) {
  auto decode = [](std::string_view bytes) { return image::decode_image(bytes, http_limits); };

  server.add("POST", "/v1/tag", "v1.tag", [](const server::http_request& req, server::http_response& res) {
    auto bytes = server::require_file(req, {"image", "file"}, max_upload);
    json out{{"bytes", bytes.size()}, {"model", server::find_param(req, "model").value_or("")}, {"all", server::bool_param(req, "all")}};
    for (const char* name : {"threshold", "threshold_general", "threshold_character"}) {
      if (auto t = server::unit_float_param(req, name)) out[name] = *t;
    }
    server::reply(res, out);
  }, server::route_access::read);

  server.add("POST", R"(/images/([^/]+))", "seed.images.insert", [](const server::http_request& req, server::http_response& res) {
    auto id = server::parse_seed_item_id(req.matches[1].str());
    auto metadata = server::parse_metadata_param(server::find_param(req, "extend"), "extend");
    auto bytes = server::require_file(req, {"file", "image"}, max_upload);
    server::reply(res, json{{"id", id}, {"metadata", metadata}, {"bytes", bytes.size()}});
  }, server::route_access::read);

  server.add("POST", "/v1/items", "v1.items.create", [](const server::http_request& req, server::http_response& res) {
    json out{{"id", server::find_param(req, "id").value_or("")}, {"source", server::find_param(req, "source").value_or("")}};
    out["metadata"] = server::parse_metadata_param(server::find_param(req, "metadata"), "metadata");
    out["bytes"] = server::require_file(req, {"file", "image"}, max_upload).size();
    server::reply(res, out);
  }, server::route_access::read);

  server.add("POST", "/v1/items/batch", "v1.items.batch", [](const server::http_request& req, server::http_response& res) {
    if (!req.is_multipart_form_data()) fail(errc::bad_parameter, "expected multipart/form-data with 'file' parts");
    json out = json::array();
    for (const auto& [name, part] : req.files) out.push_back({{"name", name}, {"filename", part.filename}});
    server::reply(res, out);
  }, server::route_access::read);

  server.add("GET", "/v1/items", "v1.items.list", [](const server::http_request& req, server::http_response& res) {
    server::reply(res, json{{"offset", server::int_param(req, "offset", 0, 0, 10'000'000)}, {"limit", server::int_param(req, "limit", 20, 1, 1000)}});
  }, server::route_access::read);

  server.add("PUT", R"(/v1/items/([^/]+))", "v1.items.replace", [](const server::http_request& req, server::http_response& res) {
    if (req.is_multipart_form_data() && (req.has_file("file") || req.has_file("image"))) {
      server::reply(res, server::parse_metadata_param(server::find_param(req, "metadata"), "metadata"));
    } else {
      auto body = server::parse_json_body(req);
      if (!body.is_object() || !body.contains("metadata")) fail(errc::bad_parameter, "expected {{\"metadata\": {{...}}}}");
      server::reply(res, body["metadata"]);
    }
  }, server::route_access::read);

  auto search = [decode](const server::http_request& req, server::http_response& res) {
    auto r = server::search_request_from_http(req, decode);
    server::reply(res, json{{"k", r.k}, {"offset", r.offset}, {"space", r.space}, {"all", r.filter.all_of},
                    {"image", r.image.has_value()}});
  };
  server.add("POST", "/v1/search", "v1.search", search, server::route_access::read);
  server.add("GET", "/v1/search", "v1.search", search, server::route_access::read);

  server.add("POST", "/models/acgvoc2vec/feature", "seed.acgvoc2vec", [](const server::http_request& req, server::http_response& res) {
    server::reply(res, json{{"text", server::require_param(req, "text")}});
  }, server::route_access::read);

  server.add("POST", R"(/v1/models/([A-Za-z0-9_.\-]+)(?:/versions/(\d+))?:predict)", "tfserving.predict",
             [](const server::http_request& req, server::http_response& res) {
               auto [row, items] = server::parse_tf_predict_body(server::parse_json_body(req));
               json sizes = json::array();
               for (const auto& inst : items) sizes.push_back(server::tf_instance_image_bytes(inst).size());
               server::reply_json(res, json{{"row", row}, {"sizes", sizes}});
             }, server::route_access::read);

  server.add("POST", R"(/v1/models/([^/:]+)/infer)", "v1.models.infer", [](const server::http_request& req, server::http_response& res) {
    auto body = server::parse_json_body(req);
    if (!body.is_object() || !body.contains("inputs")) fail(errc::bad_parameter, "expected a JSON object with \"inputs\"");
    server::reply(res, json{{"rank", tensor_rank_from_json(body["inputs"], false)}});
  }, server::route_access::read);
}

server::http_server& server() {
  static const auto instance = [] {
    quiet_logs();
    server::server_options options;
    options.max_request_bytes = 4u << 20;
    options.max_upload_bytes = max_upload;
    auto s = std::make_unique<server::http_server>(options);
    add_routes(*s);
    return s;
  }();
  return *instance;
}

template <class Fn>
void expect_rejection_only(Fn&& fn) {
  try {
    fn();
  } catch (const error&) {
  } catch (const json::exception&) {
    // The http_server wrapper answers these with 400 "invalid JSON value" on purpose.
  }
}

}  // namespace

int fuzz_http_parse(const std::uint8_t* data, std::size_t size) {
  auto response = server().process_raw(as_text(data, size));
  // A parsed request always gets an answer with a status line; an unparsable one may get a 400 or nothing.
  if (!response.empty() && response.rfind("HTTP/1.1 ", 0) != 0) std::abort();
  return 0;
}

int fuzz_json_body(const std::uint8_t* data, std::size_t size) {
  quiet_logs();
  server::http_request req;
  req.method = "POST";
  req.body.assign(reinterpret_cast<const char*>(data), size);
  json body;
  try {
    body = server::parse_json_body(req);
  } catch (const error&) {
    return 0;
  }
  // TF-Serving predict: image instances, then numeric instances as a graph input and as token ids.
  expect_rejection_only([&] {
    auto [row, items] = server::parse_tf_predict_body(body);
    (void)row;
    std::size_t n = 0;
    for (const auto& inst : items) {
      if (++n > 16) break;
      expect_rejection_only([&] { (void)server::tf_instance_image_bytes(inst); });
      expect_rejection_only([&] {
        const json& v = inst.is_object() && inst.size() == 1 ? inst.begin().value() : inst;
        (void)tensor_rank_from_json(v, false);
      });
      expect_rejection_only([&] {
        if (inst.is_object() && inst.contains("input_ids")) (void)tensor_rank_from_json(inst["input_ids"], true);
        else (void)tensor_rank_from_json(inst, true);
      });
    }
  });
  // /v1/search body.
  expect_rejection_only([&] { (void)server::search_request_from_json(body); });
  // /v1/models/{name}/infer body.
  expect_rejection_only([&] {
    if (body.is_object() && body.contains("inputs")) (void)tensor_rank_from_json(body["inputs"], false);
  });
  return 0;
}

}  // namespace acg2vec::fuzz
