#include "index/milvus_index.h"

#include "core/error.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <thread>

namespace acg2vec::index {

namespace {

constexpr std::size_t milvus_max_limit = 16384;  // Milvus caps offset + limit of one search here
constexpr const char* id_field = "id";
constexpr const char* vector_field = "vector";

bool retriable_code(int code) {
  // Rate limits and "not ready" states; everything else will fail the same way again.
  return code == 8 || code == 9 || code == 49 || code == 503;
}

}  // namespace

// One HTTP client for one Milvus endpoint, with retries. Calls take turns (httplib::Client is
// not meant for concurrent requests).
class milvus_http {
 public:
  explicit milvus_http(const milvus_options& o) : options_(o), client_(o.host, o.port) {
    const auto to_parts = [](std::chrono::milliseconds ms) {
      return std::pair<time_t, time_t>{ms.count() / 1000, (ms.count() % 1000) * 1000};
    };
    const auto [cs, cus] = to_parts(o.connect_timeout);
    const auto [ts, tus] = to_parts(o.timeout);
    client_.set_connection_timeout(cs, cus);
    client_.set_read_timeout(ts, tus);
    client_.set_write_timeout(ts, tus);
    client_.set_keep_alive(true);
  }

  /// POSTs body to /v2/vectordb/<path>; returns the "data" member of a code-0 envelope.
  nlohmann::json post(const std::string& path, nlohmann::json body) {
    if (!options_.db_name.empty()) body["dbName"] = options_.db_name;
    const std::string text = body.dump();
    httplib::Headers headers{{"Accept", "application/json"}};
    if (!options_.token.empty()) headers.emplace("Authorization", "Bearer " + options_.token);
    const std::string url = "/v2/vectordb/" + path;
    std::string last;
    std::lock_guard lock(mutex_);
    for (int attempt = 0; attempt <= options_.retries; ++attempt) {
      if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(50 << std::min(attempt, 5)));
      auto res = client_.Post(url, headers, text, "application/json");
      if (!res) {
        last = fmt::format("no response ({})", httplib::to_string(res.error()));
        continue;
      }
      if (res->status == 401 || res->status == 403)
        fail(errc::unavailable, "milvus at {}:{} refused the credentials (HTTP {}) for {}", options_.host,
             options_.port, res->status, url);
      if (res->status >= 500 || res->status == 429) {
        last = fmt::format("HTTP {}", res->status);
        continue;
      }
      nlohmann::json reply;
      try {
        reply = nlohmann::json::parse(res->body);
      } catch (const nlohmann::json::exception&) {
        fail(errc::internal, "milvus at {}:{}: {} answered HTTP {} with a body that is not JSON", options_.host,
             options_.port, url, res->status);
      }
      const int code = reply.value("code", -1);
      if (code == 0) return reply.contains("data") ? reply["data"] : nlohmann::json();
      const std::string message = reply.value("message", std::string("no message"));
      if (retriable_code(code)) {
        last = fmt::format("code {}: {}", code, message);
        continue;
      }
      // A collection that vanished under a running service is a backend fault, not a bad request.
      if (code == 100) fail(errc::unavailable, "milvus at {}:{}: {} failed: {}", options_.host, options_.port, url, message);
      if (code == 1800)
        fail(errc::unavailable, "milvus at {}:{} refused the credentials: {}", options_.host, options_.port, message);
      fail(errc::internal, "milvus: {} failed with code {}: {}", url, code, message);
    }
    fail(errc::unavailable, "milvus at {}:{} is unavailable for {} after {} attempts: {}", options_.host,
         options_.port, url, options_.retries + 1, last);
  }

 private:
  const milvus_options& options_;
  std::mutex mutex_;
  httplib::Client client_;
};

std::string milvus_quote(std::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '\\' || c == '"') out += '\\';
    out += c;
  }
  return out + "\"";
}

