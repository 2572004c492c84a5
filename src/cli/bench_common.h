#pragma once
// What the bench instruments share (internal to cli/): timing and percentiles, the machine's load,
// child processes, scratch folders and an `acg2vec serve` child on loopback. Each instrument is
// one file, bench_<name>.cpp, registered by add_bench_command (bench.cpp).

#include <CLI/CLI.hpp>
#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "cli/commands.h"
#include "core/clock.h"

namespace acg2vec::cli {

void add_bench_model(CLI::App& bench);
void add_bench_search(CLI::App& bench);
void add_bench_http(CLI::App& bench);
void add_bench_ingest(CLI::App& bench, global_options& global);
void add_bench_soak(CLI::App& bench);
void add_bench_dedup(CLI::App& bench);
void add_bench_caption(CLI::App& bench);

namespace bench {

using acg2vec::seconds_since;
/// p in [0, 1] of the values (sorted in place).
double percentile(std::vector<double>& v, double p);
/// Rows appear as they are measured, also when stdout is a pipe (long runs, timeouts).
void line_buffered_stdout();
/// The 1- and 5-minute load averages: figures taken while other work runs are marked by them.
std::string load_average();
/// Resident set size of a process in bytes (0 once it is gone).
std::size_t resident_bytes_of(pid_t pid);
/// Resident set size of this process in bytes.
std::size_t resident_bytes();
std::string shell_quote(const std::string& s);
/// "1,8,64" as numbers; `what` names the flag in errors.
std::vector<std::int64_t> parse_int_list(const std::string& text, const char* what);
/// "ort,torch" as names (empty entries and "none" dropped).
std::vector<std::string> parse_name_list(const std::string& text);

struct command_result {
  int status = -1;
  std::string out;
};
/// Runs a shell command, capturing stdout (stderr passes through to ours).
command_result run_command(const std::string& command);

/// The source tree holding bench/ and tools/node_modules: $ACG2VEC_SOURCE_DIR, else the first
/// parent of the executable (build/<preset>/acg2vec) or of the working directory that has them.
std::filesystem::path source_root();

/// A private temporary directory, removed with everything in it.
class scratch_dir {
 public:
  explicit scratch_dir(std::string_view what);
  ~scratch_dir();
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

 private:
  std::filesystem::path path_;
};

/// `acg2vec serve` on 127.0.0.1 with a port of the kernel's choosing, stopped on destruction.
class bench_server {
 public:
  bench_server(const std::filesystem::path& work, const std::filesystem::path& models_dir, int http_threads);
  ~bench_server();
  bench_server(const bench_server&) = delete;
  bench_server& operator=(const bench_server&) = delete;
  [[nodiscard]] int port() const noexcept { return port_; }
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
};

}  // namespace bench
}  // namespace acg2vec::cli
