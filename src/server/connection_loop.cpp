#include "server/connection_loop.h"

#include "core/thread_pool.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/error.h"

namespace acg2vec::server {

namespace {

using clock_type = std::chrono::steady_clock;

constexpr std::uint64_t listen_key = 0;
constexpr std::uint64_t wake_key = 1;
// After a refusal the rest of what the client sends is read and dropped for a moment, so that
// the refusal is not destroyed by a reset (closing a socket with unread input sends RST).
constexpr auto drain_time = std::chrono::seconds(2);
constexpr std::size_t drain_bytes = 8u << 20;

enum class phase { idle, head, body, dispatched, writing, draining };

struct connection {
  int fd = -1;
  std::string peer_ip;
  int peer_port = 0;
  phase ph = phase::idle;
  std::string in;
  std::size_t scan_from = 0;
  request_head head;
  std::optional<chunked_decoder> chunked;
  std::string body;
  std::size_t reserved = 0;
  clock_type::time_point started;
  clock_type::time_point last_progress;
  std::string out;
  std::size_t out_off = 0;
  bool close_after = false;
  std::size_t requests = 0;
  std::size_t drained = 0;
  std::uint32_t events = 0;
};

void peer_of(const sockaddr_storage& ss, std::string& ip, int& port) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
    port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
    port = ntohs(a->sin6_port);
  }
  ip = buf;
}

}  // namespace

class connection_loop::impl {
 public:
  impl(connection_loop& owner, int listen_fd) : owner_(owner), lim_(owner.limits_), listen_fd_(listen_fd) {}

  void run() {
    epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) fail(errc::internal, "epoll_create1 failed: {}", std::strerror(errno));
    ::fcntl(listen_fd_, F_SETFL, ::fcntl(listen_fd_, F_GETFL) | O_NONBLOCK);
    watch(listen_fd_, listen_key, EPOLLIN, EPOLL_CTL_ADD);
    watch(owner_.wake_fd_, wake_key, EPOLLIN, EPOLL_CTL_ADD);
    std::size_t nworkers = std::max<std::size_t>(1, lim_.workers);
    for (std::size_t i = 0; i < nworkers; ++i) {
      workers_.emplace_back([this] {
        lower_thread_priority(lim_.worker_nice);
        work();
      });
    }