milvus_options parse_milvus_uri(std::string_view uri) {
  milvus_options o;
  constexpr std::string_view scheme = "milvus://";
  if (!uri.starts_with(scheme)) fail(errc::bad_parameter, "milvus address '{}' must start with milvus://", uri);
  auto rest = uri.substr(scheme.size());
  std::string_view query;
  if (const auto q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  if (const auto slash = rest.find('/'); slash != std::string_view::npos) rest = rest.substr(0, slash);
  const auto colon = rest.rfind(':');
  o.host = std::string(rest.substr(0, colon));
  if (colon != std::string_view::npos) {
    const auto p = rest.substr(colon + 1);
    if (std::from_chars(p.data(), p.data() + p.size(), o.port).ec != std::errc() || o.port <= 0 || o.port > 65535)
      fail(errc::bad_parameter, "milvus address '{}': bad port '{}'", uri, p);
  }
  if (o.host.empty()) fail(errc::bad_parameter, "milvus address '{}' names no host", uri);
  while (!query.empty()) {
    const auto amp = query.find('&');
    const auto pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    const auto eq = pair.find('=');
    const auto key = pair.substr(0, eq);
    const std::string value(eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1));
    if (key == "token") {
      o.token = value;
    } else if (key == "db") {
      o.db_name = value;
    } else if (key == "prefix") {
      o.collection_prefix = value;
    } else if (key == "index_type") {
      o.index_type = value;
      if (value != "HNSW") o.index_params = nlohmann::json::object();
    } else if (key == "timeout_ms") {
      int v = 0;
      if (std::from_chars(value.data(), value.data() + value.size(), v).ec != std::errc() || v <= 0)
        fail(errc::bad_parameter, "milvus address '{}': timeout_ms must be a positive number", uri);
      o.timeout = std::chrono::milliseconds(v);
    } else {
      fail(errc::bad_parameter, "milvus address '{}': unknown option '{}'", uri, key);
    }
  }
  return o;
}

milvus_index::milvus_index(const milvus_options& options, std::string space, int dim, metric m)
    : options_(options), collection_(options.collection_prefix + space), dim_(dim), metric_(m) {
  if (dim <= 0) fail(errc::bad_parameter, "milvus collection {}: dimension must be positive", collection_);
  http_ = std::make_unique<milvus_http>(options_);
  const std::string metric_name = m == metric::inner_product ? "IP" : "L2";
  const auto has = http_->post("collections/has", {{"collectionName", collection_}});
  if (!has.value("has", false)) {
    nlohmann::json index{{"fieldName", vector_field}, {"indexName", vector_field}, {"metricType", metric_name}};
    index["indexType"] = options_.index_type;
    if (!options_.index_params.empty()) index["params"] = options_.index_params;
    nlohmann::json body{
        {"collectionName", collection_},
        {"schema",
         {{"autoId", false},
          {"enableDynamicField", false},
          {"fields",
           nlohmann::json::array(
               {{{"fieldName", id_field},
                 {"dataType", "VarChar"},
                 {"isPrimary", true},
                 {"elementTypeParams", {{"max_length", std::to_string(options_.max_id_bytes)}}}},
                {{"fieldName", vector_field},
                 {"dataType", "FloatVector"},
                 {"elementTypeParams", {{"dim", std::to_string(dim)}}}}})}}},
        {"indexParams", nlohmann::json::array({index})},
        // Strong consistency: a search sees every write acknowledged before it, like FAISS does.
        {"params", {{"consistencyLevel", "Strong"}}}};
    http_->post("collections/create", body);
    spdlog::info("milvus: created collection {} ({}-d, {})", collection_, dim, metric_name);
    return;
  }
  const auto info = http_->post("collections/describe", {{"collectionName", collection_}});
  int found_dim = 0;
  for (const auto& f : info.value("fields", nlohmann::json::array())) {
    if (f.value("name", "") != vector_field) continue;
    for (const auto& p : f.value("params", nlohmann::json::array()))
      if (p.value("key", "") == "dim") found_dim = std::stoi(p.at("value").get<std::string>());
  }
  std::string found_metric;
  for (const auto& i : info.value("indexes", nlohmann::json::array()))
    if (i.value("fieldName", "") == vector_field) found_metric = i.value("metricType", "");
  if (found_dim != dim || found_metric != metric_name)
    fail(errc::conflict, "milvus collection {} exists as {}-d {}, not {}-d {}", collection_, found_dim, found_metric,
         dim, metric_name);
}

milvus_index::~milvus_index() = default;

nlohmann::json milvus_index::prepare(std::span<const float> v) const {
  check_vector(v, dim_, "vector");
  std::vector<float> copy(v.begin(), v.end());
  if (metric_ == metric::inner_product) normalize(copy);
  return copy;
}

void milvus_index::add(std::string_view id, std::span<const float> v) {
  add_batch({std::string(id)}, v);
}

