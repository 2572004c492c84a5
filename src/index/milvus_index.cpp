// One file because it is one REST v2 client: the request/retry/timeout loop, the collection
// life cycle (create, index, load) and the vector operations all go through the same session.
#include "index/milvus_index.h"

#include "core/uri.h"
#include "core/error.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <thread>

namespace acg2vec::index {

namespace {

constexpr std::size_t milvus_max_limit = 16384;  // Milvus caps offset + limit of one search here
constexpr std::size_t milvus_max_name = 255;     // proxy.maxNameLength default
constexpr const char* id_field = "id";
constexpr const char* vector_field = "vector";
constexpr const char* index_name = "vector";
// The collection description records which space a collection holds (see open()).
constexpr std::string_view description_marker = "acg2vec vector space: ";

// Milvus's own error codes (pkg/util/merr/errors.go) that this client acts on.
namespace code {
constexpr int collection_not_found = 100;
constexpr int collection_not_loaded = 101;
constexpr int index_not_found = 700;
constexpr int database_not_found = 800;
constexpr int not_authenticated = 1800;
constexpr int privilege_not_authenticated = 1400;
constexpr int privilege_not_permitted = 1401;
}  // namespace code

// Codes that merr marks retriable (newMilvusError(..., true)): service not ready (1), service
// unavailable (2), request limit (4), rate limit (8), resource insufficient (12), collection not
// fully loaded (103), collection on recovering (106), partition not fully loaded (202), unexpected
// EOF (1002), the REST rate limiter (1807) and inconsistent requery (2200). Everything else fails
// the same way again (9 quota exceeded, 503 channel not available, ...): no retry.
bool retriable_code(int c) {
  switch (c) {
    case 1: case 2: case 4: case 8: case 12: case 103: case 106: case 202: case 1002: case 1807: case 2200:
      return true;
    default:
      return false;
  }
}

// HTTP statuses worth another attempt: 408 (Milvus's timeout middleware), 429 (its rate limiter
// on newer servers) and the gateway statuses a proxy in front of Milvus answers while it restarts.
bool retriable_status(int status) {
  return status == 408 || status == 429 || status == 502 || status == 503 || status == 504;
}

bool valid_name_start(char c) {
  return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool valid_name_char(char c) { return valid_name_start(c) || (c >= '0' && c <= '9'); }

std::string json_string(const nlohmann::json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_null()) return "";
  return j.dump();
}

// A number Milvus may send as a JSON number or, for Int64 values without the
// Accept-Type-Allow-Int64 header, as a string.
std::optional<long long> json_integer(const nlohmann::json& j) {
  if (j.is_number_integer()) return j.get<long long>();
  if (j.is_number_unsigned()) return static_cast<long long>(j.get<unsigned long long>());
  if (j.is_string()) {
    const auto s = j.get<std::string>();
    long long v = 0;
    const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    if (r.ec == std::errc() && r.ptr == s.data() + s.size()) return v;
  }
  return std::nullopt;
}

// "key"/"value" pairs of a described field, as a lookup.
std::string param_of(const nlohmann::json& field, std::string_view key) {
  for (const auto& p : field.value("params", nlohmann::json::array()))
    if (p.is_object() && p.value("key", "") == key) return json_string(p.value("value", nlohmann::json()));
  return {};
}

}  // namespace

// One HTTP client for one Milvus endpoint, with the retry policy. Calls take turns (httplib::Client
// is not meant for concurrent requests).
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
    // A request is written as headers, then body: without TCP_NODELAY, Nagle's algorithm holds
    // the body until the server's delayed ACK (~40 ms) on every call.
    client_.set_tcp_nodelay(true);
  }

  struct reply {
    int code = 0;
    std::string message;
    nlohmann::json data;
  };

  /// POSTs body to /v2/vectordb/<path>. Returns the envelope when its code is 0 (success) or is
  /// one of `accepted`; retries retriable outcomes; throws acg2vec::error for everything else.
  reply post(const std::string& path, nlohmann::json body, std::initializer_list<int> accepted = {}) {
    if (!options_.db_name.empty()) body["dbName"] = options_.db_name;
    const std::string text = body.dump();
    // Accept-Type-Allow-Int64: Int64 values (count(*), Int64 ids) as JSON numbers, not strings.
    httplib::Headers headers{{"Accept", "application/json"}, {"Accept-Type-Allow-Int64", "true"}};
    if (!options_.token.empty()) headers.emplace("Authorization", "Bearer " + options_.token);
    const std::string url = "/v2/vectordb/" + path;
    std::string last;
    std::lock_guard lock(mutex_);
    auto pause = options_.retry_backoff;
    for (int attempt = 0; attempt <= options_.retries; ++attempt) {
      if (attempt > 0) {
        std::this_thread::sleep_for(pause);
        pause = std::min(pause * 2, std::chrono::milliseconds(5000));
      }
      auto res = client_.Post(url, headers, text, "application/json");
      if (!res) {
        last = fmt::format("no response ({})", httplib::to_string(res.error()));
        continue;
      }
      nlohmann::json envelope;
      try {
        envelope = nlohmann::json::parse(res->body);
      } catch (const nlohmann::json::exception&) {
        envelope = nlohmann::json();  // plain text, e.g. "timeout" from older timeout middleware
      }
      const int status = res->status;
      const int c = envelope.is_object() ? static_cast<int>(json_integer(envelope.value("code", nlohmann::json()))
                                                                .value_or(-1))
                                         : -1;
      const std::string message = envelope.is_object() ? json_string(envelope.value("message", nlohmann::json()))
                                                       : res->body.substr(0, 200);
      if (status == 401 || c == code::not_authenticated || c == code::privilege_not_authenticated)
        fail(errc::unavailable,
             "milvus at {}:{} rejected the credentials for {} (HTTP {}, code {}: {}): set token=user:password "
             "or token=<api key> in the milvus:// address",
             options_.host, options_.port, url, status, c, message);
      if (status == 403 || c == code::privilege_not_permitted)
        fail(errc::unavailable, "milvus at {}:{}: the credentials lack the privilege for {} (HTTP {}, code {}: {})",
             options_.host, options_.port, url, status, c, message);
      if (status == 404)
        fail(errc::unavailable,
             "milvus at {}:{} has no {} (HTTP 404): it is not Milvus or older than {} (REST API v2 is needed)",
             options_.host, options_.port, url, milvus_minimum_version);
      if (retriable_status(status)) {
        last = fmt::format("HTTP {}{}", status, message.empty() ? "" : ": " + message);
        continue;
      }
      if (status != 200)
        fail(errc::unavailable, "milvus at {}:{}: {} answered HTTP {}: {}", options_.host, options_.port, url, status,
             message);
      if (!envelope.is_object())
        fail(errc::internal, "milvus at {}:{}: {} answered HTTP 200 with a body that is not a JSON object",
             options_.host, options_.port, url);
      // Success is code 0; REST v2 of the first 2.4 releases answered code 200 instead (handler_v2.go
      // wrote http.StatusOK into "code"). 200 is also merr's "partition not found", which carries a
      // message and no data, and this client uses no partitions.
      if (c == 0 || (c == 200 && !envelope.contains("message")))
        return {0, {}, envelope.contains("data") ? envelope["data"] : nlohmann::json()};
      if (std::find(accepted.begin(), accepted.end(), c) != accepted.end()) return {c, message, {}};
      if (retriable_code(c)) {
        last = fmt::format("code {}: {}", c, message);
        continue;
      }
      if (c == code::database_not_found)
        fail(errc::bad_parameter, "milvus at {}:{}: database '{}' does not exist (code 800): create it or fix db=",
             options_.host, options_.port, options_.db_name);
      // A collection that vanished under a running service, a quota or a broken channel: the
      // backend is unusable for now, which is not the caller's fault.
      if (c == code::collection_not_found || c == code::collection_not_loaded || c == 9 || c == 503 ||
          c == 3 || c == 7)
        fail(errc::unavailable, "milvus at {}:{}: {} failed with code {}: {}", options_.host, options_.port, url, c,
             message);
      fail(errc::internal, "milvus at {}:{}: {} failed with code {}: {}", options_.host, options_.port, url, c,
           message);
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

std::string milvus_collection_name(std::string_view prefix, std::string_view space) {
  if (!prefix.empty() && (!valid_name_start(prefix.front()) || !std::all_of(prefix.begin(), prefix.end(), valid_name_char)))
    fail(errc::bad_parameter,
         "milvus collection prefix '{}' must start with a letter or '_' and hold only letters, digits and '_'", prefix);
  if (space.empty()) fail(errc::bad_parameter, "milvus: a vector space needs a name");
  std::string out(prefix);
  static constexpr char hex[] = "0123456789abcdef";
  for (std::size_t i = 0; i < space.size(); ++i) {
    const auto c = static_cast<unsigned char>(space[i]);
    const bool digit = c >= '0' && c <= '9';
    if (c == '_') {
      out += "__";
    } else if ((valid_name_char(static_cast<char>(c)) && !(digit && out.empty()))) {
      out += static_cast<char>(c);
    } else {
      out += '_';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  if (out.size() > milvus_max_name)
    fail(errc::bad_parameter, "vector space '{}' maps to a Milvus collection name of {} characters (Milvus allows {})",
         space, out.size(), milvus_max_name);
  return out;
}

std::optional<std::string> milvus_space_name(std::string_view prefix, std::string_view collection) {
  if (!collection.starts_with(prefix)) return std::nullopt;
  const auto rest = collection.substr(prefix.size());
  std::string out;
  const auto hexval = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < rest.size(); ++i) {
    if (rest[i] != '_') {
      out += rest[i];
      continue;
    }
    if (i + 1 < rest.size() && rest[i + 1] == '_') {
      out += '_';
      ++i;
      continue;
    }
    if (i + 2 >= rest.size() || hexval(rest[i + 1]) < 0 || hexval(rest[i + 2]) < 0) return std::nullopt;
    out += static_cast<char>(hexval(rest[i + 1]) * 16 + hexval(rest[i + 2]));
    i += 2;
  }
  if (out.empty()) return std::nullopt;
  return out;
}

namespace {

int uri_int(std::string_view uri, std::string_view key, const std::string& value, int lo, int hi) {
  int v = 0;
  const auto r = std::from_chars(value.data(), value.data() + value.size(), v);
  if (r.ec != std::errc() || r.ptr != value.data() + value.size() || v < lo || v > hi)
    fail(errc::bad_parameter, "milvus address '{}': {} must be a whole number from {} to {}", uri, key, lo, hi);
  return v;
}

}  // namespace

milvus_options parse_milvus_uri(std::string_view uri) {
  milvus_options o;
  if (!uri.starts_with("milvus://")) fail(errc::bad_parameter, "milvus address '{}' must start with milvus://", uri);
  const auto parts = parse_uri(uri, "milvus", o.port);
  if (parts.hosts.empty()) fail(errc::bad_parameter, "milvus address '{}' names no host", uri);
  if (parts.hosts.size() > 1) fail(errc::bad_parameter, "milvus address '{}' names more than one host", uri);
  o.host = parts.hosts[0].first;
  o.port = parts.hosts[0].second;
  // milvus://user:password@host is Milvus' own "user:password" token.
  if (parts.has_userinfo) o.token = parts.has_password_colon ? parts.user + ":" + parts.password : parts.password;
  std::optional<int> m, ef_construction, ef, nlist, nprobe;
  for (const auto& [key, value] : parts.query) {
    if (key == "token") {
      o.token = value;
    } else if (key == "db") {
      o.db_name = value;
    } else if (key == "prefix") {
      o.collection_prefix = value;
      (void)milvus_collection_name(value, "x");  // validates the prefix now, not at the first space
    } else if (key == "index" || key == "index_type") {
      std::string upper;
      for (const char c : value) upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      static const std::vector<std::string> known{"HNSW", "IVF_FLAT", "IVF_SQ8", "FLAT", "AUTOINDEX"};
      if (std::find(known.begin(), known.end(), upper) == known.end())
        fail(errc::bad_parameter, "milvus address '{}': index must be one of HNSW, IVF_FLAT, IVF_SQ8, FLAT, AUTOINDEX",
             uri);
      o.index_type = upper;
    } else if (key == "M") {
      m = uri_int(uri, key, value, 2, 2048);  // knowhere's HNSW range for M
    } else if (key == "efConstruction") {
      ef_construction = uri_int(uri, key, value, 1, 1 << 20);
    } else if (key == "ef") {
      ef = uri_int(uri, key, value, 1, 1 << 20);
    } else if (key == "nlist") {
      nlist = uri_int(uri, key, value, 1, 65536);  // knowhere's IVF range for nlist
    } else if (key == "nprobe") {
      nprobe = uri_int(uri, key, value, 1, 65536);
    } else if (key == "timeout_ms") {
      o.timeout = std::chrono::milliseconds(uri_int(uri, key, value, 1, 3600000));
    } else if (key == "load_timeout_ms") {
      o.load_timeout = std::chrono::milliseconds(uri_int(uri, key, value, 1, 3600000));
    } else if (key == "retries") {
      o.retries = uri_int(uri, key, value, 0, 20);
    } else {
      fail(errc::bad_parameter, "milvus address '{}': unknown option '{}'", uri, key);
    }
  }
  const bool hnsw = o.index_type == "HNSW";
  const bool ivf = o.index_type.starts_with("IVF_");
  if ((m || ef_construction || ef) && !hnsw)
    fail(errc::bad_parameter, "milvus address '{}': M, efConstruction and ef belong to index=HNSW", uri);
  if ((nlist || nprobe) && !ivf)
    fail(errc::bad_parameter, "milvus address '{}': nlist and nprobe belong to index=IVF_FLAT or IVF_SQ8", uri);
  o.index_params = nlohmann::json::object();
  o.search_params = nlohmann::json::object();
  if (hnsw) {
    o.index_params = {{"M", m.value_or(16)}, {"efConstruction", ef_construction.value_or(200)}};
    if (ef) o.search_params["ef"] = *ef;
  } else if (ivf) {
    o.index_params = {{"nlist", nlist.value_or(128)}};
    if (nprobe) o.search_params["nprobe"] = *nprobe;
  }
  return o;
}

milvus_index::milvus_index(const milvus_options& options, std::string space, int dim, metric m)
    : options_(options),
      space_(std::move(space)),
      collection_(milvus_collection_name(options.collection_prefix, space_)),
      dim_(dim),
      metric_(m) {
  if (dim < milvus_min_dim || dim > milvus_max_dim)
    fail(errc::bad_parameter, "vector space '{}': Milvus stores {} to {} dimensions, not {}", space_, milvus_min_dim,
         milvus_max_dim, dim);
  http_ = std::make_unique<milvus_http>(options_);
  open();
}

milvus_index::~milvus_index() = default;

void milvus_index::open() {
  const std::string metric_name = metric_ == metric::inner_product ? "IP" : "L2";
  auto described = http_->post("collections/describe", {{"collectionName", collection_}}, {code::collection_not_found});
  if (described.code == code::collection_not_found) {
    // The schema alone, without indexParams: the server then creates neither index nor load
    // (handler_v2.go createCollection returns right after CreateCollection), and each later step
    // is checked here. Milvus 2.4.0-2.4.13 ignored indexType in this request, so sending the
    // index with the collection would give a wrong index or a half-created collection there.
    nlohmann::json body{
        {"collectionName", collection_},
        {"description", std::string(description_marker) + space_},
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
                 {"elementTypeParams", {{"dim", std::to_string(dim_)}}}}})}}},
        // Strong: a search sees every write acknowledged before it, like FAISS. Servers that ignore
        // this keep Bounded; reads ask for Strong again per request (see read()).
        {"params", {{"consistencyLevel", "Strong"}}}};
    // Creating is idempotent in Milvus for an identical schema (rootcoord create_collection_task),
    // so a retry after a lost reply is safe.
    http_->post("collections/create", body);
    spdlog::info("milvus: created collection {} for space {} ({}-d, {})", collection_, space_, dim_, metric_name);
    described = http_->post("collections/describe", {{"collectionName", collection_}});
  }
  verify_schema(described.data);
  ensure_index();
  ensure_loaded();
}

