#pragma once
// The Redis connection layer of redis_store (internal to store/): replies, one connection per node
// with reconnects and timeouts, and the link that routes each command to the node owning its key's
// cluster slot (one node when standalone), following MOVED/ASK redirections.

#include "core/error.h"
#include "store/redis_store.h"

#include <fmt/format.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <array>
#include <charconv>
#include <set>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace acg2vec::store::redis_detail {

using command = std::vector<std::string>;

struct reply_deleter {
  void operator()(redisReply* r) const noexcept {
    if (r != nullptr) freeReplyObject(r);
  }
};
using reply_ptr = std::unique_ptr<redisReply, reply_deleter>;

// Thrown inside an operation when the cluster moved a slot or a WATCHed key changed: the whole
// operation is safe to run again (nothing of it was applied).
struct retry_operation {
  std::string why;
};

inline constexpr int max_attempts = 6;
inline constexpr std::size_t chunk = 512;

inline std::string_view text_of(const redisReply* r) {
  if (r == nullptr || r->str == nullptr) return {};
  return {r->str, r->len};
}

inline bool is_error(const redisReply* r) { return r != nullptr && r->type == REDIS_REPLY_ERROR; }
inline bool is_redirect(const redisReply* r) {
  if (!is_error(r)) return false;
  const auto t = text_of(r);
  return t.starts_with("MOVED ") || t.starts_with("ASK ") || t.starts_with("TRYAGAIN");
}

// Server-side error replies: the ones that mean "not now" become unavailable (HTTP 503).
[[noreturn]] inline void raise_reply(const redisReply* r, std::string_view what, std::string_view node) {
  const std::string t(text_of(r));
  for (const char* transient : {"LOADING", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "READONLY", "OOM",
                                "BUSY", "NOAUTH", "WRONGPASS", "NOPERM"}) {
    if (t.starts_with(transient)) fail(errc::unavailable, "redis at {} refused {}: {}", node, what, t);
  }
  fail(errc::internal, "redis at {} failed {}: {}", node, what, t);
}

inline std::int64_t to_int(const redisReply* r, std::string_view what) {
  if (r == nullptr) fail(errc::internal, "redis: no reply for {}", what);
  if (r->type == REDIS_REPLY_INTEGER) return r->integer;
  if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) {
    std::int64_t v = 0;
    const auto t = text_of(r);
    if (std::from_chars(t.data(), t.data() + t.size(), v).ec == std::errc()) return v;
  }
  if (r->type == REDIS_REPLY_NIL) return 0;
  fail(errc::internal, "redis: unexpected reply type {} for {}", r->type, what);
}

inline std::int64_t parse_int(std::string_view t) {
  std::int64_t v = 0;
  if (std::from_chars(t.data(), t.data() + t.size(), v).ec != std::errc())
    fail(errc::internal, "redis: stored number '{}' is unreadable", t);
  return v;
}

// CRC16-CCITT (XMODEM), the checksum Redis Cluster uses for key slots.
inline std::uint16_t crc16(std::string_view s) {
  std::uint16_t crc = 0;
  for (const unsigned char c : s) {
    crc = static_cast<std::uint16_t>(crc ^ (c << 8));
    for (int i = 0; i < 8; ++i)
      crc = static_cast<std::uint16_t>((crc & 0x8000) != 0 ? (crc << 1) ^ 0x1021 : crc << 1);
  }
  return crc;
}

inline int key_slot(std::string_view key) {
  if (const auto open = key.find('{'); open != std::string_view::npos) {
    const auto close = key.find('}', open + 1);
    if (close != std::string_view::npos && close != open + 1) key = key.substr(open + 1, close - open - 1);
  }
  return crc16(key) & 16383;
}

