// The collection API: the seed's item routes (POST/PUT/DELETE /images/{id}, similarImages), the
// demo page's search routes, and /v1 (items, search, stats).
#include <charconv>

#include "image/decode.h"
#include "search/service.h"
#include "server/request_parsing.h"
#include "server/routes.h"
#include "server/seed_records.h"

namespace acg2vec::server {

using json = nlohmann::json;

namespace {

constexpr std::string_view msg_inserted = "插入以图搜图条目成功";
constexpr std::string_view msg_updated = "更新以图搜图条目成功";
constexpr std::string_view msg_deleted = "删除以图搜图条目成功";
constexpr std::string_view msg_similar = "以图搜图成功";


json item_json(const store::item& it, bool with_tags) {
  json j{{"id", store::item_id_to_json(it)},
         {"source", it.source},
         {"width", it.width},
         {"height", it.height},
         {"metadata", it.metadata.is_null() ? json::object() : it.metadata},
         {"contentHash", it.content_hash},
         {"createdAt", it.created_at},
         {"updatedAt", it.updated_at},
         {"scores", it.scores},
         {"thumbnail", "/v1/items/" + path_segment(it.id) + "/thumbnail"}};
  json spaces = json::object();
  for (const auto& [name, v] : it.vectors) spaces[name] = v.size();
  j["vectors"] = spaces;
  if (with_tags) {
    json tags = json::object();
    for (const auto& [tagger, list] : it.tags) {
      auto sorted = list;
      std::stable_sort(sorted.begin(), sorted.end(), [](auto& a, auto& b) { return a.second > b.second; });
      json arr = json::array();
      for (const auto& [name, score] : sorted) arr.push_back({{"name", name}, {"score", score}});
      tags[tagger] = arr;
    }
    j["tags"] = tags;
  }
  return j;
}

json hits_json(const search::search_result& r) {
  json hits = json::array();
  for (const auto& h : r.hits) {
    json j = item_json(h.item, false);
    j["score"] = h.score;
    j["distance"] = h.distance;
    hits.push_back(j);
  }
  return hits;
}

// The demo page reads pixiv-style Illust records; every hit gets one, stored extend or not.
json demo_records(const search::search_result& result, const http_request& req) {
  json data = json::array();
  const std::string base = public_base_url(req);
  for (const auto& h : result.hits) {
    json j = seed_illust(h.item, base);
    j["score"] = h.score;
    data.push_back(std::move(j));
  }
  return data;
}

// The seed's item routes take every name under /images/ except the fixed routes beside them, so
// that (say) POST /images/features is never read as an item id, whatever the registration order.
const std::string seed_item_route =
    R"(/images/((?!(?:features|labels|textLabels|similarImages|labelsByDeepDanbooru|socresByPix2Score)$)[^/]+))";

constexpr std::string_view msg_kept = "item {} already exists and was kept, not replaced (PUT /images/{} replaces it)";
constexpr std::string_view msg_absent = "item {} did not exist; nothing was deleted";

// The space the seed's reverse search used: illust2vec when installed, else any image embedding,
// else the perceptual signature.
std::string seed_space(const search::search_service& service) {
  auto names = service.space_names();
  if (std::find(names.begin(), names.end(), "illust2vec") != names.end()) return "illust2vec";
  for (const auto& name : names) {
    if (name != search::signature_space) return name;
  }
  return std::string(search::signature_space);
}

}  // namespace

void register_search_routes(http_server& server, search_route_context ctx) {
  auto& svc = *ctx.service;
  auto upload = [ctx](const http_request& req) {
    auto bytes = require_file(req, {"file", "image"}, ctx.max_upload_bytes);
    return std::string(bytes);
  };
  auto decode = [ctx](std::string_view bytes) {
    return image::decode_image(bytes, decode_limits_of(ctx));
  };

  // ---- the seed's search routes (registered before /images/{id}) ----
  server.add("POST", "/images/similarImages", "seed.similarImages",
             [&svc, upload, decode](const http_request& req, http_response& res) {
               search::search_request r;
               r.image = decode(upload(req));
               r.k = static_cast<std::size_t>(int_param(req, "k", 10, 1, 1000));
               r.space = find_param(req, "space").value_or(seed_space(svc));
               auto result = svc.search(r);
               const std::string base = public_base_url(req);
               json data = json::array();
               for (const auto& h : result.hits) {
                 data.push_back({{"itemId", seed_id_json(h.item.id)}, {"feature", nullptr},
                                 {"extendInfo", seed_illust(h.item, base)}});
               }
               reply_seed(res, data, msg_similar);
             }, route_access::read);

  server.add("POST", "/similarityImages", "seed.similarityImages",
             [&svc, upload, decode](const http_request& req, http_response& res) {
               search::search_request r;
               r.image = decode(upload(req));
               r.k = static_cast<std::size_t>(int_param(req, "k", 30, 1, 1000));
               r.space = find_param(req, "space").value_or(seed_space(svc));
               auto result = svc.search(r);
               reply_seed(res, demo_records(result, req), "ok");
             }, route_access::read);

  server.add("GET", "/searchIllustByDCLIP", "seed.searchIllustByDCLIP", [&svc](const http_request& req, http_response& res) {
    search::search_request r;
    r.text = require_param(req, "text");
    if (r.text->empty()) fail(errc::bad_parameter, "parameter 'text' is empty");
    r.k = static_cast<std::size_t>(int_param(req, "k", 30, 1, 1000));
    auto result = svc.search(r);
    reply_seed(res, demo_records(result, req), "ok");
  }, route_access::read);

  // ---- the seed's item routes ----
  // The seed skipped an insert whose id existed (answering data: true) and deleted without looking;
  // scripts written for it re-run both. /v1/items keeps the strict 409 and 404.
  server.add("POST", seed_item_route, "seed.images.insert",
             [&svc, upload](const http_request& req, http_response& res) {
               search::item_input in;
               in.id = parse_seed_item_id(req.matches[1].str());
               in.numeric_id = true;
               in.metadata = parse_metadata_param(find_param(req, "extend"), "extend");
               std::string id = *in.id;
               auto bytes = upload(req);
               if (svc.get(id)) {
                 reply(res, true, fmt::format(msg_kept, id, id));
                 return;
               }
               try {
                 svc.add_image(bytes, std::move(in), search::write_mode::insert);
               } catch (const error& e) {
                 // Another request stored the same id in between: the same answer as above.
                 if (e.code() != errc::conflict) throw;
                 reply(res, true, fmt::format(msg_kept, id, id));
                 return;
               }
               reply(res, true, msg_inserted);
             }, route_access::write);
  server.add("PUT", seed_item_route, "seed.images.update",
             [&svc, upload](const http_request& req, http_response& res) {
               search::item_input in;
               in.id = parse_seed_item_id(req.matches[1].str());
               in.numeric_id = true;
               in.metadata = parse_metadata_param(find_param(req, "extend"), "extend");
               svc.add_image(upload(req), std::move(in), search::write_mode::upsert);
               reply(res, true, msg_updated);
             }, route_access::write);
  server.add("DELETE", seed_item_route, "seed.images.delete", [&svc](const http_request& req, http_response& res) {
    auto id = parse_seed_item_id(req.matches[1].str());
    reply(res, true, svc.remove(id) ? std::string(msg_deleted) : fmt::format(msg_absent, id));
  }, route_access::write);

  // ---- /v1/items ----
  server.add("POST", "/v1/items/batch", "v1.items.batch", [&svc, ctx](const http_request& req, http_response& res) {
    if (!req.is_multipart_form_data()) fail(errc::bad_parameter, "expected multipart/form-data with 'file' parts");
    json results = json::array();
    std::size_t stored = 0;
    for (const auto& [name, part] : req.files) {
      if (part.filename.empty()) continue;  // a text field
      json r{{"filename", part.filename}};
      try {
        if (part.content.size() > ctx.max_upload_bytes) fail(errc::too_large, "file is over the upload limit");
        search::item_input in;
        in.source = part.filename;
        auto out = svc.add_image(part.content, std::move(in), search::write_mode::skip_existing);
        r["id"] = out.id;
        r["stored"] = out.stored;
        if (!out.duplicate_of.empty()) r["duplicateOf"] = out.duplicate_of;
        stored += out.stored ? 1 : 0;
      } catch (const error& e) {
        if (e.code() == errc::unavailable || e.code() == errc::internal) throw;
        r["error"] = e.what();
      }
      results.push_back(r);
    }
    if (results.empty()) fail(errc::bad_parameter, "no file parts in the request");
    reply(res, results, "ok", static_cast<std::int64_t>(stored));
  }, route_access::write);

  server.add("POST", "/v1/items", "v1.items.create", [&svc, upload](const http_request& req, http_response& res) {
    search::item_input in;
    if (auto id = find_param(req, "id")) {
      in.id = *id;
      in.numeric_id = !id->empty() && std::all_of(id->begin(), id->end(), ::isdigit) && id->size() < 19;
    }
    in.source = find_param(req, "source").value_or("");
    in.metadata = parse_metadata_param(find_param(req, "metadata"), "metadata");
    auto bytes = upload(req);
    auto out = svc.add_image(bytes, std::move(in), search::write_mode::insert);
    // The answer is the item as this request wrote it: reading it back could meet a DELETE of the
    // same id that committed in between.
    reply(res, item_json(*out.item, true), "created");
    res.status = 201;
  }, route_access::write);

  server.add("GET", "/v1/items", "v1.items.list", [&svc](const http_request& req, http_response& res) {
    if (auto b = browse_request_from_http(req)) {
      // Filtered, ordered or "more like this" (routes_browse.cpp); count is the number of matches.
      auto page = svc.browse(*b);
      json data = json::array();
      for (const auto& h : page.hits) {
        json j = item_json(h.item, false);
        if (b->like) j["score"] = h.score;
        data.push_back(std::move(j));
      }
      reply(res, data, "ok", static_cast<std::int64_t>(page.total));
      return;
    }
    auto offset = static_cast<std::size_t>(int_param(req, "offset", 0, 0, 10'000'000));
    auto limit = static_cast<std::size_t>(int_param(req, "limit", 20, 1, 1000));
    json data = json::array();
    for (const auto& it : svc.list(offset, limit)) data.push_back(item_json(it, false));
    reply(res, data, "ok", svc.stats()["items"].get<std::int64_t>());
  }, route_access::read);

  server.add("GET", R"(/v1/items/(.+)/thumbnail)", "v1.items.thumbnail",
             [&svc](const http_request& req, http_response& res) {
               auto t = svc.thumbnail(req.matches[1].str());
               if (!t) fail(errc::not_found, "no thumbnail for item {}", req.matches[1].str());
               res.set_content(*t, "image/jpeg");
               res.set_header("Cache-Control", "max-age=3600");
             }, route_access::read);

  server.add("GET", R"(/v1/items/(.+))", "v1.items.get", [&svc](const http_request& req, http_response& res) {
    auto it = svc.get(req.matches[1].str());
    if (!it) fail(errc::not_found, "item {} not found", req.matches[1].str());
    json j = item_json(*it, true);
    // The stored vectors themselves, on request: they are large (KBs per space).
    if (auto v = req.get_param_value("vectors"); v == "1" || v == "true") j["vectorValues"] = it->vectors;
    reply(res, j);
  }, route_access::read);

  server.add("PUT", R"(/v1/items/(.+))", "v1.items.replace", [&svc, upload](const http_request& req, http_response& res) {
    std::string id = req.matches[1].str();
    std::optional<store::item> written;
    if (req.is_multipart_form_data() && (req.has_file("file") || req.has_file("image"))) {
      auto existing = svc.get(id);
      search::item_input in;
      in.id = id;
      in.numeric_id = existing ? existing->numeric_id : false;
      in.source = find_param(req, "source").value_or(existing ? existing->source : "");
      in.metadata = find_param(req, "metadata") ? parse_metadata_param(find_param(req, "metadata"), "metadata")
                                                 : (existing ? existing->metadata : json::object());
      written = std::move(svc.add_image(upload(req), std::move(in), search::write_mode::upsert).item);
    } else {
      auto body = parse_json_body(req);
      if (!body.is_object() || !body.contains("metadata")) fail(errc::bad_parameter, "expected {{\"metadata\": {{...}}}}");
      written = svc.update_metadata(id, body["metadata"]);
    }
    reply(res, item_json(*written, true), "updated");
  }, route_access::write);

  server.add("DELETE", R"(/v1/items/(.+))", "v1.items.delete", [&svc](const http_request& req, http_response& res) {
    std::string id = req.matches[1].str();
    if (!svc.remove(id)) fail(errc::not_found, "item {} not found", id);
    reply(res, json{{"id", id}, {"deleted", true}}, "deleted");
  }, route_access::write);

  // ---- /v1/search ----
  auto search = [&svc, decode](const http_request& req, http_response& res) {
    search::search_request r = search_request_from_http(req, decode);
    auto result = svc.search(r);
    reply(res, json{{"space", result.space}, {"hits", hits_json(result)}}, "ok",
          static_cast<std::int64_t>(result.hits.size()));
  };
  server.add("POST", "/v1/search", "v1.search", search, route_access::read);
  server.add("GET", "/v1/search", "v1.search", search, route_access::read);

  server.add("GET", "/v1/stats", "v1.stats", [&svc](const http_request&, http_response& res) { reply(res, svc.stats()); }, route_access::read);
}

}  // namespace acg2vec::server