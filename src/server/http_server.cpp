#include "server/http_server.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

namespace acg2vec {

namespace {

// Per-request bookkeeping. httplib runs the pre-routing hook, the handler and the logger of one
// request on the same worker thread, so a thread_local carries data between them.
struct request_trace {
  std::chrono::steady_clock::time_point start;
  std::string route = "unmatched";
};
thread_local request_trace current_trace;

bool valid_request_id(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  return std::all_of(id.begin(), id.end(), [](unsigned char c) { return std::isalnum(c) || c == '-' || c == '_'; });
}

std::string_view mime_for(const std::filesystem::path& p) {
  auto ext = p.extension().string();
  if (ext == ".html") return "text/html; charset=utf-8";
  if (ext == ".js") return "text/javascript; charset=utf-8";
  if (ext == ".css") return "text/css; charset=utf-8";
  if (ext == ".json") return "application/json";
  if (ext == ".svg") return "image/svg+xml";
  if (ext == ".png") return "image/png";
  if (ext == ".ico") return "image/x-icon";
  return "application/octet-stream";
}

// httplib's request processing behind a socket, minus the socket: reads a byte string, collects
// the response in another.
class memory_stream final : public httplib::Stream {
 public:
  explicit memory_stream(std::string_view input) : input_(input) {}
  bool is_readable() const override { return true; }
  bool is_writable() const override { return true; }
  ssize_t read(char* ptr, size_t size) override {
    size_t n = std::min(size, input_.size() - position_);
    std::memcpy(ptr, input_.data() + position_, n);
    position_ += n;
    return static_cast<ssize_t>(n);
  }
  ssize_t write(const char* ptr, size_t size) override {
    output_.append(ptr, size);
    return static_cast<ssize_t>(size);
  }
  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    ip = "127.0.0.1";
    port = 0;
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    ip = "127.0.0.1";
    port = 0;
  }
  socket_t socket() const override { return INVALID_SOCKET; }
  [[nodiscard]] const std::string& output() const noexcept { return output_; }

 private:
  std::string_view input_;
  std::size_t position_ = 0;
  std::string output_;
};

// Exposes httplib's protected per-request entry point for process_raw().
class local_server final : public httplib::Server {
 public:
  using httplib::Server::process_request;
};

}  // namespace

http_server::http_server(server_options options)
    : options_(std::move(options)), server_(std::make_unique<local_server>()) {
  std::random_device rd;
  instance_tag_ = rd();
  auto& srv = *server_;
  std::size_t threads = std::max<std::size_t>(2, options_.threads);
  srv.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  srv.set_payload_max_length(options_.max_request_bytes);
  srv.set_read_timeout(options_.read_timeout);
  srv.set_write_timeout(options_.write_timeout);
  srv.set_keep_alive_timeout(5);
  // Small JSON answers must not wait for Nagle: without this p99 on loopback was ~44 ms.
  srv.set_tcp_nodelay(true);
  // httplib's default on Linux is SO_REUSEPORT, which lets a second server bind the same port and
  // silently take half of the connections. SO_REUSEADDR keeps quick restarts (TIME_WAIT) working
  // while a port held by a running server stays an error. The socket is remembered so that
  // listen() can widen the accept backlog (see there).
  srv.set_socket_options([this](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    listen_fd_ = sock;
  });

  if (options_.protect_reads && options_.api_keys.empty()) {
    fail(errc::bad_parameter, "--protect-reads needs API keys (--api-key-file)");
  }
  if (options_.rate_limit > 0) {
    double burst = options_.rate_burst > 0 ? options_.rate_burst : std::max(1.0, std::ceil(options_.rate_limit));
    limiter_ = std::make_unique<access::rate_limiter>(options_.rate_limit, burst);
  } else if (options_.rate_limit < 0) {
    fail(errc::bad_parameter, "rate limit must not be negative, got {}", options_.rate_limit);
  }

  srv.set_pre_routing_handler([this](const http_request& req, http_response& res) {
    current_trace = request_trace{std::chrono::steady_clock::now(), "unmatched"};
    std::string id = req.get_header_value("X-Request-Id");
    if (!valid_request_id(id)) {
      id = fmt::format("{:08x}-{:x}", instance_tag_, next_request_id_.fetch_add(1));
    }
    res.set_header("X-Request-Id", id);
    return handle_cors(req, res) ? httplib::Server::HandlerResponse::Handled
                                 : httplib::Server::HandlerResponse::Unhandled;
  });

  // Called for statuses >= 400 that no handler wrote a body for: unknown routes, httplib's own
  // 413/400/408 answers. Every error leaves the server as JSON with a message.
  srv.set_error_handler([](const http_request& req, http_response& res) {
    if (!res.body.empty()) return;
    std::string message;
    switch (res.status) {
      case 404: message = fmt::format("no route for {} {}", req.method, req.path); break;
      case 405: message = fmt::format("method {} not allowed on {}", req.method, req.path); break;
      case 408: message = "request timed out before it was complete"; break;
      case 413: message = "request body is larger than the server's limit"; break;
      case 414: message = "request URI is too long"; break;
      default: message = fmt::format("HTTP error {}", res.status); break;
    }
    // The path may be any bytes after percent-decoding; a throwing dump() here would escape
    // httplib's worker thread and end the process.
    res.set_content(json{{"message", message}}.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
  });

  srv.set_exception_handler([](const http_request&, http_response& res, std::exception_ptr ep) {
    // Handlers catch their own errors (see add()); this only guards httplib internals.
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      reply_error(res, errc::internal, e.what());
    } catch (...) {
      reply_error(res, errc::internal, "unknown internal error");
    }
  });

  srv.set_logger([this](const http_request& req, const http_response& res) {
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - current_trace.start).count();
    metrics_.observe_request(current_trace.route, req.method, res.status, seconds);
    spdlog::info("{} {} {} {} {}B {:.2f}ms id={}", req.remote_addr, req.method, req.path, res.status, res.body.size(),
                 seconds * 1e3, res.get_header_value("X-Request-Id"));
  });

  add("GET", "/metrics", "metrics", [this](const http_request&, http_response& res) {
    res.set_content(metrics_.render(), "text/plain; version=0.0.4");
  });
}

