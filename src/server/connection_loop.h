#pragma once
// The server's sockets: one thread waits on every connection with epoll, reads each request
// whole under the wire limits (server/http_wire.h) and a deadline, and only then hands it to a
// worker. A slow or stalled client therefore holds a connection slot, never a worker: with the
// old thread-per-connection model eight clients sending a byte every few seconds held all eight
// workers and /health went unanswered. Responses are written back by the same thread without
// blocking, so a client that does not read cannot hold a worker either.
//
// Thread safety: run() on one thread; stop() from any thread (also from a signal handler's
// helper thread); the callbacks run on worker threads (dispatch) or the loop thread (admit).

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "server/http_wire.h"

namespace acg2vec::server {

struct connection_limits {
  limits wire;
  std::chrono::milliseconds head_timeout{15'000};     ///< first byte to the end of the head
  std::chrono::milliseconds request_timeout{120'000}; ///< first byte to the end of the body
  std::chrono::milliseconds idle_timeout{5'000};      ///< keep-alive wait for the next request
  std::chrono::milliseconds write_timeout{30'000};    ///< without any progress writing a response
  std::size_t max_connections = 1024;                 ///< open connections in all
  std::size_t max_connections_per_client = 128;       ///< open connections per client address
  std::size_t max_requests_per_connection = 10'000;
  std::size_t body_budget_bytes = 512u << 20;         ///< request bodies held at once, all clients
  std::size_t workers = 8;
  int worker_nice = 0;  ///< nice increment of the worker threads (they decode; see server_options)
};

/// What a worker gets: the request rebuilt with a plain Content-Length body, and the peer.
struct wire_request {
  std::string raw;
  std::string peer_ip;
  int peer_port = 0;
  std::chrono::steady_clock::time_point queued{};  ///< when the whole request was read
};

/// What a worker gives back: the raw response bytes and whether to close afterwards.
struct wire_response {
  std::string bytes;
  bool close = false;
};

class connection_loop {
 public:
  /// Runs a complete request on a worker thread.
  using dispatch_fn = std::function<wire_response(wire_request)>;
  /// Called on the loop thread once a head that announces a body is read, before any of the
  /// body: a response here (a 401, say) is sent instead and the body is never read.
  using admit_fn = std::function<std::optional<refusal>(const request_head&, const std::string& peer_ip)>;
  /// A request id for refusals made by the loop itself.
  using id_fn = std::function<std::string()>;

  connection_loop(connection_limits limits, dispatch_fn dispatch, admit_fn admit, id_fn next_id);
  ~connection_loop();
  connection_loop(const connection_loop&) = delete;
  connection_loop& operator=(const connection_loop&) = delete;

  /// @brief Serves listen_fd (bound and listening) until stop(). Closes every connection on exit.
  void run(int listen_fd);
  void stop() noexcept;

  /// Counters for /metrics and tests.
  struct counters {
    std::atomic<std::uint64_t> accepted{0};
    std::atomic<std::uint64_t> refused_connections{0};
    std::atomic<std::uint64_t> refused_requests{0};
    std::atomic<std::uint64_t> timed_out{0};
    std::atomic<std::size_t> open{0};
  };
  [[nodiscard]] const counters& stats() const noexcept { return counters_; }

 private:
  class impl;
  connection_limits limits_;
  dispatch_fn dispatch_;
  admit_fn admit_;
  id_fn next_id_;
  int wake_fd_ = -1;
  std::atomic<bool> stopping_{false};
  counters counters_;
};

}  // namespace acg2vec::server