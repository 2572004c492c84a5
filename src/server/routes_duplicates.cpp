// Duplicate and variant groups of the collection (search/dedup.h): GET /v1/duplicates lists them,
// POST /v1/duplicates/{group}/resolve keeps the best copy of each and merges the others into it.
#include <algorithm>
#include <memory>
#include <mutex>

#include "search/dedup.h"
#include "search/service.h"
#include "server/request_parsing.h"
#include "server/routes.h"

namespace acg2vec::server {

using json = nlohmann::json;

namespace {

// The grouping settings, from the query string (GET) or the JSON body (POST); the body wins.
search::dedup_options options_of(const http_request& req, const json& body) {
  search::dedup_options o;
  auto text = [&](const char* name) -> std::optional<std::string> {
    if (body.is_object() && body.contains(name)) {
      if (!body[name].is_string()) fail(errc::bad_parameter, "'{}' must be a string", name);
      return body[name].get<std::string>();
    }
    return find_param(req, name);
  };
  if (auto s = text("space")) o.space = *s;
  if (auto r = text("keep_rule")) o.keep_rule = search::parse_keep_rule(*r);
  if (body.is_object() && body.contains("threshold")) {
    if (!body["threshold"].is_number()) fail(errc::bad_parameter, "'threshold' must be a number");
    o.threshold = body["threshold"].get<float>();
  } else if (auto t = unit_float_param(req, "threshold")) {
    o.threshold = *t;
  }
  o.neighbours = static_cast<std::size_t>(int_param(req, "neighbours", 16, 1, 256));
  return o;
}

bool flag_of(const json& body, const char* name) {
  if (!body.is_object() || !body.contains(name)) return false;
  if (!body[name].is_boolean()) fail(errc::bad_parameter, "'{}' must be true or false", name);
  return body[name].get<bool>();
}

// The last GET /v1/duplicates answer, for the store generation it was computed at and the settings it
// was asked with: grouping runs the self-join over the whole collection, and a page that lists the
// groups again (after viewing one, after a refresh) should not pay for it while nothing changed. Every
// add, update or delete bumps the store's generation, which invalidates the entry.
struct duplicates_cache {
  std::mutex mutex;
  bool valid = false;
  std::uint64_t generation = 0;
  std::string key;
  json data;
};

std::string cache_key(const search::dedup_options& o) {
  std::string key = o.space + '\n' + (o.threshold ? std::to_string(*o.threshold) : std::string("-")) + '\n' +
                    std::to_string(o.neighbours) + '\n';
  for (auto c : o.keep_rule) key += std::to_string(static_cast<int>(c)) + ',';
  return key;
}

}  // namespace

void register_duplicate_routes(http_server& server, search::search_service& service) {
  auto* svc = &service;
  auto cache = std::make_shared<duplicates_cache>();
  server.add("GET", "/v1/duplicates", "v1.duplicates", [svc, cache](const http_request& req, http_response& res) {
    const auto options = options_of(req, json());
    const std::string key = cache_key(options);
    // The generation is read before grouping: a change made while grouping runs leaves the entry stale
    // by one generation, so the next call recomputes instead of serving a result that missed it.
    const std::uint64_t generation = svc->store().generation();
    {
      std::lock_guard lock(cache->mutex);
      if (cache->valid && cache->generation == generation && cache->key == key) {
        json data = cache->data;
        data["cached"] = true;
        const auto count = static_cast<std::int64_t>(data["groups"].size());
        reply(res, std::move(data), "ok", count);
        return;
      }
    }
    auto report = search::find_duplicates(*svc, options);
    auto count = static_cast<std::int64_t>(report.groups.size());
    json data = to_json(report);
    data["cached"] = false;
    {
      std::lock_guard lock(cache->mutex);
      cache->valid = true;
      cache->generation = generation;
      cache->key = key;
      cache->data = data;
    }
    reply(res, std::move(data), "ok", count);
  }, route_access::read);

  server.add("POST", R"(/v1/duplicates/([^/]+)/resolve)", "v1.duplicates.resolve",
             [svc](const http_request& req, http_response& res) {
               const std::string group_id = req.matches[1].str();
               json body = req.body.empty() ? json::object() : parse_json_body(req);
               if (!body.is_object()) fail(errc::bad_parameter, "the body must be a JSON object");
               std::optional<std::string> keep;
               if (body.contains("keep")) {
                 if (body["keep"].is_string()) keep = body["keep"].get<std::string>();
                 else if (body["keep"].is_number_integer()) keep = std::to_string(body["keep"].get<std::int64_t>());
                 else fail(errc::bad_parameter, "'keep' must be an item id");
               }
               search::resolve_options ro;
               ro.dry_run = flag_of(body, "dry_run");
               ro.delete_files = flag_of(body, "delete_files");
               auto report = search::find_duplicates(*svc, options_of(req, body));
               auto g = std::find_if(report.groups.begin(), report.groups.end(),
                                     [&](const auto& x) { return x.id == group_id; });
               if (g == report.groups.end())
                 fail(errc::not_found, "no duplicate group {} (the collection changed? list /v1/duplicates again)",
                      group_id);
               const search::resolve_plan plan = search::plan_resolve(*svc, *g, keep);
               reply(res, search::apply_resolve(*svc, std::span<const search::resolve_plan>(&plan, 1), ro));
             }, route_access::write);
}

}  // namespace acg2vec::server