    std::array<epoll_event, 256> events{};
    auto last_sweep = clock_type::now();
    while (!owner_.stopping_.load()) {
      int n = ::epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), 100);
      if (n < 0 && errno != EINTR) {
        spdlog::error("epoll_wait failed: {}", std::strerror(errno));
        break;
      }
      for (int i = 0; i < n; ++i) {
        std::uint64_t key = events[i].data.u64;
        if (key == listen_key) {
          accept_all();
        } else if (key == wake_key) {
          take_results();
        } else {
          on_event(key, events[i].events);
        }
      }
      auto now = clock_type::now();
      if (now - last_sweep >= std::chrono::milliseconds(100)) {
        sweep(now);
        last_sweep = now;
      }
    }
    shutdown_workers();
    for (auto& [key, c] : conns_) ::close(c.fd);
    conns_.clear();
    owner_.counters_.open = 0;
    ::close(epoll_fd_);
  }

 private:
  void watch(int fd, std::uint64_t key, std::uint32_t events, int op) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = key;
    ::epoll_ctl(epoll_fd_, op, fd, &ev);
  }

  void set_events(std::uint64_t key, connection& c, std::uint32_t events) {
    if (c.events == events) return;
    c.events = events;
    watch(c.fd, key, events, EPOLL_CTL_MOD);
  }

  // Best-effort answer on a socket that is about to be closed without being watched.
  static void send_and_close(int fd, const std::string& bytes) {
    (void)::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    ::shutdown(fd, SHUT_WR);
    ::close(fd);
  }

  void accept_all() {
    for (;;) {
      sockaddr_storage ss{};
      socklen_t len = sizeof ss;
      int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR) continue;
        if (errno == EMFILE || errno == ENFILE) {
          spdlog::warn("cannot accept a connection: out of file descriptors");
        }
        return;
      }
      connection c;
      c.fd = fd;
      peer_of(ss, c.peer_ip, c.peer_port);
      std::size_t& per_client = per_client_[c.peer_ip];
      if (conns_.size() >= lim_.max_connections || per_client >= lim_.max_connections_per_client) {
        bool total = conns_.size() >= lim_.max_connections;
        if (per_client == 0) per_client_.erase(c.peer_ip);
        owner_.counters_.refused_connections++;
        send_and_close(fd, refusal_response(
                               {503, total ? fmt::format("the server has {} open connections, its limit; retry later",
                                                         lim_.max_connections)
                                           : fmt::format("this client has {} open connections, the limit per client",
                                                         lim_.max_connections_per_client)},
                               owner_.next_id_()));
        continue;
      }
      ++per_client;
      int yes = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
      c.started = clock_type::now();
      c.last_progress = c.started;
      std::uint64_t key = next_key_++;
      c.events = EPOLLIN;
      watch(fd, key, EPOLLIN, EPOLL_CTL_ADD);
      conns_.emplace(key, std::move(c));
      owner_.counters_.accepted++;
      owner_.counters_.open = conns_.size();
    }
  }

  void close_conn(std::uint64_t key) {
    auto it = conns_.find(key);
    if (it == conns_.end()) return;
    connection& c = it->second;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c.fd, nullptr);
    ::close(c.fd);
    budget_used_ -= c.reserved;
    auto pc = per_client_.find(c.peer_ip);
    if (pc != per_client_.end() && --pc->second == 0) per_client_.erase(pc);
    conns_.erase(it);
    owner_.counters_.open = conns_.size();
  }

  void on_event(std::uint64_t key, std::uint32_t events) {
    auto it = conns_.find(key);
    if (it == conns_.end()) return;
    connection& c = it->second;
    if (events & EPOLLOUT) {
      if (!write_some(key, c)) return;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
      if (c.ph == phase::dispatched || c.ph == phase::writing) {
        if (events & (EPOLLHUP | EPOLLERR)) close_conn(key);
        return;
      }
      read_some(key, c);
    }
  }

  void read_some(std::uint64_t key, connection& c) {
    std::array<char, 64 * 1024> buf;
    for (;;) {
      ssize_t n = ::recv(c.fd, buf.data(), buf.size(), 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        close_conn(key);
        return;
      }
      if (n == 0) {
        close_conn(key);  // the client went away; a half-sent request has nobody to answer to
        return;
      }
      if (c.ph == phase::draining) {
        c.drained += static_cast<std::size_t>(n);
        if (c.drained > drain_bytes) {
          close_conn(key);
          return;
        }
        continue;
      }
      c.in.append(buf.data(), static_cast<std::size_t>(n));
      if (!advance(key, c)) return;
      // A request is complete (or refused): stop reading until its answer is written.
      if (c.ph != phase::idle && c.ph != phase::head && c.ph != phase::body) return;
    }
  }

  // Moves the connection's request forward with what is buffered. False when it was closed.
  bool advance(std::uint64_t key, connection& c) {
    auto now = clock_type::now();
    if (c.ph == phase::idle) {
      if (c.in.empty()) return true;
      c.ph = phase::head;
      c.started = now;
      c.scan_from = 0;
    }
    if (c.ph == phase::head) {
      refusal why;
      auto st = parse_head(c.in, lim_.wire, c.head, why, &c.scan_from);
      if (st == parse_state::incomplete) return true;
      if (st == parse_state::refused) return refuse(key, c, why);
      c.requests++;
      c.in.erase(0, c.head.head_bytes);
      c.scan_from = 0;
      c.body.clear();
      c.chunked.reset();
      if (c.head.has_body()) {
        if (owner_.admit_) {
          if (auto r = owner_.admit_(c.head, c.peer_ip)) return refuse(key, c, *r);
        }
        std::size_t want = c.head.chunked ? 0 : static_cast<std::size_t>(*c.head.content_length);
        if (!reserve(c, want)) return refuse_busy(key, c);
        if (c.head.chunked) c.chunked.emplace(lim_.wire);
        if (c.head.expect_continue && c.in.empty()) {
          static constexpr std::string_view go_on = "HTTP/1.1 100 Continue\r\n\r\n";
          (void)::send(c.fd, go_on.data(), go_on.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        }
      }
      c.ph = phase::body;
    }
    if (c.ph == phase::body) {
      if (c.head.chunked) {
        std::size_t used = c.chunked->feed(c.in, c.body);
        c.in.erase(0, used);
        if (c.chunked->state() == parse_state::refused) return refuse(key, c, c.chunked->why());
        if (c.body.size() > c.reserved && !reserve(c, c.body.size() + (1u << 20))) return refuse_busy(key, c);
        if (c.chunked->state() == parse_state::incomplete) return true;
        dispatch(key, c, rebuild_request(c.head, c.body));
      } else {
        std::size_t len = static_cast<std::size_t>(c.head.content_length.value_or(0));
        if (c.in.size() < len) return true;
        std::string raw = rebuild_request(c.head, std::string_view(c.in).substr(0, len));
        c.in.erase(0, len);
        dispatch(key, c, std::move(raw));
      }
      c.body.clear();
      c.body.shrink_to_fit();
    }
    return true;
  }

  bool reserve(connection& c, std::size_t total) {
    if (total <= c.reserved) return true;
    std::size_t extra = total - c.reserved;
    if (budget_used_ + extra > lim_.body_budget_bytes) return false;
    budget_used_ += extra;
    c.reserved = total;
    return true;
  }

  bool refuse_busy(std::uint64_t key, connection& c) {
    refusal why{503, "the server is holding as many request bodies as it may; retry in a moment"};
    why.extra_headers = "Retry-After: 1\r\n";
    return refuse(key, c, why);
  }

  bool refuse(std::uint64_t key, connection& c, const refusal& why) {
    owner_.counters_.refused_requests++;
    std::string id = owner_.next_id_();
    spdlog::info("{} refused before routing: {} {} id={}", c.peer_ip, why.status, why.message, id);
    c.out = refusal_response(why, id);
    c.out_off = 0;
    c.close_after = true;
    c.ph = phase::writing;
    c.last_progress = clock_type::now();
    return write_some(key, c);
  }

  void dispatch(std::uint64_t key, connection& c, std::string raw) {
    c.ph = phase::dispatched;
    set_events(key, c, 0);
    {
      std::lock_guard lock(queue_mutex_);
      jobs_.push_back(job{key, wire_request{std::move(raw), c.peer_ip, c.peer_port, clock_type::now()}});
    }
    queue_cv_.notify_one();
  }

  // Writes what it can. False when the connection was closed.
  bool write_some(std::uint64_t key, connection& c) {
    while (c.out_off < c.out.size()) {
      ssize_t n = ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
      if (n > 0) {
        c.out_off += static_cast<std::size_t>(n);
        c.last_progress = clock_type::now();
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        set_events(key, c, EPOLLOUT);
        return true;
      }
      close_conn(key);
      return false;
    }
    c.out.clear();
    c.out.shrink_to_fit();
    c.out_off = 0;
    budget_used_ -= c.reserved;
    c.reserved = 0;
    if (c.close_after) {
      // Half-close and read what is still coming for a moment, then close.
      ::shutdown(c.fd, SHUT_WR);
      c.ph = phase::draining;
      c.started = clock_type::now();
      c.in.clear();
      c.in.shrink_to_fit();
      set_events(key, c, EPOLLIN);
      return true;
    }
    c.ph = phase::idle;
    c.started = clock_type::now();
    set_events(key, c, EPOLLIN);
    return advance(key, c);  // a pipelined request may already be buffered
  }

  void take_results() {
    std::uint64_t count = 0;
    (void)::read(owner_.wake_fd_, &count, sizeof count);
    std::vector<std::pair<std::uint64_t, wire_response>> done;
    {
      std::lock_guard lock(results_mutex_);
      done.swap(results_);
    }
    for (auto& [key, res] : done) {
      auto it = conns_.find(key);
      if (it == conns_.end()) continue;  // closed while its request ran
      connection& c = it->second;
      c.out = std::move(res.bytes);
      c.out_off = 0;
      c.close_after = res.close || !c.head.keep_alive || c.requests >= lim_.max_requests_per_connection;
      c.ph = phase::writing;
      c.last_progress = clock_type::now();
      write_some(key, c);
    }
  }

  void sweep(clock_type::time_point now) {
    std::vector<std::uint64_t> to_close;
    std::vector<std::pair<std::uint64_t, refusal>> to_refuse;
    for (auto& [key, c] : conns_) {
      switch (c.ph) {
        case phase::idle:
          if (now - c.started > lim_.idle_timeout) to_close.push_back(key);
          break;
        case phase::head:
          if (now - c.started > lim_.head_timeout) {
            to_refuse.emplace_back(key, refusal{408, fmt::format("the request head did not arrive within {} ms",
                                                                       lim_.head_timeout.count())});
          }
          break;
        case phase::body:
          if (now - c.started > lim_.request_timeout) {
            to_refuse.emplace_back(key, refusal{408, fmt::format("the request did not arrive within {} ms",
                                                                       lim_.request_timeout.count())});
          }
          break;
        case phase::writing:
          if (now - c.last_progress > lim_.write_timeout) to_close.push_back(key);
          break;
        case phase::draining:
          if (now - c.started > drain_time) to_close.push_back(key);
          break;
        case phase::dispatched: break;
      }
    }
    for (auto key : to_close) close_conn(key);
    for (auto& [key, why] : to_refuse) {
      auto it = conns_.find(key);
      if (it == conns_.end()) continue;
      owner_.counters_.timed_out++;
      refuse(key, it->second, why);
    }
  }

  void work() {
    for (;;) {
      job j;
      {
        std::unique_lock lock(queue_mutex_);
        queue_cv_.wait(lock, [this] { return workers_stopping_ || !jobs_.empty(); });
        if (jobs_.empty()) return;
        j = std::move(jobs_.front());
        jobs_.pop_front();
      }
      wire_response res;
      try {
        res = owner_.dispatch_(std::move(j.request));
      } catch (const std::exception& e) {
        std::string id = owner_.next_id_();
        spdlog::error("request failed outside its handler: {} id={}", e.what(), id);
        res.bytes = refusal_response({500, fmt::format("internal error; request id {}", id)}, id);
        res.close = true;
      }
      {
        std::lock_guard lock(results_mutex_);
        results_.emplace_back(j.key, std::move(res));
      }
      std::uint64_t one = 1;
      (void)::write(owner_.wake_fd_, &one, sizeof one);
    }
  }

  void shutdown_workers() {
    {
      std::lock_guard lock(queue_mutex_);
      workers_stopping_ = true;
      jobs_.clear();
    }
    queue_cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  struct job {
    std::uint64_t key = 0;
    wire_request request;
  };

  connection_loop& owner_;
  const connection_limits& lim_;
  int listen_fd_;
  int epoll_fd_ = -1;
  std::uint64_t next_key_ = 2;
  std::unordered_map<std::uint64_t, connection> conns_;
  std::unordered_map<std::string, std::size_t> per_client_;
  std::size_t budget_used_ = 0;

  std::vector<std::thread> workers_;
  std::mutex queue_mutex_;
  std::condition_variable queue_cv_;
  std::deque<job> jobs_;
  bool workers_stopping_ = false;
  std::mutex results_mutex_;
  std::vector<std::pair<std::uint64_t, wire_response>> results_;
};

connection_loop::connection_loop(connection_limits limits, dispatch_fn dispatch, admit_fn admit, id_fn next_id)
    : limits_(std::move(limits)), dispatch_(std::move(dispatch)), admit_(std::move(admit)), next_id_(std::move(next_id)) {
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) fail(errc::internal, "eventfd failed: {}", std::strerror(errno));
}

connection_loop::~connection_loop() {
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void connection_loop::run(int listen_fd) {
  if (stopping_.load()) return;
  impl(*this, listen_fd).run();
}

void connection_loop::stop() noexcept {
  stopping_ = true;
  std::uint64_t one = 1;
  (void)::write(wake_fd_, &one, sizeof one);
}

}  // namespace acg2vec::server