void milvus_index::verify_schema(const nlohmann::json& info) const {
  const auto mismatch = [&](const std::string& what) {
    fail(errc::conflict,
         "milvus collection {} (space {}) exists with {}; drop it or choose another prefix= so that acg2vec can "
         "create its own",
         collection_, space_, what);
  };
  if (!info.is_object()) mismatch("no description");
  // Collision check: a collection made by acg2vec records its space; another space (a different
  // prefix mapping onto the same name, or a hand-made collection) must not be reused silently.
  const auto description = json_string(info.value("description", nlohmann::json()));
  if (description.starts_with(description_marker) && description.substr(description_marker.size()) != space_)
    mismatch(fmt::format("description '{}' (another space)", description));
  const nlohmann::json* id = nullptr;
  const nlohmann::json* vec = nullptr;
  const auto fields = info.value("fields", nlohmann::json::array());  // id and vec point into it
  for (const auto& f : fields) {
    if (!f.is_object()) continue;
    const auto name = f.value("name", "");
    if (name == id_field) id = &f;
    if (name == vector_field) vec = &f;
  }
  if (id == nullptr || vec == nullptr) mismatch("no 'id' and 'vector' fields");
  if (!id->value("primaryKey", false)) mismatch("'id' not the primary key");
  if (id->value("autoId", false)) mismatch("an auto-generated 'id'");
  if (id->value("type", "") != "VarChar") mismatch(fmt::format("an {} 'id' (acg2vec needs VarChar)", id->value("type", "")));
  const auto max_length = json_integer(nlohmann::json(param_of(*id, "max_length")));
  if (!max_length || static_cast<std::size_t>(*max_length) < options_.max_id_bytes)
    mismatch(fmt::format("'id' max_length {} (acg2vec needs at least {})", param_of(*id, "max_length"),
                         options_.max_id_bytes));
  if (vec->value("type", "") != "FloatVector")
    mismatch(fmt::format("a {} 'vector' (acg2vec needs FloatVector)", vec->value("type", "")));
  const auto found_dim = json_integer(nlohmann::json(param_of(*vec, "dim")));
  if (!found_dim || *found_dim != dim_) mismatch(fmt::format("{}-d vectors, not {}-d", param_of(*vec, "dim"), dim_));
}