http_server::~http_server() { stop(); }

void http_server::add(std::string_view method, const std::string& pattern, std::string name, http_handler handler,
                      route_access access) {
  auto wrapped = [this, access, name = std::move(name), handler = std::move(handler)](const http_request& req,
                                                                                        http_response& res) {
    current_trace.route = name;
    if (!admit(req, res, access)) return;
    try {
      handler(req, res);
    } catch (const error& e) {
      reply_error(res, e.code(), e.what());
    } catch (const json::exception& e) {
      reply_error(res, errc::bad_parameter, fmt::format("invalid JSON value: {}", e.what()));
    } catch (const std::bad_alloc&) {
      reply_error(res, errc::too_large, "request needs more memory than is available");
    } catch (const std::exception& e) {
      spdlog::error("route {} failed: {}", name, e.what());
      reply_error(res, errc::internal, e.what());
    }
  };
  auto& srv = *server_;
  if (method == "GET") {
    srv.Get(pattern, wrapped);
  } else if (method == "POST") {
    srv.Post(pattern, wrapped);
  } else if (method == "PUT") {
    srv.Put(pattern, wrapped);
  } else if (method == "DELETE") {
    srv.Delete(pattern, wrapped);
  } else if (method == "PATCH") {
    srv.Patch(pattern, wrapped);
  } else {
    fail(errc::internal, "unsupported method {}", method);
  }
}

bool http_server::handle_cors(const http_request& req, http_response& res) const {
  const auto& origins = options_.cors_origins;
  if (origins.empty()) return false;
  // With a list of origins the answer depends on the Origin header, so caches must key on it
  // even for answers that carry no CORS headers.
  if (!origins.allows_any()) res.set_header("Vary", "Origin");
  std::string origin = req.get_header_value("Origin");
  if (origin.empty()) return false;
  bool allowed = origins.allows(origin);
  if (allowed) {
    res.set_header("Access-Control-Allow-Origin", origins.allows_any() ? std::string("*") : origin);
    res.set_header("Access-Control-Expose-Headers", "Retry-After, WWW-Authenticate, X-Request-Id");
  }
  bool preflight = req.method == "OPTIONS" && req.has_header("Access-Control-Request-Method");
  if (!preflight) return false;
  current_trace.route = "preflight";
  if (!allowed) {
    reply_json(res, json{{"message", fmt::format("origin '{}' may not call this API", origin)}, {"error", "forbidden"}},
               403);
    return true;
  }
  res.status = 204;
  res.set_header("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS");
  res.set_header("Access-Control-Allow-Headers", "Authorization, X-API-Key, Content-Type, X-Request-Id");
  res.set_header("Access-Control-Max-Age", "600");
  return true;
}

