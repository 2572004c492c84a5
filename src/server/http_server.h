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
#include <regex>
#include <vector>
#include <string>
#include <string_view>

#include "core/error.h"
#include "core/thread_pool.h"
#include "server/access.h"
#include "server/connection_loop.h"
#include "server/metrics.h"

namespace acg2vec::server {

using http_request = httplib::Request;
using http_response = httplib::Response;
using http_handler = std::function<void(const http_request&, http_response&)>;

struct server_options {
  std::string host = "127.0.0.1";
  int port = 8081;
  std::size_t max_request_bytes = 100u << 20;  ///< whole body, as the seed's 100 MB request limit
  std::size_t max_upload_bytes = 20u << 20;    ///< one file part, as the seed's 20 MB
  /// HTTP worker threads. Each holds its request from decoding to the answer, so with only
  /// max_batch (8) of them every worker waits inside the running forward and none decodes the
  /// next batch: at 64 clients 8 workers served 0.38x of model-only batch 8, 16 served 0.50-0.56x
  /// (BENCHMARKS.md "bench serve").
  std::size_t threads = 16;
  /// Nice increment of the HTTP workers: they decode and preprocess, and yield the cores to the
  /// model's compute thread, whose OpenMP team otherwise stalls at barriers (BENCHMARKS.md).
  int worker_nice = input_thread_nice();
  std::chrono::seconds read_timeout{15};       ///< the whole request head must arrive within this (else 408)
  std::chrono::seconds request_timeout{120};   ///< the whole request, head and body (else 408)
  std::chrono::seconds keep_alive_timeout{5};  ///< an idle keep-alive connection is closed after this
  std::chrono::seconds write_timeout{30};      ///< a client that reads nothing of its answer for this long is dropped
  std::size_t max_header_bytes = 64u << 10;    ///< request line and header fields together (else 431)
  std::size_t max_headers = 100;               ///< header fields per request (else 431)
  std::size_t max_request_line = 8u << 10;     ///< method, target and version (else 414)
  std::size_t max_connections = 1024;          ///< open connections in all (else 503 and close)
  std::size_t max_connections_per_client = 128;  ///< open connections per client address (else 503 and close)
  std::size_t body_budget_bytes = 512u << 20;  ///< request bodies held in memory at once, all clients (else 503)
  std::filesystem::path web_root;              ///< static files served at '/' (empty = none)
  key_set api_keys;                    ///< empty = no authentication
  bool protect_reads = false;                  ///< read routes need a key too (needs api_keys)
  origin_list cors_origins;            ///< empty = no CORS headers, preflights not answered
  double rate_limit = 0;                       ///< requests per second per client; 0 = unlimited
  double rate_burst = 0;                       ///< bucket size; 0 = max(1, ceil(rate_limit))
};

/// Who may call a route. Every route states it: there is no default, so a new write route cannot
/// ship unauthenticated by omission.
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
           route_access access);

  /// One registered route, as the route table holds it.
  struct route_entry {
    std::string method;
    std::string pattern;
    std::string name;
    route_access access;
  };
  /// @brief Every registered route, in registration order.
  [[nodiscard]] std::vector<route_entry> routes() const;
  /// @brief The methods registered for a path (for 405 answers and their Allow header).
  [[nodiscard]] std::vector<std::string> methods_for(const std::string& path) const;

  /// @brief Binds and serves until stop(). Throws errc::unavailable when the port cannot be bound.
  /// on_bound is called with the actual port (useful with port 0) once listening.
  void listen(const std::function<void(int)>& on_bound = {});
  void stop();

  /// @brief Runs one raw HTTP/1.x request through the whole request path (framing and limits,
  /// httplib's parsers, the hooks, routing, the handler) in-process and returns the raw response;
  /// for tests and fuzzing.
  std::string process_raw(std::string_view request);

  /// Counters of the connection loop (accepted, refused, timed out, open).
  [[nodiscard]] const connection_loop::counters* connection_stats() const noexcept {
    return loop_ ? &loop_->stats() : nullptr;
  }

  [[nodiscard]] metrics& stats() noexcept { return metrics_; }
  [[nodiscard]] const server_options& options() const noexcept { return options_; }

 private:
  void serve_static(const http_request& req, http_response& res) const;
  /// Sets CORS headers on every response; answers preflights. True when the request is answered.
  bool handle_cors(const http_request& req, http_response& res) const;
  /// Rate limit and API key check of a matched route. False when res already holds the refusal.
  bool admit(const http_request& req, http_response& res, route_access access);
  /// The key check for a request that announces a body, made before the body is read.
  std::optional<refusal> admit_head(const request_head& head, const std::string& peer_ip);
  /// Runs one complete request (already framed by the connection loop) on a worker thread.
  wire_response process(const wire_request& request);
  /// The access level of the route a method and path reach, if any.
  [[nodiscard]] std::optional<route_access> access_of(const std::string& method, const std::string& path) const;
  std::string next_request_id();
  [[nodiscard]] connection_limits loop_limits() const;
  /// Adds the static-file fallback after every API route (once).
  void finish_routes();
  /// A 405 with Allow when the path is served under other methods; false when it is not.
  bool method_not_allowed(const http_request& req, http_response& res) const;

  struct compiled_route {
    route_entry entry;
    std::regex re;
  };

  server_options options_;
  std::vector<compiled_route> routes_;
  std::unique_ptr<connection_loop> loop_;
  std::unique_ptr<httplib::Server> server_;
  metrics metrics_;
  std::unique_ptr<rate_limiter> limiter_;  ///< null when rate limiting is off
  std::atomic<std::uint64_t> next_request_id_{1};
  std::uint32_t instance_tag_;
  int listen_fd_ = -1;  ///< the listening socket once bound
  bool routes_finished_ = false;
  std::atomic<bool> stopped_{false};
};

// ---- helpers used by route handlers -------------------------------------------------------

/// @brief Writes the seed's success envelope {message, data[, total]}; data omitted when null.
void reply(http_response& res, const nlohmann::json& data, std::string_view message = "ok",
           std::optional<std::int64_t> total = std::nullopt);
/// @brief Writes {"message": ..., "error": kind} with the status of the error code.
void reply_error(http_response& res, errc code, std::string_view message);
/// @brief Writes a raw JSON body (no envelope) with a status.
void reply_json(http_response& res, const nlohmann::json& body, int status = 200);

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
nlohmann::json parse_json_body(const http_request& req);

}  // namespace acg2vec::server