void milvus_index::ensure_index() {
  const std::string metric_name = metric_ == metric::inner_product ? "IP" : "L2";
  auto described = http_->post("indexes/describe", {{"collectionName", collection_}, {"indexName", index_name}},
                               {code::index_not_found});
  const auto empty = [](const nlohmann::json& d) { return !d.is_array() || d.empty(); };
  if (described.code == code::index_not_found || empty(described.data)) {
    // A collection without an index: created just now, or left so by a run that stopped (or a
    // server that failed the index) between create and index. Repair it.
    nlohmann::json index{{"fieldName", vector_field},
                         {"indexName", index_name},
                         {"metricType", metric_name},
                         {"indexType", options_.index_type}};
    if (!options_.index_params.empty()) index["params"] = options_.index_params;
    http_->post("indexes/create", {{"collectionName", collection_}, {"indexParams", nlohmann::json::array({index})}});
    spdlog::info("milvus: created the {} index of collection {}", options_.index_type, collection_);
    described = http_->post("indexes/describe", {{"collectionName", collection_}, {"indexName", index_name}});
    if (empty(described.data)) fail(errc::unavailable, "milvus collection {}: the index it created is not listed", collection_);
  }
  const auto& i = described.data.at(0);
  const auto found_metric = json_string(i.value("metricType", nlohmann::json()));
  const auto found_type = json_string(i.value("indexType", nlohmann::json()));
  if (i.value("fieldName", vector_field) != std::string(vector_field) || found_metric != metric_name)
    fail(errc::conflict, "milvus collection {} (space {}) is indexed with metric {} on '{}', not {} on 'vector'",
         collection_, space_, found_metric, i.value("fieldName", ""), metric_name);
  if (!found_type.empty() && found_type != options_.index_type)
    fail(errc::conflict,
         "milvus collection {} (space {}) has a {} index, not {} (index= in the milvus:// address); drop the index "
         "or the collection, or ask for index={}",
         collection_, space_, found_type, options_.index_type, found_type);
  if (json_string(i.value("indexState", nlohmann::json())) == "Failed")
    fail(errc::unavailable, "milvus collection {}: building its index failed: {}", collection_,
         json_string(i.value("failReason", nlohmann::json())));
}