bool http_server::admit(const http_request& req, http_response& res, route_access access) {
  if (access == route_access::open) return true;
  const auto& keys = options_.api_keys;
  std::optional<std::size_t> key_index;
  bool presented = false;
  if (!keys.empty()) {
    auto key = access::presented_key(req.get_header_value("Authorization"), req.get_header_value("X-API-Key"));
    if (key) {
      presented = true;
      key_index = keys.find(*key);
    }
  }
  // Throttling comes before the key check so that guessing keys is throttled too. A valid key
  // is its own client (wherever it connects from); everything else is counted by address.
  if (limiter_) {
    std::string client = key_index ? fmt::format("key:{}", *key_index) : "addr:" + req.remote_addr;
    auto decision = limiter_->acquire(client);
    if (!decision.allowed) {
      res.set_header("Retry-After", std::to_string(decision.retry_after_s));
      reply_json(res,
                 json{{"message", fmt::format("rate limit of {} requests per second exceeded; retry in {} s",
                                              options_.rate_limit, decision.retry_after_s)},
                      {"error", "rate_limited"}},
                 429);
      return false;
    }
  }
  bool needs_key = !keys.empty() && (access == route_access::write || options_.protect_reads);
  if (needs_key && !key_index) {
    res.set_header("WWW-Authenticate",
                   presented ? R"(Bearer realm="acg2vec", error="invalid_token")" : R"(Bearer realm="acg2vec")");
    std::string message = presented ? "the API key is not valid"
                                    : "this route needs an API key: send 'Authorization: Bearer <key>' or "
                                      "'X-API-Key: <key>'";
    reply_json(res, json{{"message", message}, {"error", "unauthorized"}}, 401);
    return false;
  }
  return true;
}

void http_server::serve_static(const http_request& req, http_response& res) const {
  current_trace.route = "static";
  if (options_.web_root.empty()) {
    reply_error(res, errc::not_found, fmt::format("no route for GET {}", req.path));
    return;
  }
  // req.path is already percent-decoded, so "%2e%2e" arrives here as "..". A backslash is an
  // ordinary file name byte on POSIX, but it never names a file of the page; refusing it keeps
  // Windows-style "..\\" out of the resolution below altogether.
  std::string rel = req.path == "/" ? "index.html" : req.path.substr(1);
  if (rel.find('\\') != std::string::npos) {
    reply_error(res, errc::not_found, "path leaves the web root");
    return;
  }
  std::filesystem::path relative(rel);
  for (const auto& part : relative) {
    if (part == ".." || part.string().find('\0') != std::string::npos) {
      reply_error(res, errc::not_found, "path leaves the web root");
      return;
    }
  }
  std::error_code ec;
  auto root = std::filesystem::canonical(options_.web_root, ec);
  if (ec) {
    reply_error(res, errc::not_found, "web root is missing");
    return;
  }
  auto target = std::filesystem::weakly_canonical(root / relative, ec);
  // Symlinks are resolved by canonical(): a link that points outside the root is refused too.
  auto [root_end, _] = std::mismatch(root.begin(), root.end(), target.begin(), target.end());
  if (ec || root_end != root.end() || !std::filesystem::is_regular_file(target, ec)) {
    reply_error(res, errc::not_found, fmt::format("no such file: {}", req.path));
    return;
  }
  std::ifstream in(target, std::ios::binary);
  std::ostringstream buf;
  buf << in.rdbuf();
  res.set_content(buf.str(), std::string(mime_for(target)));
  res.set_header("Cache-Control", "no-cache");
}

void http_server::listen(const std::function<void(int)>& on_bound) {
  // Static files come last so API routes win; any other GET falls through to the web root.
  server_->Get("/.*", [this](const http_request& req, http_response& res) { serve_static(req, res); });
  int port = options_.port;
  if (port == 0) {
    port = server_->bind_to_any_port(options_.host);
  } else if (!server_->bind_to_port(options_.host, port)) {
    port = -1;
  }
  if (port < 0) fail(errc::unavailable, "cannot listen on {}:{} (address in use or not permitted)", options_.host,
                     options_.port);
  // The packaged httplib listens with a backlog of 5. While inference keeps the CPU busy the
  // accept thread runs late, so a burst of keep-alive clients (re)connecting overflows that queue:
  // the kernel answers with SYN cookies and drops completed handshakes, and a client whose request
  // spans several segments then has a later segment fail the cookie check and gets a reset
  // instead of an answer. Calling listen() again on a listening socket only changes its backlog;
  // the kernel caps it at net.core.somaxconn.
  if (listen_fd_ < 0 || ::listen(listen_fd_, SOMAXCONN) != 0) {
    spdlog::warn("cannot widen the accept backlog of the listening socket; bursts of connections may be reset");
  }
  spdlog::info("listening on http://{}:{}", options_.host, port);
  if (on_bound) on_bound(port);
  server_->listen_after_bind();
}

