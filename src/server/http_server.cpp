// One file because it is the server's one request path: the route table, CORS, access checks,
// static files and the hand-off from the connection loop all act on the same route entries.
#include "server/http_server.h"

#include "core/timing.h"

#include "core/json_guard.h"

#include <spdlog/spdlog.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <unordered_map>

namespace acg2vec::server {

using json = nlohmann::json;

/// The icon served at /favicon.ico when the web root has none.
std::string default_favicon();

namespace {

// Per-request bookkeeping. httplib runs the pre-routing hook, the handler and the logger of one
// request on the same worker thread, so a thread_local carries data between them.
struct request_trace {
  std::chrono::steady_clock::time_point start;
  std::string route = "unmatched";
  std::chrono::steady_clock::time_point queued{}, picked{};  ///< read whole; taken by this worker
};
thread_local request_trace current_trace;

bool valid_request_id(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  return std::all_of(id.begin(), id.end(), [](unsigned char c) { return std::isalnum(c) || c == '-' || c == '_'; });
}

// What front-end builds ship; anything else is sent as bytes.
std::string_view mime_for(const std::filesystem::path& p) {
  static const std::unordered_map<std::string, std::string_view> types = {
      {".html", "text/html; charset=utf-8"},   {".htm", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"}, {".mjs", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},     {".json", "application/json"},
      {".map", "application/json"},            {".webmanifest", "application/manifest+json"},
      {".svg", "image/svg+xml"},               {".png", "image/png"},
      {".jpg", "image/jpeg"},                  {".jpeg", "image/jpeg"},
      {".gif", "image/gif"},                   {".webp", "image/webp"},
      {".avif", "image/avif"},                 {".ico", "image/x-icon"},
      {".woff", "font/woff"},                  {".woff2", "font/woff2"},
      {".ttf", "font/ttf"},                    {".otf", "font/otf"},
      {".wasm", "application/wasm"},           {".txt", "text/plain; charset=utf-8"},
      {".xml", "application/xml"},             {".pdf", "application/pdf"},
  };
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  auto it = types.find(ext);
  return it == types.end() ? std::string_view("application/octet-stream") : it->second;
}


// httplib's request processing behind a socket, minus the socket: reads a byte string, collects
// the response in another.
class memory_stream final : public httplib::Stream {
 public:
  memory_stream(std::string_view input, std::string peer_ip, int peer_port)
      : input_(input), peer_ip_(std::move(peer_ip)), peer_port_(peer_port) {}
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
    ip = peer_ip_;
    port = peer_port_;
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    ip = "127.0.0.1";
    port = 0;
  }
  socket_t socket() const override { return INVALID_SOCKET; }
  [[nodiscard]] const std::string& output() const noexcept { return output_; }

 private:
  std::string_view input_;
  std::string peer_ip_;
  int peer_port_ = 0;
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
  // Framing, limits and timeouts are the connection loop's (server/connection_loop.h); httplib
  // only parses complete requests handed to it from memory.
  srv.set_payload_max_length(options_.max_request_bytes);

  if (options_.protect_reads && options_.api_keys.empty()) {
    fail(errc::bad_parameter, "--protect-reads needs API keys (--api-key-file)");
  }
  if (options_.rate_limit > 0) {
    double burst = options_.rate_burst > 0 ? options_.rate_burst : std::max(1.0, std::ceil(options_.rate_limit));
    limiter_ = std::make_unique<rate_limiter>(options_.rate_limit, burst);
  } else if (options_.rate_limit < 0) {
    fail(errc::bad_parameter, "rate limit must not be negative, got {}", options_.rate_limit);
  }

  srv.set_pre_routing_handler([this](const http_request& req, http_response& res) {
    current_trace.start = std::chrono::steady_clock::now();
    current_trace.route = "unmatched";
    std::string id = req.get_header_value("X-Request-Id");
    if (!valid_request_id(id)) id = next_request_id();
    res.set_header("X-Request-Id", id);
    return handle_cors(req, res) ? httplib::Server::HandlerResponse::Handled
                                 : httplib::Server::HandlerResponse::Unhandled;
  });

  // Called for statuses >= 400 that no handler wrote a body for: unknown routes, httplib's own
  // 413/400 answers. Every error leaves the server as JSON with a message.
  srv.set_error_handler([this](const http_request& req, http_response& res) {
    if (!res.body.empty()) return;
    if (res.status == 404 && method_not_allowed(req, res)) return;
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
    // the worker thread and end the process.
    res.set_content(json{{"message", message}}.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
  });

  srv.set_exception_handler([](const http_request&, http_response& res, std::exception_ptr ep) {
    // Handlers catch their own errors (see add()); this only guards httplib internals. What
    // went wrong is logged with the request id; the client gets the id, never the details.
    std::string id = res.get_header_value("X-Request-Id");
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      spdlog::error("request failed inside the HTTP layer: {} id={}", e.what(), id);
    } catch (...) {
      spdlog::error("request failed inside the HTTP layer id={}", id);
    }
    reply_error(res, errc::internal, fmt::format("internal error; request id {}", id));
  });

  srv.set_logger([this](const http_request& req, const http_response& res) {
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - current_trace.start).count();
    metrics_.observe_request(current_trace.route, req.method, res.status, seconds);
    spdlog::info("{} {} {} {} {}B {:.2f}ms id={}", req.remote_addr, req.method, req.path, res.status, res.body.size(),
                 seconds * 1e3, res.get_header_value("X-Request-Id"));
  });