void milvus_index::add_batch(const std::vector<std::string>& ids, std::span<const float> data) {
  const auto d = static_cast<std::size_t>(dim_);
  if (data.size() != ids.size() * d)
    fail(errc::bad_parameter, "milvus collection {}: {} ids but {} floats", collection_, ids.size(), data.size());
  for (const auto& id : ids)
    if (id.empty() || id.size() > options_.max_id_bytes)
      fail(errc::bad_parameter, "milvus collection {}: id '{}' is empty or longer than {} bytes", collection_, id,
           options_.max_id_bytes);
  for (std::size_t start = 0; start < ids.size(); start += options_.insert_batch) {
    const auto end = std::min(ids.size(), start + options_.insert_batch);
    nlohmann::json rows = nlohmann::json::array();
    for (auto n = start; n < end; ++n)
      rows.push_back({{id_field, ids[n]}, {vector_field, prepare(data.subspan(n * d, d))}});
    // Upsert: an id that is already there gets its vector replaced, as add() promises.
    http_->post("entities/upsert", {{"collectionName", collection_}, {"data", std::move(rows)}});
  }
}

bool milvus_index::remove(std::string_view id) {
  if (!contains(id)) return false;
  http_->post("entities/delete",
              {{"collectionName", collection_}, {"filter", fmt::format("{} in [{}]", id_field, milvus_quote(id))}});
  return true;
}

std::vector<hit> milvus_index::run_search(std::span<const float> query, std::size_t limit,
                                          const std::string& filter) const {
  nlohmann::json body{{"collectionName", collection_},
                      {"data", nlohmann::json::array({prepare(query)})},
                      {"annsField", vector_field},
                      {"limit", limit},
                      {"outputFields", nlohmann::json::array({id_field})}};
  if (!filter.empty()) body["filter"] = filter;
  if (!options_.search_params.empty()) body["searchParams"] = {{"params", options_.search_params}};
  const auto data = http_->post("entities/search", body);
  std::vector<hit> hits;
  for (const auto& row : data) {
    hit h;
    h.id = row.at(id_field).get<std::string>();
    // Milvus reports the inner product for IP and the squared Euclidean distance for L2, which
    // is what fill_score expects from FAISS too.
    fill_score(h, metric_, row.at("distance").get<float>());
    hits.push_back(std::move(h));
  }
  return hits;
}

std::vector<hit> milvus_index::search(std::span<const float> query, std::size_t k, const id_filter* filter) const {
  if (k == 0) return {};
  k = std::min(k, milvus_max_limit);
  if (filter == nullptr || !*filter) return run_search(query, k, "");
  // The predicate cannot be sent to Milvus: over-fetch and filter here, growing the request
  // until enough pass or Milvus has no more.
  for (std::size_t limit = std::min(milvus_max_limit, k * 4);; limit = std::min(milvus_max_limit, limit * 4)) {
    auto hits = run_search(query, limit, "");
    const bool exhausted = hits.size() < limit || limit == milvus_max_limit;
    std::erase_if(hits, [&](const hit& h) { return !(*filter)(h.id); });
    if (hits.size() >= k || exhausted) {
      if (hits.size() > k) hits.resize(k);
      return hits;
    }
  }
}

std::vector<hit> milvus_index::search_expr(std::span<const float> query, std::size_t k,
                                           const std::string& filter_expression) const {
  if (k == 0) return {};
  return run_search(query, std::min(k, milvus_max_limit), filter_expression);
}

bool milvus_index::contains(std::string_view id) const {
  const auto data = http_->post("entities/query", {{"collectionName", collection_},
                                                   {"filter", fmt::format("{} in [{}]", id_field, milvus_quote(id))},
                                                   {"outputFields", nlohmann::json::array({id_field})},
                                                   {"limit", 1}});
  return data.is_array() && !data.empty();
}

std::size_t milvus_index::size() const {
  const auto data = http_->post(
      "entities/query",
      {{"collectionName", collection_}, {"filter", ""}, {"outputFields", nlohmann::json::array({"count(*)"})}});
  if (!data.is_array() || data.empty()) return 0;
  return data[0].at("count(*)").get<std::size_t>();
}

void milvus_index::save(const std::filesystem::path&, std::uint64_t) const {}

void milvus_index::drop() { http_->post("collections/drop", {{"collectionName", collection_}}); }

}  // namespace acg2vec::index