// hiredis writes with write(): a write to a connection the server closed raises SIGPIPE, which
// would end the process. The signal is blocked in this thread for the duration of the I/O and a
// SIGPIPE raised meanwhile is consumed, leaving the process's signal handling untouched.
class sigpipe_guard {
 public:
  sigpipe_guard() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    sigset_t pending;
    sigemptyset(&pending);
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
  }
  ~sigpipe_guard() {
    if (!was_pending_) {
      sigset_t pending;
      sigemptyset(&pending);
      sigpending(&pending);
      if (sigismember(&pending, SIGPIPE) == 1) {
        const timespec zero{0, 0};
        sigtimedwait(&pipe_, nullptr, &zero);
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  sigpipe_guard(const sigpipe_guard&) = delete;
  sigpipe_guard& operator=(const sigpipe_guard&) = delete;

 private:
  sigset_t pipe_{};
  sigset_t old_{};
  bool was_pending_ = false;
};

// One connection to one node. Not synchronised (the store serialises calls).
class node_connection {
 public:
  node_connection(std::string host, int port, const redis_options& options)
      : host_(std::move(host)), port_(port), options_(options), name_(fmt::format("{}:{}", host_, port_)) {}
  ~node_connection() { drop(); }
  node_connection(const node_connection&) = delete;
  node_connection& operator=(const node_connection&) = delete;

  const std::string& name() const noexcept { return name_; }

  /// Sends all commands in one round trip; error replies are returned, I/O failures throw.
  std::vector<reply_ptr> pipeline(const std::vector<command>& commands) {
    const sigpipe_guard guard;
    ensure_connected();
    for (const auto& c : commands) append(c);
    std::vector<reply_ptr> replies;
    replies.reserve(commands.size());
    for (std::size_t n = 0; n < commands.size(); ++n) {
      void* raw = nullptr;
      if (redisGetReply(ctx_, &raw) != REDIS_OK || raw == nullptr) {
        const std::string why = ctx_->errstr[0] != '\0' ? ctx_->errstr : "no reply";
        drop();
        fail(errc::unavailable, "redis at {}: connection lost: {}", name_, why);
      }
      replies.emplace_back(static_cast<redisReply*>(raw));
    }
    return replies;
  }

  reply_ptr one(const command& c) { return std::move(pipeline({c}).front()); }

 private:
  void append(const command& c) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    argv.reserve(c.size());
    lens.reserve(c.size());
    for (const auto& a : c) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    if (redisAppendCommandArgv(ctx_, static_cast<int>(c.size()), argv.data(), lens.data()) != REDIS_OK) {
      const std::string why = ctx_->errstr;
      drop();
      fail(errc::unavailable, "redis at {}: cannot send a command: {}", name_, why);
    }
  }

  static timeval to_timeval(std::chrono::milliseconds ms) {
    return timeval{static_cast<time_t>(ms.count() / 1000), static_cast<suseconds_t>((ms.count() % 1000) * 1000)};
  }

  void ensure_connected() {
    if (ctx_ != nullptr) return;
    const auto now = std::chrono::steady_clock::now();
    if (now < next_attempt_) {
      fail(errc::unavailable, "redis at {} is unreachable ({}); next attempt in {} ms", name_, last_error_,
           std::chrono::duration_cast<std::chrono::milliseconds>(next_attempt_ - now).count());
    }
    ctx_ = redisConnectWithTimeout(host_.c_str(), port_, to_timeval(options_.connect_timeout));
    try {
      if (ctx_ == nullptr) fail(errc::unavailable, "redis at {}: out of memory while connecting", name_);
      if (ctx_->err != 0) fail(errc::unavailable, "redis at {} is unreachable: {}", name_, ctx_->errstr);
      const auto tv = to_timeval(options_.command_timeout);
      redisSetTimeout(ctx_, tv);
      redisEnableKeepAlive(ctx_);
      std::vector<command> hello;
      if (!options_.password.empty()) {
        hello.push_back(options_.username.empty() ? command{"AUTH", options_.password}
                                                  : command{"AUTH", options_.username, options_.password});
      }
      if (options_.db != 0) hello.push_back({"SELECT", std::to_string(options_.db)});
      if (!hello.empty()) {
        for (const auto& c : hello) append(c);
        for (std::size_t n = 0; n < hello.size(); ++n) {
          void* raw = nullptr;
          if (redisGetReply(ctx_, &raw) != REDIS_OK || raw == nullptr)
            fail(errc::unavailable, "redis at {}: connection lost during the handshake", name_);
          reply_ptr r(static_cast<redisReply*>(raw));
          if (is_error(r.get())) {
            const auto t = std::string(text_of(r.get()));
            fail(errc::unavailable, "redis at {} rejected {}: {}", name_, hello[n][0], t);
          }
        }
      }
    } catch (const error& e) {
      drop();
      last_error_ = e.what();
      backoff_ = std::min(std::max(backoff_ * 2, std::chrono::milliseconds(50)), options_.max_backoff);
      next_attempt_ = std::chrono::steady_clock::now() + backoff_;
      throw;
    }
    if (backoff_.count() > 0) spdlog::info("redis at {}: connected again", name_);
    backoff_ = std::chrono::milliseconds(0);
  }

  void drop() noexcept {
    if (ctx_ != nullptr) redisFree(ctx_);
    ctx_ = nullptr;
  }

  std::string host_;
  int port_;
  const redis_options& options_;
  std::string name_;
  redisContext* ctx_ = nullptr;
  std::chrono::milliseconds backoff_{0};
  std::chrono::steady_clock::time_point next_attempt_{};
  std::string last_error_;
};


// Routes commands to the node that owns a key's slot (one node when not a cluster).
class redis_cluster_link {
 public:
  explicit redis_cluster_link(const redis_options& options) : options_(options) {
    if (options_.nodes.empty()) fail(errc::bad_parameter, "redis: no server address given");
    std::string last;
    for (const auto& [host, port] : options_.nodes) {
      try {
        auto& c = connection(host, port);
        const auto info = c.one({"INFO", "cluster"});
        if (is_error(info.get())) raise_reply(info.get(), "INFO", c.name());
        cluster_ = text_of(info.get()).find("cluster_enabled:1") != std::string_view::npos;
        if (cluster_ && options_.db != 0)
          fail(errc::bad_parameter, "redis at {} is a cluster: database {} cannot be selected (only 0)",
               c.name(), options_.db);
        if (cluster_) refresh_slots();
        primary_ = &c;
        spdlog::info("redis store: connected to {} ({})", c.name(), cluster_ ? "cluster" : "standalone");
        return;
      } catch (const error& e) {
        if (e.code() != errc::unavailable) throw;
        last = e.what();
      }
    }
    fail(errc::unavailable, "{}", last);
  }

  bool cluster() const noexcept { return cluster_; }

  node_connection& node_for(std::string_view key) {
    if (!cluster_) return *primary_;
    if (stale_) refresh_slots();
    const auto& owner = owners_[static_cast<std::size_t>(key_slot(key))];
    if (owner.empty()) fail(errc::unavailable, "redis cluster: no node serves the slot of key '{}'", key);
    return *nodes_.at(owner);
  }

  /// Runs commands that all touch key's slot; redirections restart the operation.
  std::vector<reply_ptr> run(std::string_view key, const std::vector<command>& commands) {
    auto& c = node_for(key);
    std::vector<reply_ptr> replies;
    try {
      replies = c.pipeline(commands);
    } catch (const error&) {
      stale_ = cluster_;  // the node may have been replaced: ask the others next time
      throw;
    }
    check_redirects(replies);
    return replies;
  }

  /// Runs (key, command) pairs, one pipeline per node; replies come back in the given order.
  std::vector<reply_ptr> run_many(const std::vector<std::pair<std::string, command>>& commands) {
    std::vector<reply_ptr> replies(commands.size());
    std::map<node_connection*, std::vector<std::size_t>> groups;
    for (std::size_t n = 0; n < commands.size(); ++n) groups[&node_for(commands[n].first)].push_back(n);
    for (auto& [node, positions] : groups) {
      std::vector<command> batch;
      batch.reserve(positions.size());
      for (const auto p : positions) batch.push_back(commands[p].second);
      std::vector<reply_ptr> got;
      try {
        got = node->pipeline(batch);
      } catch (const error&) {
        stale_ = cluster_;
        throw;
      }
      check_redirects(got);
      for (std::size_t k = 0; k < positions.size(); ++k) replies[positions[k]] = std::move(got[k]);
    }
    return replies;
  }

  /// Every master (for SCAN).
  std::vector<node_connection*> masters() {
    if (stale_) refresh_slots();
    std::vector<node_connection*> out;
    std::set<std::string> seen;
    if (!cluster_) return {primary_};
    for (const auto& o : owners_) {
      if (!o.empty() && seen.insert(o).second) out.push_back(nodes_.at(o).get());
    }
    return out;
  }

  void refresh_slots() {
    std::string last = "no node answered";
    std::vector<node_connection*> candidates;
    for (auto& [name, c] : nodes_) candidates.push_back(c.get());
    for (auto* c : candidates) {
      reply_ptr r;
      try {
        r = c->one({"CLUSTER", "SLOTS"});
      } catch (const error& e) {
        last = e.what();
        continue;
      }
      if (r->type != REDIS_REPLY_ARRAY) {
        last = fmt::format("{}: CLUSTER SLOTS failed: {}", c->name(), text_of(r.get()));
        continue;
      }
      std::array<std::string, 16384> owners;
      for (std::size_t i = 0; i < r->elements; ++i) {
        const auto* range = r->element[i];
        if (range->type != REDIS_REPLY_ARRAY || range->elements < 3) continue;
        const auto first = range->element[0]->integer;
        const auto last_slot = range->element[1]->integer;
        const auto* master = range->element[2];
        if (master->type != REDIS_REPLY_ARRAY || master->elements < 2) continue;
        std::string host(text_of(master->element[0]));
        if (host.empty() || host == "?") host = options_.nodes.front().first;
        const int port = static_cast<int>(master->element[1]->integer);
        const std::string name = connection(host, port).name();
        for (auto s = first; s <= last_slot && s < 16384; ++s) owners[static_cast<std::size_t>(s)] = name;
      }
      owners_ = std::move(owners);
      stale_ = false;
      return;
    }
    fail(errc::unavailable, "redis cluster: cannot read the slot map: {}", last);
  }

 private:
  node_connection& connection(const std::string& host, int port) {
    const auto name = fmt::format("{}:{}", host, port);
    auto it = nodes_.find(name);
    if (it == nodes_.end()) it = nodes_.emplace(name, std::make_unique<node_connection>(host, port, options_)).first;
    return *it->second;
  }

  void check_redirects(const std::vector<reply_ptr>& replies) {
    for (const auto& r : replies) {
      if (is_redirect(r.get())) {
        stale_ = cluster_;
        throw retry_operation{std::string(text_of(r.get()))};
      }
      // Inside MULTI a redirect shows up as a queued error and EXEC aborts.
      if (r && r->type == REDIS_REPLY_ARRAY) {
        for (std::size_t i = 0; i < r->elements; ++i) {
          if (is_redirect(r->element[i])) {
            stale_ = cluster_;
            throw retry_operation{std::string(text_of(r->element[i]))};
          }
        }
      }
    }
  }

  const redis_options& options_;
  bool cluster_ = false;
  bool stale_ = false;
  node_connection* primary_ = nullptr;  // the node that answered first (the only one when standalone)
  std::map<std::string, std::unique_ptr<node_connection>> nodes_;
  std::array<std::string, 16384> owners_;
};

}  // namespace acg2vec::store::redis_detail