void milvus_index::ensure_loaded() const {
  const auto state = [&] {
    return json_string(
        http_->post("collections/get_load_state", {{"collectionName", collection_}}).data.value("loadState", nlohmann::json()));
  };
  auto now = state();
  if (now == "LoadStateLoaded") return;
  if (now != "LoadStateLoading") {
    // NotLoad after a Milvus restart or a release. Loading is idempotent.
    spdlog::info("milvus: loading collection {} (state {})", collection_, now.empty() ? "unknown" : now);
    http_->post("collections/load", {{"collectionName", collection_}});
  }
  const auto deadline = std::chrono::steady_clock::now() + options_.load_timeout;
  auto pause = std::chrono::milliseconds(50);
  while (true) {
    const auto reply = http_->post("collections/get_load_state", {{"collectionName", collection_}});
    now = json_string(reply.data.value("loadState", nlohmann::json()));
    if (now == "LoadStateLoaded") return;
    if (now == "LoadStateNotLoad") http_->post("collections/load", {{"collectionName", collection_}});
    if (std::chrono::steady_clock::now() + pause > deadline)
      fail(errc::unavailable, "milvus collection {} did not finish loading within {} ms (state {}, progress {})",
           collection_, options_.load_timeout.count(), now, json_string(reply.data.value("loadProgress", nlohmann::json())));
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(1000));
  }
}

