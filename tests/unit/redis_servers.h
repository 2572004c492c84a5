#pragma once
// Real redis-server processes for tests: started on free 127.0.0.1 ports in their own temporary
// directories, killed with the test process (PR_SET_PDEATHSIG) and on destruction.

#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <random>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace acg2vec::testing {

inline bool redis_installed() {
  return std::filesystem::exists("/usr/bin/redis-server") && std::filesystem::exists("/usr/bin/redis-cli");
}

/// Binds port (0: any) on 127.0.0.1 and returns the bound port, or 0 if it is taken.
inline int try_port(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  int bound = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    bound = ntohs(a.sin_port);
  }
  ::close(fd);
  return bound;
}

inline int free_port() { return try_port(0); }

/// A cluster node also listens on port + 10000 (its bus), so both must be free and below 65536:
/// ports are drawn from 20000-29999, below the usual ephemeral range.
inline int free_cluster_port() {
  static std::mt19937 rng(static_cast<unsigned>(::getpid()) ^ static_cast<unsigned>(std::time(nullptr)));
  std::uniform_int_distribution<int> pick(20000, 29999);
  for (int attempt = 0; attempt < 200; ++attempt) {
    const int p = pick(rng);
    if (try_port(p) == p && try_port(p + 10000) == p + 10000) return p;
  }
  throw std::runtime_error("no free port pair for a cluster node");
}

inline pid_t spawn(const std::vector<std::string>& args) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    std::freopen("/dev/null", "w", stdout);
    ::execv(argv[0], argv.data());
    std::_Exit(127);
  }
  return pid;
}

/// True once the server answers PING with PONG (not LOADING).
inline bool answers(int port) {
  timeval tv{0, 200000};
  redisContext* c = redisConnectWithTimeout("127.0.0.1", port, tv);
  bool ok = false;
  if (c != nullptr && c->err == 0) {
    auto* r = static_cast<redisReply*>(redisCommand(c, "PING"));
    ok = r != nullptr && r->type == REDIS_REPLY_STATUS && std::string(r->str) == "PONG";
    if (r != nullptr) freeReplyObject(r);
  }
  if (c != nullptr) redisFree(c);
  return ok;
}

/// One redis-server with AOF (appendfsync always: every acknowledged write is on disk).
class redis_server {
 public:
  /// dir gets a per-process subdirectory: ctest runs test cases as parallel processes.
  redis_server(const std::filesystem::path& dir, bool cluster = false)
      : dir_(dir / ("pid" + std::to_string(::getpid()))), cluster_(cluster) {
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    port_ = cluster_ ? free_cluster_port() : free_port();
    start();
  }
  ~redis_server() { kill(); }
  redis_server(const redis_server&) = delete;
  redis_server& operator=(const redis_server&) = delete;

  int port() const noexcept { return port_; }
  std::string uri() const { return "redis://127.0.0.1:" + std::to_string(port_); }

  void start() {
    std::vector<std::string> args{"/usr/bin/redis-server", "--port", std::to_string(port_), "--bind", "127.0.0.1",
                                  "--dir", dir_.string(), "--save", "", "--appendonly", "yes",
                                  "--appendfsync", "always", "--daemonize", "no", "--logfile", "redis.log"};
    if (cluster_) {
      for (std::string a : {"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                            "--cluster-node-timeout", "2000"})
        args.push_back(a);
    }
    pid_ = spawn(args);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!answers(port_)) {
      if (std::chrono::steady_clock::now() > deadline) throw std::runtime_error("redis-server did not start");
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  /// SIGKILL: no chance to flush anything that was not already written.
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  std::filesystem::path dir_;
  bool cluster_;
  int port_ = 0;
  pid_t pid_ = -1;
};

/// Three masters, no replicas, all 16384 slots assigned by redis-cli --cluster create.
class redis_cluster {
 public:
  explicit redis_cluster(const std::filesystem::path& dir) {
    for (int n = 0; n < 3; ++n)
      nodes_.push_back(std::make_unique<redis_server>(dir / ("node" + std::to_string(n)), true));
    std::vector<std::string> args{"/usr/bin/redis-cli", "--cluster", "create"};
    for (const auto& s : nodes_) args.push_back("127.0.0.1:" + std::to_string(s->port()));
    args.push_back("--cluster-yes");
    const pid_t pid = spawn(args);
    int status = 0;
    // redis-cli waits for the nodes to agree with no limit of its own.
    const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (::waitpid(pid, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > limit) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        throw std::runtime_error("redis-cli --cluster create did not finish in 60 s");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) throw std::runtime_error("redis-cli --cluster create failed");
    // Wait until every node reports the cluster as ok.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    for (const auto& s : nodes_) {
      for (;;) {
        timeval tv{0, 500000};
        redisContext* c = redisConnectWithTimeout("127.0.0.1", s->port(), tv);
        bool ok = false;
        if (c != nullptr && c->err == 0) {
          auto* r = static_cast<redisReply*>(redisCommand(c, "CLUSTER INFO"));
          ok = r != nullptr && r->type == REDIS_REPLY_STRING && std::string(r->str).find("cluster_state:ok") != std::string::npos;
          if (r != nullptr) freeReplyObject(r);
        }
        if (c != nullptr) redisFree(c);
        if (ok) break;
        if (std::chrono::steady_clock::now() > deadline) throw std::runtime_error("cluster did not become ok");
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
  }
  std::string uri() const { return "redis://127.0.0.1:" + std::to_string(nodes_[1]->port()); }
  redis_server& node(int n) { return *nodes_[static_cast<std::size_t>(n)]; }

 private:
  std::vector<std::unique_ptr<redis_server>> nodes_;
};

}  // namespace acg2vec::testing
