#pragma once
// The HTTP edge: cpp-httplib underneath, JSON in and out, one place where acg2vec::error
// becomes a status code. Routes are added by the modules' register_*_routes functions.
//
// Thread safety: add()/serve_static() before listen(); stop() from any thread.
//
// Access control (see server/access.h and docs/access-control.md): every route declares whether
// it is open, a read or a write. Writes need an API key whenever keys are configured, reads only
// with protect_reads; CORS headers and preflights follow cors_origins; rate_limit throttles each
// client (its API key, else its address). /health, static files and preflights are never throttled.

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "core/error.h"
#include "server/access.h"
#include "server/metrics.h"

namespace acg2vec {

using json = nlohmann::json;
using http_request = httplib::Request;
using http_response = httplib::Response;
using http_handler = std::function<void(const http_request&, http_response&)>;

struct server_options {
  std::string host = "127.0.0.1";
  int port = 8081;
  std::size_t max_request_bytes = 100u << 20;  ///< whole body, as the seed's 100 MB request limit
  std::size_t max_upload_bytes = 20u << 20;    ///< one file part, as the seed's 20 MB
  std::size_t threads = 8;                     ///< HTTP worker threads (they mostly wait on models)
  std::chrono::seconds read_timeout{15};       ///< a client that stalls mid-request gets 408
  std::chrono::seconds write_timeout{30};
  std::filesystem::path web_root;              ///< static files served at '/' (empty = none)
  access::key_set api_keys;                    ///< empty = no authentication
  bool protect_reads = false;                  ///< read routes need a key too (needs api_keys)
  access::origin_list cors_origins;            ///< empty = no CORS headers, preflights not answered
  double rate_limit = 0;                       ///< requests per second per client; 0 = unlimited
  double rate_burst = 0;                       ///< bucket size; 0 = max(1, ceil(rate_limit))
};

/// Who may call a route.
enum class route_access {
  open,   ///< always answered (health)
  read,   ///< needs a key only when server_options::protect_reads
  write,  ///< needs a key whenever keys are configured
};

class http_server {
 public:
  explicit http_server(server_options options);
  ~http_server();
  http_server(const http_server&) = delete;
  http_server& operator=(const http_server&) = delete;

  /// @brief Adds a route. pattern is a std::regex over the path; name labels metrics and logs;
  /// access decides whether it needs an API key (and whether it is rate limited).
  void add(std::string_view method, const std::string& pattern, std::string name, http_handler handler,
           route_access access = route_access::read);

  /// @brief Binds and serves until stop(). Throws errc::unavailable when the port cannot be bound.
  /// on_bound is called with the actual port (useful with port 0) once listening.
  void listen(const std::function<void(int)>& on_bound = {});
  void stop();

  /// @brief Runs one raw HTTP/1.x request through the whole request path (httplib's parsers, the
  /// hooks, routing, the handler) in-process and returns the raw response; for tests and fuzzing.
  std::string process_raw(std::string_view request);

  [[nodiscard]] metrics& stats() noexcept { return metrics_; }
  [[nodiscard]] const server_options& options() const noexcept { return options_; }

 private:
  void serve_static(const http_request& req, http_response& res) const;
  /// Sets CORS headers on every response; answers preflights. True when the request is answered.
  bool handle_cors(const http_request& req, http_response& res) const;
  /// Rate limit and API key check of a matched route. False when res already holds the refusal.
  bool admit(const http_request& req, http_response& res, route_access access);

  server_options options_;
  std::unique_ptr<httplib::Server> server_;
  metrics metrics_;
  std::unique_ptr<access::rate_limiter> limiter_;  ///< null when rate limiting is off
  std::atomic<std::uint64_t> next_request_id_{1};
  std::uint32_t instance_tag_;
  int listen_fd_ = -1;  ///< the listening socket once bound, to widen its accept backlog
};

// ---- helpers used by route handlers -------------------------------------------------------

/// @brief Writes the seed's success envelope {message, data[, total]}; data omitted when null.
void reply(http_response& res, const json& data, std::string_view message = "ok",
           std::optional<std::int64_t> total = std::nullopt);
/// @brief Writes {"message": ..., "error": kind} with the status of the error code.
void reply_error(http_response& res, errc code, std::string_view message);
/// @brief Writes a raw JSON body (no envelope) with a status.
void reply_json(http_response& res, const json& body, int status = 200);

/// @brief A text parameter from the query string, a urlencoded form, or a multipart field.
std::optional<std::string> find_param(const http_request& req, const std::string& name);
/// @brief As find_param, but a missing parameter is errc::bad_parameter.
std::string require_param(const http_request& req, const std::string& name);
/// @brief An integer parameter with a default and an inclusive range.
std::int64_t int_param(const http_request& req, const std::string& name, std::int64_t fallback, std::int64_t min,
                       std::int64_t max);
/// @brief The bytes of a multipart file part; tries the names in order (the seed used both
/// "image" and "file"). Missing part → bad_parameter; over max_upload_bytes → too_large.
std::string_view require_file(const http_request& req, std::initializer_list<std::string_view> names,
                              std::size_t max_upload_bytes);
/// @brief Parses the body as JSON; bad JSON or nesting deeper than 64 → bad_parameter.
json parse_json_body(const http_request& req);

}  // namespace acg2vec