nlohmann::json milvus_index::read(const std::string& path, const nlohmann::json& body) const {
  auto reply = http_->post(path, body, {code::collection_not_loaded});
  if (reply.code == code::collection_not_loaded) {
    ensure_loaded();
    reply = http_->post(path, body);
  }
  return reply.data;
}

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
  // Every row is checked before the first request, so a bad vector rejects the whole call
  // instead of leaving its first batches stored.
  std::vector<nlohmann::json> vectors;
  vectors.reserve(ids.size());
  for (std::size_t n = 0; n < ids.size(); ++n) vectors.push_back(prepare(data.subspan(n * d, d)));
  for (std::size_t start = 0; start < ids.size(); start += options_.insert_batch) {
    const auto end = std::min(ids.size(), start + options_.insert_batch);
    nlohmann::json rows = nlohmann::json::array();
    for (auto n = start; n < end; ++n) rows.push_back({{id_field, ids[n]}, {vector_field, std::move(vectors[n])}});
    // Upsert: an id that is already there gets its vector replaced, as add() promises; a retry
    // after a lost reply writes the same rows again, which changes nothing.
    http_->post("entities/upsert", {{"collectionName", collection_}, {"data", std::move(rows)}});
  }
}

bool milvus_index::remove(std::string_view id) {
  if (!contains(id)) return false;
  http_->post("entities/delete",
              {{"collectionName", collection_}, {"filter", fmt::format("{} in [{}]", id_field, milvus_quote(id))}});
  return true;
}