void http_server::stop() {
  if (server_ && server_->is_running()) server_->stop();
}

std::string http_server::process_raw(std::string_view request) {
  memory_stream stream(request);
  bool closed = false;
  static_cast<local_server&>(*server_).process_request(stream, true, closed, nullptr);
  return stream.output();
}

// ---- helpers ---------------------------------------------------------------------------------

void reply_json(http_response& res, const json& body, int status) {
  res.status = status;
  // Replace invalid UTF-8 rather than throwing while reporting another error.
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

void reply(http_response& res, const json& data, std::string_view message, std::optional<std::int64_t> total) {
  json body{{"message", message}};
  if (!data.is_null()) body["data"] = data;
  if (total) body["total"] = *total;
  reply_json(res, body, 200);
}

void reply_error(http_response& res, errc code, std::string_view message) {
  reply_json(res, json{{"message", message}, {"error", to_string(code)}}, http_status(code));
}

std::optional<std::string> find_param(const http_request& req, const std::string& name) {
  if (req.has_param(name.c_str())) return req.get_param_value(name.c_str());
  if (req.has_file(name.c_str())) {
    auto part = req.get_file_value(name.c_str());
    if (part.filename.empty()) return part.content;
  }
  return std::nullopt;
}

std::string require_param(const http_request& req, const std::string& name) {
  auto v = find_param(req, name);
  if (!v) fail(errc::bad_parameter, "missing parameter '{}'", name);
  return *v;
}

std::int64_t int_param(const http_request& req, const std::string& name, std::int64_t fallback, std::int64_t min,
                       std::int64_t max) {
  auto v = find_param(req, name);
  if (!v) return fallback;
  std::int64_t out = 0;
  auto [ptr, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
  if (ec != std::errc{} || ptr != v->data() + v->size()) {
    fail(errc::bad_parameter, "parameter '{}' must be an integer, got '{}'", name, v->substr(0, 32));
  }
  if (out < min || out > max) fail(errc::bad_parameter, "parameter '{}' must be in [{}, {}], got {}", name, min, max, out);
  return out;
}

std::string_view require_file(const http_request& req, std::initializer_list<std::string_view> names,
                              std::size_t max_upload_bytes) {
  for (auto name : names) {
    auto it = req.files.find(std::string(name));
    if (it == req.files.end()) continue;
    const auto& content = it->second.content;
    if (content.size() > max_upload_bytes) {
      fail(errc::too_large, "file part '{}' is {} bytes; the limit is {} bytes", name, content.size(),
           max_upload_bytes);
    }
    if (content.empty()) fail(errc::bad_parameter, "file part '{}' is empty", name);
    return content;
  }
  std::string wanted;
  for (auto n : names) wanted += (wanted.empty() ? "'" : " or '") + std::string(n) + "'";
  if (!req.is_multipart_form_data()) {
    fail(errc::bad_parameter, "expected a multipart/form-data body with a file part {}", wanted);
  }
  fail(errc::bad_parameter, "missing multipart file part {}", wanted);
}

json parse_json_body(const http_request& req) {
  if (req.body.empty()) fail(errc::bad_parameter, "request body is empty; expected JSON");
  static constexpr int max_depth = 64;
  // nlohmann's parser recurses per nesting level; refuse deep documents before they exhaust the stack.
  int depth = 0;
  auto guard = [&depth](int d, json::parse_event_t event, json&) {
    if (event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) {
      depth = d;
      if (d > max_depth) throw error(errc::bad_parameter, fmt::format("JSON nested deeper than {} levels", max_depth));
    }
    return true;
  };
  try {
    return json::parse(req.body, guard);
  } catch (const json::exception& e) {
    // parse_error, and out_of_range for a number that does not fit a double ("1e999").
    fail(errc::bad_parameter, "body is not valid JSON: {}", e.what());
  }
}

}  // namespace acg2vec
