// Browsing the collection: the filters, order and paging of GET /v1/items (read here, answered in
// routes_search.cpp beside the plain listing) and GET /v1/tags for the page's tag autocomplete.
#include <cmath>

#include "search/service.h"
#include "server/routes.h"

namespace acg2vec::server {

using json = nlohmann::json;

namespace {

// The parameters that turn GET /v1/items from the plain newest-first listing into a browse query.
constexpr const char* browse_params[] = {"tags", "any", "none", "rating", "tagger", "min_score", "score",
                                         "score_min", "score_max", "sort", "order", "like", "space"};

// Tags separated by commas or whitespace (the /v1/search convention).
std::vector<std::string> tag_list(const http_request& req, const std::string& name) {
  std::vector<std::string> out;
  auto v = find_param(req, name);
  if (!v) return out;
  std::string cur;
  for (char c : *v + ",") {
    if (c == ',' || c == ' ' || c == '\t' || c == '\n') {
      if (!cur.empty()) out.push_back(std::move(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  return out;
}

std::optional<float> number_param(const http_request& req, const std::string& name) {
  auto v = find_param(req, name);
  if (!v || v->empty()) return std::nullopt;
  try {
    std::size_t used = 0;
    float f = std::stof(*v, &used);
    if (used != v->size() || !std::isfinite(f)) throw std::invalid_argument("not finite");
    return f;
  } catch (const std::exception&) {
    fail(errc::bad_parameter, "parameter '{}' must be a number, got '{}'", name, v->substr(0, 40));
  }
}

}  // namespace

std::optional<search::browse_request> browse_request_from_http(const http_request& req) {
  bool any = false;
  for (const char* p : browse_params) any = any || find_param(req, p).has_value();
  if (!any) return std::nullopt;
  search::browse_request b;
  auto& q = b.filter;
  q.offset = static_cast<std::size_t>(int_param(req, "offset", 0, 0, 10'000'000));
  q.limit = static_cast<std::size_t>(int_param(req, "limit", 20, 1, 1000));
  q.all_of = tag_list(req, "tags");
  q.any_of = tag_list(req, "any");
  q.none_of = tag_list(req, "none");
  if (auto r = find_param(req, "rating"); r && !r->empty()) q.rating = r->starts_with("rating:") ? r->substr(7) : *r;
  if (auto t = find_param(req, "tagger"); t && !t->empty()) q.tagger = *t;
  if (auto m = number_param(req, "min_score")) q.min_score = *m;

  // score=SCORER:NAME names one scorer output for the range and for sort=score.
  std::optional<store::score_key> key;
  if (auto s = find_param(req, "score"); s && !s->empty()) {
    auto colon = s->find(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == s->size()) {
      fail(errc::bad_parameter, "parameter 'score' must be SCORER:NAME (e.g. pix2score:bookmarkPredict), got '{}'",
           s->substr(0, 80));
    }
    key = store::score_key{s->substr(0, colon), s->substr(colon + 1)};
  }
  auto lo = number_param(req, "score_min");
  auto hi = number_param(req, "score_max");
  if ((lo || hi) && !key) fail(errc::bad_parameter, "score_min and score_max need 'score' (SCORER:NAME)");
  if (lo && hi && *lo > *hi) fail(errc::bad_parameter, "score_min ({}) is above score_max ({})", *lo, *hi);
  if (lo) q.score_minimums.push_back({key->scorer, key->name, *lo});
  if (hi) q.score_maximums.push_back({key->scorer, key->name, *hi});

  if (auto like = find_param(req, "like"); like && !like->empty()) b.like = *like;
  if (auto space = find_param(req, "space")) b.space = *space;
  const std::string sort = find_param(req, "sort").value_or(b.like ? "similarity" : "date");
  if (sort == "score") {
    if (!key) fail(errc::bad_parameter, "sort=score needs 'score' (SCORER:NAME)");
    q.order_by_score = key;
  } else if (sort == "similarity") {
    if (!b.like) fail(errc::bad_parameter, "sort=similarity needs 'like' (an item id)");
  } else if (sort != "date") {
    fail(errc::bad_parameter, "parameter 'sort' must be date, score or similarity, got '{}'", sort.substr(0, 40));
  }
  if (b.like && sort != "similarity") fail(errc::bad_parameter, "'like' orders by similarity; it cannot be combined with sort={}", sort);
  const std::string order = find_param(req, "order").value_or("desc");
  if (order != "asc" && order != "desc") fail(errc::bad_parameter, "parameter 'order' must be asc or desc, got '{}'", order.substr(0, 40));
  if (order == "asc" && b.like) fail(errc::bad_parameter, "similarity order is most similar first; 'order=asc' does not apply");
  q.ascending = order == "asc";
  return b;
}

void register_browse_routes(http_server& server, search_route_context ctx) {
  auto& svc = *ctx.service;
  server.add("GET", "/v1/tags", "v1.tags", [&svc](const http_request& req, http_response& res) {
    const std::string prefix = find_param(req, "prefix").value_or("");
    if (prefix.size() > 256) fail(errc::bad_parameter, "parameter 'prefix' is longer than 256 bytes");
    const auto limit = static_cast<std::size_t>(int_param(req, "limit", 20, 1, 1000));
    const float min_score = number_param(req, "min_score").value_or(0.0f);
    std::optional<std::string> tagger;
    if (auto t = find_param(req, "tagger"); t && !t->empty()) tagger = *t;
    json data = json::array();
    for (const auto& t : svc.tag_counts(prefix, limit, min_score, tagger)) {
      data.push_back({{"name", t.tag}, {"count", t.items}});
    }
    const auto n = static_cast<std::int64_t>(data.size());
    reply(res, data, "ok", n);
  }, route_access::read);
}

}  // namespace acg2vec::server