  add("GET", "/metrics", "metrics", [this](const http_request&, http_response& res) {
    std::string text = metrics_.render();
    if (const auto* c = connection_stats()) {
      text += fmt::format(
          "# HELP acg2vec_http_connections Connections by outcome.\n# TYPE acg2vec_http_connections counter\n"
          "acg2vec_http_connections{{outcome=\"accepted\"}} {}\nacg2vec_http_connections{{outcome=\"refused\"}} {}\n"
          "# HELP acg2vec_http_refused_requests Requests refused before routing (limits, timeouts).\n"
          "# TYPE acg2vec_http_refused_requests counter\nacg2vec_http_refused_requests {}\n"
          "# HELP acg2vec_http_open_connections Open connections.\n# TYPE acg2vec_http_open_connections gauge\n"
          "acg2vec_http_open_connections {}\n",
          c->accepted.load(), c->refused_connections.load(), c->refused_requests.load(), c->open.load());
    }
    res.set_content(text, "text/plain; version=0.0.4");
  }, route_access::read);
}

http_server::~http_server() { stop(); }

std::string http_server::next_request_id() {
  return fmt::format("{:08x}-{:x}", instance_tag_, next_request_id_.fetch_add(1));
}

void http_server::add(std::string_view method, const std::string& pattern, std::string name, http_handler handler,
                      route_access access) {
  routes_.push_back(compiled_route{route_entry{std::string(method), pattern, name, access}, std::regex(pattern)});
  auto wrapped = [this, access, name = std::move(name), handler = std::move(handler)](const http_request& req,
                                                                                        http_response& res) {
    current_trace.route = name;
    if (!admit(req, res, access)) return;
    // Server-Timing: where this request's time went (worker queue, parsing, decoding, model
    // queue and forward pass, the rest of the handler), for clients and `bench serve`.
    auto timings = std::make_shared<request_timings>();
    request_timing_scope timing_scope(timings);
    struct timing_header {
      http_response& res;
      request_timings& timings;
      std::chrono::steady_clock::time_point begin = std::chrono::steady_clock::now();
      ~timing_header() {
        using seconds = std::chrono::duration<double>;
        const auto& t = current_trace;
        if (t.queued != std::chrono::steady_clock::time_point{} && t.picked >= t.queued) {
          timings.add("worker_wait", seconds(t.picked - t.queued).count());
          timings.add("parse", seconds(t.start - t.picked).count());
        }
        timings.add("handler", seconds(std::chrono::steady_clock::now() - begin).count());
        try {
          res.set_header("Server-Timing", timings.header());
        } catch (...) {
          // the answer matters more than its timing
        }
      }
    } header{res, *timings};
    try {
      handler(req, res);
    } catch (const error& e) {
      if (e.code() == errc::internal) {
        std::string id = res.get_header_value("X-Request-Id");
        spdlog::error("route {} failed: {} id={}", name, e.what(), id);
        reply_error(res, errc::internal, fmt::format("internal error; request id {}", id));
      } else {
        reply_error(res, e.code(), e.what());
      }
    } catch (const json::exception& e) {
      reply_error(res, errc::bad_parameter, fmt::format("invalid JSON value: {}", e.what()));
    } catch (const std::bad_alloc&) {
      reply_error(res, errc::too_large, "request needs more memory than is available");
    } catch (const std::exception& e) {
      // Engine faults (libtorch's messages carry backtraces and library addresses) stay in the
      // log; the client gets the request id to quote.
      std::string id = res.get_header_value("X-Request-Id");
      spdlog::error("route {} failed: {} id={}", name, e.what(), id);
      reply_error(res, errc::internal, fmt::format("internal error; request id {}", id));
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

std::vector<http_server::route_entry> http_server::routes() const {
  std::vector<route_entry> out;
  out.reserve(routes_.size());
  for (const auto& r : routes_) out.push_back(r.entry);
  return out;
}

std::vector<std::string> http_server::methods_for(const std::string& path) const {
  std::vector<std::string> out;
  for (const auto& r : routes_) {
    if (std::find(out.begin(), out.end(), r.entry.method) != out.end()) continue;
    if (std::regex_match(path, r.re)) out.push_back(r.entry.method);
  }
  return out;
}

std::optional<route_access> http_server::access_of(const std::string& method, const std::string& path) const {
  for (const auto& r : routes_) {
    if (r.entry.method == method && std::regex_match(path, r.re)) return r.entry.access;
  }
  return std::nullopt;
}

bool http_server::method_not_allowed(const http_request& req, http_response& res) const {
  auto methods = methods_for(req.path);
  if (methods.empty() || std::find(methods.begin(), methods.end(), req.method) != methods.end()) return false;
  std::string allow;
  for (const auto& m : methods) {
    allow += (allow.empty() ? "" : ", ") + m;
    if (m == "GET") allow += ", HEAD";
  }
  if (!options_.cors_origins.empty()) allow += ", OPTIONS";
  res.set_header("Allow", allow);
  reply_json(res, json{{"message", fmt::format("method {} is not allowed on {}; allowed: {}", req.method, req.path, allow)},
                       {"error", to_string(errc::method_not_allowed)}},
             405);
  return true;
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
    res.set_header("Access-Control-Expose-Headers", "Retry-After, WWW-Authenticate, X-Request-Id, Server-Timing");
  }
  bool preflight = req.method == "OPTIONS" && req.has_header("Access-Control-Request-Method");
  if (!preflight) return false;
  current_trace.route = "preflight";
  if (!allowed) {
    reply_json(res, json{{"message", fmt::format("origin '{}' may not call this API", origin)}, {"error", to_string(errc::forbidden)}},
               403);
    return true;
  }
  res.status = 204;
  res.set_header("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS");
  // Whatever request headers the page asks for are allowed (the seed's page sends a custom
  // X-Custom-Header). No credentials mode is used, so this widens nothing a key does not guard:
  // the API key headers are checked on every request whatever the preflight said.
  std::string asked = req.get_header_value("Access-Control-Request-Headers");
  bool token_list = std::all_of(asked.begin(), asked.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '-' || c == '_' || c == ',' || c == ' ';
  });
  std::string allow_headers = "Authorization, X-API-Key, Content-Type, X-Request-Id";
  if (!asked.empty() && token_list && asked.size() <= 1024) allow_headers += ", " + asked;
  res.set_header("Access-Control-Allow-Headers", allow_headers);
  res.set_header("Access-Control-Max-Age", "600");
  if (!origins.allows_any()) res.set_header("Vary", "Origin, Access-Control-Request-Headers");
  return true;
}

bool http_server::admit(const http_request& req, http_response& res, route_access access) {
  if (access == route_access::open) return true;
  const auto& keys = options_.api_keys;
  std::optional<std::size_t> key_index;
  bool presented = false;
  if (!keys.empty()) {
    auto key = presented_key(req.get_header_value("Authorization"), req.get_header_value("X-API-Key"));
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
                      {"error", to_string(errc::rate_limited)}},
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
    reply_json(res, json{{"message", message}, {"error", to_string(errc::unauthorized)}}, 401);
    return false;
  }
  return true;
}

std::optional<refusal> http_server::admit_head(const request_head& head, const std::string& peer_ip) {
  const auto& keys = options_.api_keys;
  if (keys.empty()) return std::nullopt;
  auto access = access_of(head.method, head.path());
  // Unknown routes and static files read no body worth guarding; their handlers answer.
  if (!access || *access == route_access::open) return std::nullopt;
  if (*access == route_access::read && !options_.protect_reads) return std::nullopt;
  auto key = presented_key(head.get("Authorization"), head.get("X-API-Key"));
  std::optional<std::size_t> index = key ? keys.find(*key) : std::nullopt;
  if (index) return std::nullopt;  // rate limiting of valid keys happens in the handler as usual
  if (limiter_) {
    auto decision = limiter_->acquire("addr:" + peer_ip);
    if (!decision.allowed) {
      return refusal{429,
                           fmt::format("rate limit of {} requests per second exceeded; retry in {} s",
                                       options_.rate_limit, decision.retry_after_s),
                           fmt::format("Retry-After: {}\r\n", decision.retry_after_s)};
    }
  }
  return refusal{401,
                       key ? "the API key is not valid"
                           : "this route needs an API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                       key ? "WWW-Authenticate: Bearer realm=\"acg2vec\", error=\"invalid_token\"\r\n"
                           : "WWW-Authenticate: Bearer realm=\"acg2vec\"\r\n"};
}

void http_server::serve_static(const http_request& req, http_response& res) const {
  current_trace.route = "static";
  // A GET on a path the API serves under other methods is a wrong method, not a missing file.
  if (method_not_allowed(req, res)) return;
  if (options_.web_root.empty()) {
    reply_error(res, errc::not_found, fmt::format("no route for GET {}", req.path));
    return;
  }
  // req.path is already percent-decoded, so "%2e%2e" arrives here as "..". A backslash is an
  // ordinary file name byte on POSIX, but it never names a file of the page; refusing it keeps
  // Windows-style "..\\" out of the resolution below altogether.
  std::string rel = req.path.empty() ? std::string() : req.path.substr(1);
  if (rel.find('\\') != std::string::npos || rel.find('\0') != std::string::npos) {
    reply_error(res, errc::not_found, "path leaves the web root");
    return;
  }
  std::filesystem::path relative(rel);
  for (const auto& part : relative) {
    if (part == "..") {
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
  auto inside = [&root](const std::filesystem::path& p) {
    auto [root_end, _] = std::mismatch(root.begin(), root.end(), p.begin(), p.end());
    return root_end == root.end();
  };
  auto target = std::filesystem::weakly_canonical(root / relative, ec);
  // Symlinks are resolved by canonical(): a link that points outside the root is refused too.
  if (!ec && inside(target) && std::filesystem::is_directory(target, ec)) target /= "index.html";
  bool found = !ec && inside(target) && std::filesystem::is_regular_file(target, ec);
  if (!found && rel == "favicon.ico") {
    res.set_content(default_favicon(), "image/x-icon");
    res.set_header("Cache-Control", "max-age=86400");
    return;
  }
  if (!found) {
    // A single-page app routes in the browser: a reload on /app/some/view must get the page,
    // not a 404. Only for navigations (Accept: text/html) and never for files with an extension.
    bool navigation = req.get_header_value("Accept").find("text/html") != std::string::npos;
    bool has_extension = relative.has_extension();
    // API namespaces never fall back to the page: a typo in an API path stays a JSON 404.
    for (std::string_view api : {"/v1/", "/images/", "/models/", "/actuator/", "/tagger/"}) {
      if (req.path.rfind(api, 0) == 0) navigation = false;
    }
    auto index = root / "index.html";
    if (navigation && !has_extension && std::filesystem::is_regular_file(index, ec)) {
      // The nearest index.html up the path serves a page mounted under a sub-path.
      auto dir = std::filesystem::weakly_canonical(root / relative, ec).parent_path();
      while (!ec && inside(dir) && dir != root) {
        if (std::filesystem::is_regular_file(dir / "index.html", ec)) {
          index = dir / "index.html";
          break;
        }
        dir = dir.parent_path();
      }
      target = index;
      found = true;
    }
  }
  if (!found) {
    reply_error(res, errc::not_found, fmt::format("no such file: {}", req.path));
    return;
  }
  std::ifstream in(target, std::ios::binary);
  std::ostringstream buf;
  buf << in.rdbuf();
  res.set_content(buf.str(), std::string(mime_for(target)));
  res.set_header("Cache-Control", "no-cache");
}

namespace {

// A listening TCP socket on host:port (0 = any free port). SO_REUSEADDR keeps quick restarts
// working while a port held by a running server stays an error (no SO_REUSEPORT, which would let
// a second server silently take half of the connections).
int open_listener(const std::string& host, int port, int& bound_port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  std::string service = std::to_string(port);
  if (::getaddrinfo(host.c_str(), service.c_str(), &hints, &found) != 0 || !found) return -1;
  int fd = -1;
  for (auto* ai = found; ai; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    int yes = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && ::listen(fd, SOMAXCONN) == 0) break;
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(found);
  if (fd < 0) return -1;
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  bound_port = ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                                        : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return fd;
}

}  // namespace

connection_limits http_server::loop_limits() const {
  connection_limits lim;
  lim.wire.max_request_line = options_.max_request_line;
  lim.wire.max_header_bytes = options_.max_header_bytes;
  lim.wire.max_headers = options_.max_headers;
  lim.wire.max_body_bytes = options_.max_request_bytes;
  lim.head_timeout = options_.read_timeout;
  lim.request_timeout = std::max(options_.request_timeout, options_.read_timeout);
  lim.idle_timeout = options_.keep_alive_timeout;
  lim.write_timeout = options_.write_timeout;
  lim.max_connections = std::max<std::size_t>(1, options_.max_connections);
  lim.max_connections_per_client = std::max<std::size_t>(1, options_.max_connections_per_client);
  lim.body_budget_bytes = std::max(options_.body_budget_bytes, options_.max_request_bytes);
  lim.workers = std::max<std::size_t>(2, options_.threads);
  lim.worker_nice = options_.worker_nice;
  return lim;
}

void http_server::finish_routes() {
  if (routes_finished_) return;
  routes_finished_ = true;
  // Static files come last so API routes win; any other GET falls through to the web root.
  server_->Get("/.*", [this](const http_request& req, http_response& res) { serve_static(req, res); });
}

void http_server::listen(const std::function<void(int)>& on_bound) {
  finish_routes();
  int port = 0;
  listen_fd_ = open_listener(options_.host, options_.port, port);
  if (listen_fd_ < 0) {
    fail(errc::unavailable, "cannot listen on {}:{} (address in use or not permitted)", options_.host, options_.port);
  }
  loop_ = std::make_unique<connection_loop>(
      loop_limits(), [this](wire_request r) { return process(r); },
      [this](const request_head& head, const std::string& peer) { return admit_head(head, peer); },
      [this] { return next_request_id(); });
  spdlog::info("listening on http://{}:{}", options_.host, port);
  if (on_bound) on_bound(port);
  if (!stopped_.load()) loop_->run(listen_fd_);
  ::close(listen_fd_);
  listen_fd_ = -1;
}

void http_server::stop() {
  stopped_ = true;
  if (loop_) loop_->stop();
}

wire_response http_server::process(const wire_request& request) {
  current_trace.queued = request.queued;
  current_trace.picked = std::chrono::steady_clock::now();
  memory_stream stream(request.raw, request.peer_ip, request.peer_port);
  bool closed = false;
  static_cast<local_server&>(*server_).process_request(stream, false, closed, nullptr);
  return wire_response{stream.output(), closed};
}

std::string http_server::process_raw(std::string_view request) {
  finish_routes();
  // The same framing the connection loop applies, then the same worker path.
  auto lim = loop_limits().wire;
  request_head head;
  refusal why;
  auto st = parse_head(request, lim, head, why);
  if (st == parse_state::incomplete) why = refusal{400, "incomplete request head"};
  if (st != parse_state::complete) return refusal_response(why, next_request_id());
  if (head.has_body()) {
    if (auto r = admit_head(head, "127.0.0.1")) return refusal_response(*r, next_request_id());
  }
  std::string_view rest = request.substr(head.head_bytes);
  std::string body;
  if (head.chunked) {
    chunked_decoder dec(lim);
    dec.feed(rest, body);
    if (dec.state() == parse_state::refused) return refusal_response(dec.why(), next_request_id());
    if (dec.state() != parse_state::complete) {
      return refusal_response({400, "incomplete chunked body"}, next_request_id());
    }
  } else {
    std::size_t len = static_cast<std::size_t>(head.content_length.value_or(0));
    if (rest.size() < len) return refusal_response({400, "incomplete request body"}, next_request_id());
    body = std::string(rest.substr(0, len));
  }
  return process(wire_request{rebuild_request(head, body), "127.0.0.1", 0}).bytes;
}

namespace {

void put_le(std::string& out, std::uint32_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

}  // namespace

// 16x16, 32-bit BMP inside an ICO: a rounded pink square with a lighter centre. Built in code so
// the server always has an icon, even with a custom --web-root that ships none.
std::string default_favicon() {
  constexpr int n = 16;
  std::string pixels;
  for (int y = n - 1; y >= 0; --y) {  // BMP rows run bottom-up
    for (int x = 0; x < n; ++x) {
      bool corner = (x == 0 || x == n - 1) && (y == 0 || y == n - 1);
      bool centre = x >= 5 && x <= 10 && y >= 5 && y <= 10;
      std::uint32_t bgra = corner ? 0x00000000u : centre ? 0xfffde4efu : 0xffd6336cu;
      put_le(pixels, bgra, 4);
    }
  }
  std::string bmp;
  put_le(bmp, 40, 4);      // BITMAPINFOHEADER size
  put_le(bmp, n, 4);       // width
  put_le(bmp, 2 * n, 4);   // height: colour and mask together
  put_le(bmp, 1, 2);       // planes
  put_le(bmp, 32, 2);      // bits per pixel
  put_le(bmp, 0, 4);       // no compression
  put_le(bmp, static_cast<std::uint32_t>(pixels.size()), 4);
  put_le(bmp, 0, 4);
  put_le(bmp, 0, 4);
  put_le(bmp, 0, 4);
  put_le(bmp, 0, 4);
  bmp += pixels;
  bmp.append(static_cast<std::size_t>(n * 4), '\0');  // AND mask: alpha already says it all
  std::string ico;
  put_le(ico, 0, 2);  // reserved
  put_le(ico, 1, 2);  // type: icon
  put_le(ico, 1, 2);  // one image
  ico.push_back(static_cast<char>(n));
  ico.push_back(static_cast<char>(n));
  ico.push_back(0);  // no palette
  ico.push_back(0);
  put_le(ico, 1, 2);   // planes
  put_le(ico, 32, 2);  // bits per pixel
  put_le(ico, static_cast<std::uint32_t>(bmp.size()), 4);
  put_le(ico, 22, 4);  // offset of the image: after this header and one entry
  return ico + bmp;
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
  return parse_json_guarded(req.body, "body");
}

}  // namespace acg2vec::server