#include "cli/bench_common.h"

#include <httplib.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>

#include "core/error.h"

namespace acg2vec::cli::bench {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

/// p in [0, 1] of the values (sorted in place).
double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  auto i = static_cast<std::size_t>(p * static_cast<double>(v.size()));
  return v[std::min(v.size() - 1, i)];
}

/// Rows appear as they are measured, also when stdout is a pipe (long runs, timeouts).
void line_buffered_stdout() { std::setvbuf(stdout, nullptr, _IOLBF, 0); }

/// The 1-minute load average: figures taken while other work runs are marked by it.
std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string one, five;
  in >> one >> five;
  return one.empty() ? "unknown" : one + " " + five;
}

/// Resident set size of a process in bytes (0 once it is gone).
std::size_t resident_bytes_of(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/statm", pid));
  std::size_t pages = 0, resident = 0;
  in >> pages >> resident;
  return resident * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

/// Resident set size of this process in bytes.
std::size_t resident_bytes() { return resident_bytes_of(getpid()); }

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

/// Runs a shell command, capturing stdout (stderr passes through to ours).
command_result run_command(const std::string& command) {
  spdlog::debug("bench: {}", command);
  command_result r;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) fail(errc::internal, "cannot start: {}", command);
  char buf[4096];
  while (auto n = std::fread(buf, 1, sizeof buf, pipe)) r.out.append(buf, n);
  int status = pclose(pipe);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
  return r;
}

/// The source tree holding bench/ and tools/node_modules: $ACG2VEC_SOURCE_DIR, else the first
/// parent of the executable (build/<preset>/acg2vec) or of the working directory that has them.
fs::path source_root() {
  if (const char* env = std::getenv("ACG2VEC_SOURCE_DIR"); env != nullptr && *env != 0) return env;
  for (fs::path start : {fs::read_symlink("/proc/self/exe").parent_path(), fs::current_path()}) {
    for (auto p = start; !p.empty(); p = p.parent_path()) {
      if (fs::exists(p / "bench" / "ort_peer.js")) return p;
      if (p == p.root_path()) break;
    }
  }
  fail(errc::not_found, "cannot find the source tree with bench/ (set ACG2VEC_SOURCE_DIR)");
}

scratch_dir::scratch_dir(std::string_view what)
    : path_(fs::temp_directory_path() / fmt::format("acg2vec-bench-{}-{}", what, getpid())) {
  fs::remove_all(path_);
  fs::create_directories(path_);
}

scratch_dir::~scratch_dir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

bench_server::bench_server(const fs::path& work, const fs::path& models_dir, int http_threads) {
  fs::create_directories(work / "data");
  const auto port_file = work / "port";
  fs::remove(port_file);
  const std::string exe = fs::read_symlink("/proc/self/exe").string();
  std::vector<std::string> args = {exe, "--log-level", "warn", "--data-dir", (work / "data").string(),
                                   "--models-dir", models_dir.string(), "serve", "--host", "127.0.0.1",
                                   "--port", "0", "--port-file", port_file.string()};
  if (http_threads > 0) {
    args.emplace_back("--threads");
    args.push_back(std::to_string(http_threads));
  }
  pid_ = fork();
  if (pid_ < 0) fail(errc::internal, "cannot start the server: fork failed");
  if (pid_ == 0) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(exe.c_str(), argv.data());
    _exit(127);
  }
  auto start = clock_type::now();
  while (true) {
    std::ifstream in(port_file);
    if (in >> port_ && port_ > 0) break;
    if (seconds_since(start) > 60) fail(errc::timeout, "the server did not report its port within 60s");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  httplib::Client probe("127.0.0.1", port_);
  while (true) {
    auto res = probe.Get("/health");
    if (res && res->status == 200) break;
    if (seconds_since(start) > 300) fail(errc::timeout, "the server was not ready within 300s");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

bench_server::~bench_server() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
}

std::vector<std::int64_t> parse_int_list(const std::string& text, const char* what) {
  std::vector<std::int64_t> out;
  std::istringstream in(text);
  for (std::string part; std::getline(in, part, ',');) {
    if (part.empty()) continue;
    try {
      auto v = std::stoll(part);
      if (v <= 0) throw std::out_of_range(part);
      out.push_back(v);
    } catch (const std::exception&) {
      fail(errc::bad_parameter, "{}: '{}' is not a positive integer", what, part);
    }
  }
  if (out.empty()) fail(errc::bad_parameter, "{}: empty list", what);
  return out;
}

std::vector<std::string> parse_name_list(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string part; std::getline(in, part, ',');) {
    if (!part.empty() && part != "none") out.push_back(part);
  }
  return out;
}

}  // namespace acg2vec::cli::bench