nlohmann::json milvus_index::search_params_for(std::size_t limit) const {
  auto params = options_.search_params.is_object() ? options_.search_params : nlohmann::json::object();
  // HNSW refuses ef < limit ("ef(x) should be larger than k(y)"): over-fetching must raise it.
  if (params.contains("ef") && params["ef"].is_number_integer() && params["ef"].get<long long>() < static_cast<long long>(limit))
    params["ef"] = limit;
  return params;
}

std::vector<hit> milvus_index::run_search(std::span<const float> query, std::size_t limit,
                                          const std::string& filter) const {
  nlohmann::json body{{"collectionName", collection_},
                      {"data", nlohmann::json::array({prepare(query)})},
                      {"annsField", vector_field},
                      {"limit", limit},
                      {"outputFields", nlohmann::json::array({id_field})},
                      {"consistencyLevel", "Strong"}};
  if (!filter.empty()) body["filter"] = filter;
  if (const auto params = search_params_for(limit); !params.empty()) body["searchParams"] = {{"params", params}};
  const auto data = read("entities/search", body);
  std::vector<hit> hits;
  if (!data.is_array()) return hits;
  for (const auto& row : data) {
    hit h;
    h.id = json_string(row.at(id_field));
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
  const auto data = read("entities/query", {{"collectionName", collection_},
                                            {"filter", fmt::format("{} in [{}]", id_field, milvus_quote(id))},
                                            {"outputFields", nlohmann::json::array({id_field})},
                                            {"limit", 1},
                                            {"consistencyLevel", "Strong"}});
  return data.is_array() && !data.empty();
}

std::size_t milvus_index::size() const {
  // No limit sent: the proxy's query task refuses count(*) with pagination. (The REST handler's
  // own 100-row default is applied to row queries; docs/scale-out.md notes where that is unverified.)
  const auto data = read("entities/query", {{"collectionName", collection_},
                                            {"filter", ""},
                                            {"outputFields", nlohmann::json::array({"count(*)"})},
                                            {"consistencyLevel", "Strong"}});
  if (!data.is_array() || data.empty()) return 0;
  const auto n = json_integer(data[0].value("count(*)", nlohmann::json()));
  if (!n || *n < 0) fail(errc::internal, "milvus collection {}: count(*) came back as {}", collection_, data[0].dump());
  return static_cast<std::size_t>(*n);
}

void milvus_index::save(const std::filesystem::path&, std::uint64_t) const {}

void milvus_index::drop() { http_->post("collections/drop", {{"collectionName", collection_}}); }

}  // namespace acg2vec::index
