// Duplicate and variant groups of the collection (search/dedup.h): GET /v1/duplicates lists them,
// POST /v1/duplicates/{group}/resolve keeps the best copy of each and merges the others into it.
#include <algorithm>

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

}  // namespace

void register_duplicate_routes(http_server& server, search::search_service& service) {
  auto* svc = &service;
  server.add("GET", "/v1/duplicates", "v1.duplicates", [svc](const http_request& req, http_response& res) {
    auto report = search::find_duplicates(*svc, options_of(req, json()));
    auto count = static_cast<std::int64_t>(report.groups.size());
    reply(res, to_json(report), "ok", count);
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