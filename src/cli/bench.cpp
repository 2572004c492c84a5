// `acg2vec bench model|search|http|ingest`: measuring instruments. Every instrument is bounded in
// time and size, prints a table with the machine's load average (figures taken on a busy machine
// are not comparable), and measures its peers in the same run so that ratios mean something.
#include <ATen/ATen.h>
#include <httplib.h>
#include <signal.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <deque>
#include <map>
#include <random>
#include <atomic>
#include <latch>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <functional>
#include <memory>
#include <numeric>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "image/decode.h"
#include "image/signature.h"
#include "index/brute_index.h"
#include "index/vector_spaces.h"
#include "index/faiss_index.h"
#include "models/graph_model.h"
#include "models/manifest.h"
#include "models/registry.h"
#include "runtime/blas.h"
#include "runtime/compute.h"
#include "runtime/executor.h"
#include "runtime/onnx_loader.h"
#include "runtime/threads.h"
#include "index/milvus_index.h"
#include "search/service.h"
#include "store/sqlite_store.h"

namespace acg2vec::cli {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;

// ---------------------------------------------------------------- shared helpers

double seconds_since(clock_type::time_point t) { return std::chrono::duration<double>(clock_type::now() - t).count(); }

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

struct command_result {
  int status = -1;
  std::string out;
};

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

/// A private temporary directory, removed with everything in it.
class scratch_dir {
 public:
  explicit scratch_dir(std::string_view what)
      : path_(fs::temp_directory_path() / fmt::format("acg2vec-bench-{}-{}", what, getpid())) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~scratch_dir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;
  [[nodiscard]] const fs::path& path() const noexcept { return path_; }

 private:
  fs::path path_;
};

// ---------------------------------------------------------------- bench model

struct model_options {
  std::string onnx;
  std::string pack;
  std::string batches = "1,8";
  double seconds = 3.0;
  std::string peers = "ort,torch";
  int threads = 0;
  int warmup = 2;
  bool skip_peak = false;
  bool profile = false;
};

struct model_row {
  std::string runtime;
  std::int64_t batch = 0;
  double items_per_s = 0;
  double p50_ms = 0;
  double p95_ms = 0;
  double rel_diff = -1;  // max|peer - acg2vec| / max|acg2vec|; -1 = not compared
  std::string note;
};

/// Achieved GFLOP/s of a tight loop of fn doing flops per call, for about seconds.
double measure_gflops(const std::function<void()>& fn, double flops, double seconds) {
  fn();  // first call allocates and packs
  int runs = 0;
  auto start = clock_type::now();
  double elapsed = 0;
  while (elapsed < seconds || runs < 2) {
    fn();
    ++runs;
    elapsed = seconds_since(start);
  }
  return flops * runs / elapsed / 1e9;
}

struct peak_result {
  double conv_gflops = 0;
  double gemm_gflops = 0;
};

peak_result measure_peak(double seconds) {
  at::InferenceMode guard;
  peak_result r;
  // A ResNet stage-3-like 3x3 convolution and a square gemm: large enough that packing and
  // threading overheads are amortised, small enough for a second of measurement.
  auto x = at::randn({1, 256, 56, 56});
  auto w = at::randn({256, 256, 3, 3});
  const double conv_flops = 2.0 * 256 * 56 * 56 * 256 * 9;
  r.conv_gflops = measure_gflops([&] { (void)at::conv2d(x, w, {}, 1, 1); }, conv_flops, seconds);
  auto a = at::randn({1024, 1024});
  auto b = at::randn({1024, 1024});
  r.gemm_gflops = measure_gflops([&] { (void)at::mm(a, b); }, 2.0 * 1024 * 1024 * 1024, seconds);
  return r;
}

void write_tensor(const fs::path& file, const at::Tensor& t) {
  auto c = t.contiguous().to(at::kFloat);
  std::ofstream out(file, std::ios::binary);
  out.write(reinterpret_cast<const char*>(c.data_ptr<float>()), static_cast<std::streamsize>(c.numel() * sizeof(float)));
  if (!out) fail(errc::internal, "cannot write {}", file.string());
}

at::Tensor read_tensor(const fs::path& file) {
  std::ifstream in(file, std::ios::binary | std::ios::ate);
  if (!in) fail(errc::internal, "peer output {} is missing", file.string());
  auto bytes = static_cast<std::int64_t>(in.tellg());
  auto t = at::empty({bytes / static_cast<std::int64_t>(sizeof(float))});
  in.seekg(0);
  in.read(reinterpret_cast<char*>(t.data_ptr<float>()), bytes);
  return t;
}

/// Runs a peer script; its last stdout line is a JSON object.
json run_peer(const std::string& command) {
  auto r = run_command(command);
  std::string last;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty() && line.front() == '{') last = line;
  }
  if (r.status != 0 || last.empty()) {
    fail(errc::unavailable, "peer failed (exit {}): {}", r.status, command);
  }
  return json::parse(last);
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

// Where a run's time goes, by op type: three timed runs after the measurement, so warm.
void print_op_profile(const runtime::executor& ex, const at::Tensor& input, std::int64_t batch) {
  constexpr int runs = 3;
  runtime::op_profile profile;
  for (int i = 0; i < runs; ++i) (void)ex.run_profiled({input}, profile);
  std::vector<std::pair<std::string, runtime::op_profile::entry>> ops(profile.by_op.begin(), profile.by_op.end());
  std::sort(ops.begin(), ops.end(), [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
  double total = 0;
  for (const auto& [name, e] : ops) total += e.ms;
  fmt::print("profile batch {} (acg2vec, mean of {} runs, {:.2f} ms per run in kernels):\n", batch, runs, total / runs);
  fmt::print("  {:<24} {:>8} {:>10} {:>7}\n", "OP", "CALLS", "MS/RUN", "SHARE");
  for (const auto& [name, e] : ops) {
    fmt::print("  {:<24} {:>8} {:>10.3f} {:>6.1f}%\n", name, e.calls / runs, e.ms / runs, 100.0 * e.ms / std::max(total, 1e-9));
  }
}

void run_bench_model(const model_options& o) {
  line_buffered_stdout();
  if (o.onnx.empty() == o.pack.empty()) fail(errc::bad_parameter, "bench model: give exactly one of --onnx or --pack");
  const int threads = o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  runtime::configure_threads(threads);
  auto batches = parse_int_list(o.batches, "--batch");
  auto peers = parse_name_list(o.peers);
  for (const auto& p : peers) {
    if (p != "ort" && p != "torch") fail(errc::bad_parameter, "--peers: unknown peer '{}' (ort, torch or none)", p);
  }

  // The executor under test and, for peers, the ONNX file it came from.
  fs::path onnx_file;
  std::unique_ptr<runtime::executor> owned;
  std::unique_ptr<graph_model> model;
  std::string label;
  if (!o.onnx.empty()) {
    onnx_file = fs::absolute(o.onnx);
    owned = std::make_unique<runtime::executor>(runtime::load_onnx(onnx_file));
    label = onnx_file.stem().string();
  } else {
    auto m = load_manifest(o.pack);
    if (!m.base.empty()) fail(errc::bad_parameter, "pack '{}' reuses '{}': bench the base pack", m.name, m.base);
    if (m.format == model_format::onnx) onnx_file = m.file;
    model = std::make_unique<graph_model>(m, load_graph(m.format, m.file));
    label = m.name;
  }
  const runtime::executor& ex = owned ? *owned : model->executor();
  if (ex.inputs().size() != 1 || ex.inputs()[0].dtype != at::kFloat || !ex.inputs()[0].rank_known) {
    fail(errc::bad_parameter, "bench model: '{}' must take one float tensor of known rank (it takes {} inputs)", label,
         ex.inputs().size());
  }
  auto shape = ex.inputs()[0].shape;
  for (std::size_t i = 1; i < shape.size(); ++i) {
    if (shape[i] <= 0) fail(errc::bad_parameter, "bench model: input dimension {} of '{}' is not fixed", i, label);
  }
  if (!peers.empty() && onnx_file.empty()) {
    fail(errc::bad_parameter, "bench model: peers need an ONNX file; pack '{}' is not ONNX (use --peers none)", label);
  }
  const fs::path root = source_root();
  scratch_dir tmp("model");

  fmt::print("bench model: {} ({}), {} threads, {:.1f}s per measurement, load average {}\n", label,
             onnx_file.empty() ? o.pack : onnx_file.string(), threads, o.seconds, load_average());
  fmt::print("{}\n", runtime::describe_blas());

  std::vector<model_row> rows;
  double flops_per_item = 0;
  bool peer_failed = false;
  at::manual_seed(0);
  for (auto b : batches) {
    auto in_shape = shape;
    in_shape[0] = b;
    auto input = at::randn(in_shape);
    const auto input_file = tmp.path() / fmt::format("in_b{}.bin", b);
    write_tensor(input_file, input);

    // acg2vec
    at::Tensor ours;
    {
      at::InferenceMode guard;
      ours = ex.run({input}).at(0).contiguous();
      for (int i = 1; i < o.warmup; ++i) (void)ex.run({input});
      std::vector<double> lat;
      auto start = clock_type::now();
      while (seconds_since(start) < o.seconds || lat.size() < 3) {
        auto t = clock_type::now();
        (void)ex.run({input});
        lat.push_back(seconds_since(t) * 1e3);
      }
      double total = seconds_since(start);
      model_row r{"acg2vec", b, static_cast<double>(b) * static_cast<double>(lat.size()) / total,
                  percentile(lat, 0.5), percentile(lat, 0.95), -1, {}};
      rows.push_back(r);
      if (o.profile) print_op_profile(ex, input, b);
    }
    const double scale = std::max(1e-12, ours.abs().max().item<double>());

    std::string shape_arg;
    for (std::size_t i = 0; i < in_shape.size(); ++i) shape_arg += fmt::format("{}{}", i ? "," : "", in_shape[i]);
    for (const auto& p : peers) {
      const auto out_file = tmp.path() / fmt::format("{}_b{}.bin", p, b);
      std::string args = fmt::format(" --onnx {} --input {} --shape {} --output {} --seconds {} --threads {} --warmup {}",
                                     shell_quote(onnx_file.string()), shell_quote(input_file.string()), shape_arg,
                                     shell_quote(out_file.string()), o.seconds, threads, o.warmup);
      std::string command =
          p == "ort" ? fmt::format("NODE_PATH={} node {}{}", shell_quote((root / "tools/node_modules").string()),
                                   shell_quote((root / "bench/ort_peer.js").string()), args)
                     : fmt::format("/usr/bin/python3 {}{}", shell_quote((root / "bench/torch_peer.py").string()), args);
      try {
        auto j = run_peer(command);
        model_row r{j.at("peer").get<std::string>(), b, j.at("items_per_s").get<double>(), j.at("p50_ms").get<double>(),
                    j.at("p95_ms").get<double>(), -1, {}};
        auto theirs = read_tensor(out_file);
        if (theirs.numel() != ours.numel()) {
          r.note = fmt::format("output has {} values, acg2vec {}", theirs.numel(), ours.numel());
        } else {
          r.rel_diff = (theirs - ours.reshape({-1})).abs().max().item<double>() / scale;
        }
        if (j.contains("flops_per_item")) flops_per_item = j["flops_per_item"].get<double>();
        rows.push_back(r);
      } catch (const error& e) {
        peer_failed = true;
        rows.push_back(model_row{p, b, 0, 0, 0, -1, e.what()});
      }
    }
  }

  // The peak runs last so that the model figures are taken first, with nothing warmed for them.
  std::optional<peak_result> peak;
  if (!o.skip_peak) {
    peak = measure_peak(std::min(1.0, o.seconds));
    fmt::print("measured peak (after the models): conv2d 256x56x56 3x3 {:.1f} GFLOP/s, mm 1024^3 {:.1f} GFLOP/s\n",
               peak->conv_gflops, peak->gemm_gflops);
  }
  fmt::print("\n{:<30} {:>5} {:>10} {:>9} {:>9} {:>10} {:>9} {:>10}\n", "RUNTIME", "BATCH", "ITEMS/S", "P50_MS",
             "P95_MS", "REL_DIFF", "GFLOP/S", "%CONV_PEAK");
  for (const auto& r : rows) {
    if (!r.note.empty() && r.items_per_s == 0) {
      fmt::print("{:<30} {:>5} {:>10}  ({})\n", r.runtime, r.batch, "n/a", r.note);
      continue;
    }
    std::string gflops = "-", pct = "-";
    if (flops_per_item > 0) {
      double g = r.items_per_s * flops_per_item / 1e9;
      gflops = fmt::format("{:.1f}", g);
      if (peak) pct = fmt::format("{:.0f}%", 100.0 * g / peak->conv_gflops);
    }
    fmt::print("{:<30} {:>5} {:>10.2f} {:>9.2f} {:>9.2f} {:>10} {:>9} {:>10}{}\n", r.runtime, r.batch, r.items_per_s,
               r.p50_ms, r.p95_ms, r.rel_diff < 0 ? "-" : fmt::format("{:.1e}", r.rel_diff), gflops, pct,
               r.note.empty() ? "" : "  (" + r.note + ")");
  }
  if (flops_per_item > 0) fmt::print("conv+linear GFLOP per item (counted in torch): {:.3f}\n", flops_per_item / 1e9);
  fmt::print("\n");
  for (auto b : batches) {
    const model_row* ours = nullptr;
    for (const auto& r : rows) {
      if (r.batch == b && r.runtime == "acg2vec") ours = &r;
    }
    for (const auto& r : rows) {
      if (r.batch != b || r.runtime == "acg2vec" || r.items_per_s <= 0) continue;
      fmt::print("ratio batch {}: acg2vec / {} = {:.2f}x\n", b, r.runtime, ours->items_per_s / r.items_per_s);
    }
  }
  if (peer_failed) fail(errc::unavailable, "bench model: a requested peer failed (see the table)");
}


// ---------------------------------------------------------------- bench search

struct search_options {
  std::size_t n = 100000;
  int dim = 512;
  std::string kinds = "flat,hnsw,ivf_pq";
  std::size_t queries = 1000;
  bool clustered = false;
  std::size_t k = 10;
  int threads = 0;
  double brute_seconds = 5.0;
  std::size_t nlist = 0;
  std::string nprobe;     ///< comma list swept on one IVF-PQ build ("" = the index's default)
  std::string ef_search;  ///< comma list swept on one HNSW build ("" = the index's default)
  float refine = 32.0f;
  std::size_t pq_m = 0;
  std::string milvus;  ///< milvus://... : one more row through the Milvus REST client ("" = none)
};

/// Unit vectors: isotropic Gaussian directions, or points around n/100 (at most 1000) centres.
at::Tensor make_vectors(std::size_t n, int dim, bool clustered, const at::Tensor& centres) {
  auto noise = at::randn({static_cast<std::int64_t>(n), dim});
  at::Tensor v = noise;
  if (clustered) {
    auto pick = at::randint(centres.size(0), {static_cast<std::int64_t>(n)}, at::kLong);
    v = centres.index_select(0, pick) + noise * 0.5 / std::sqrt(static_cast<double>(dim)) * 2.0;
  }
  return v / v.norm(2, {1}, true);
}

/// Exact top-k ids (as row numbers) of every query by inner product, in chunks.
at::Tensor exact_topk(const at::Tensor& base, const at::Tensor& queries, std::int64_t k) {
  std::vector<at::Tensor> parts;
  for (std::int64_t q = 0; q < queries.size(0); q += 256) {
    auto scores = at::mm(queries.slice(0, q, std::min(queries.size(0), q + 256)), base.t());
    parts.push_back(std::get<1>(scores.topk(k, 1)));
  }
  return at::cat(parts, 0);
}

struct recall_qps {
  double qps_one = 0;
  double qps_all = 0;
  double recall1 = 0;
  double recall10 = 0;
};

/// Queries one thread after another, then all threads at once; recall against truth.
recall_qps measure_index(const index::vector_index& idx, const at::Tensor& queries, const at::Tensor& truth,
                         std::size_t k, int threads) {
  const auto nq = static_cast<std::size_t>(queries.size(0));
  const float* q = queries.data_ptr<float>();
  const auto dim = static_cast<std::size_t>(queries.size(1));
  std::vector<std::vector<index::hit>> results(nq);
  // One query is one thread's work: FAISS opens an OpenMP region per call, and a team of
  // intra-op threads spinning for one query costs several times the search itself.
  const int intra = at::get_num_threads();
  at::set_num_threads(1);
  auto start = clock_type::now();
  for (std::size_t i = 0; i < nq; ++i) results[i] = idx.search({q + i * dim, dim}, k);
  recall_qps r;
  r.qps_one = static_cast<double>(nq) / seconds_since(start);

  std::vector<std::thread> pool;
  start = clock_type::now();
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      at::set_num_threads(1);
      for (std::size_t i = static_cast<std::size_t>(t); i < nq; i += static_cast<std::size_t>(threads)) {
        (void)idx.search({q + i * dim, dim}, k);
      }
    });
  }
  for (auto& th : pool) th.join();
  r.qps_all = static_cast<double>(nq) / seconds_since(start);
  at::set_num_threads(intra);

  auto tr = truth.accessor<std::int64_t, 2>();
  const std::size_t kk = std::min<std::size_t>(k, static_cast<std::size_t>(truth.size(1)));
  double hits1 = 0, hits10 = 0;
  for (std::size_t i = 0; i < nq; ++i) {
    const auto& got = results[i];
    if (!got.empty() && std::stoll(got[0].id) == tr[static_cast<std::int64_t>(i)][0]) hits1 += 1;
    for (std::size_t j = 0; j < kk; ++j) {
      auto want = std::to_string(tr[static_cast<std::int64_t>(i)][static_cast<std::int64_t>(j)]);
      for (std::size_t g = 0; g < std::min(kk, got.size()); ++g) {
        if (got[g].id == want) {
          hits10 += 1;
          break;
        }
      }
    }
  }
  r.recall1 = hits1 / static_cast<double>(nq);
  r.recall10 = hits10 / static_cast<double>(nq * kk);
  return r;
}

void run_bench_search(const search_options& o) {
  line_buffered_stdout();
  if (o.n < o.k || o.queries == 0) fail(errc::bad_parameter, "bench search: need --n >= k and --queries > 0");
  const int threads = o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  runtime::configure_threads(threads);
  std::vector<index::index_kind> kinds;
  for (const auto& name : parse_name_list(o.kinds)) kinds.push_back(index::parse_index_kind(name));

  at::InferenceMode guard;
  at::manual_seed(0);
  at::Tensor centres;
  if (o.clustered) {
    centres = at::randn({static_cast<std::int64_t>(std::clamp<std::size_t>(o.n / 100, 1, 1000)), o.dim});
    centres = centres / centres.norm(2, {1}, true);
  }
  auto base = make_vectors(o.n, o.dim, o.clustered, centres).contiguous();
  auto queries = make_vectors(o.queries, o.dim, o.clustered, centres).contiguous();
  const auto k10 = static_cast<std::int64_t>(std::min<std::size_t>(o.k, o.n));
  auto truth = exact_topk(base, queries, k10).contiguous();
  std::vector<std::string> ids(o.n);
  for (std::size_t i = 0; i < o.n; ++i) ids[i] = std::to_string(i);
  const float* data = base.data_ptr<float>();

  fmt::print("bench search: {} {} vectors x {}-d (inner product), {} queries, k={}, {} threads, load average {}\n",
             o.n, o.clustered ? "clustered" : "random", o.dim, o.queries, o.k, threads, load_average());
  fmt::print("{}\n", runtime::describe_blas());
  fmt::print("\n{:<13} {:>9} {:>9} {:>10} {:>12} {:>9} {:>10} {:>8}\n", "INDEX", "BUILD_S", "RSS_MB", "QPS_1T",
             fmt::format("QPS_{}T", threads), "QPS/CORE", "RECALL@1", fmt::format("RECALL@{}", o.k));

  // Brute force: the reference scan, single thread, on as many queries as fit in brute_seconds.
  double brute_qps = 0;
  {
    auto before = resident_bytes();
    auto start = clock_type::now();
    index::brute_index brute(o.dim, index::metric::inner_product);
    for (std::size_t i = 0; i < o.n; ++i) {
      brute.add(ids[i], {data + i * static_cast<std::size_t>(o.dim), static_cast<std::size_t>(o.dim)});
    }
    double build = seconds_since(start);
    double rss = static_cast<double>(resident_bytes() - std::min(before, resident_bytes())) / 1e6;
    const float* q = queries.data_ptr<float>();
    std::size_t done = 0;
    start = clock_type::now();
    while (done < o.queries && (done < 3 || seconds_since(start) < o.brute_seconds)) {
      (void)brute.search({q + done * static_cast<std::size_t>(o.dim), static_cast<std::size_t>(o.dim)}, o.k);
      ++done;
    }
    brute_qps = static_cast<double>(done) / seconds_since(start);
    fmt::print("{:<13} {:>9.2f} {:>9.0f} {:>10.1f} {:>12} {:>9.1f} {:>10} {:>8}  ({} queries)\n", "brute", build, rss,
               brute_qps, "-", brute_qps, "1.000", "1.000", done);
  }

  for (auto kind : kinds) {
    index::faiss_options fo;
    fo.kind = kind;
    fo.ivf_min_train = 1;  // build the requested structure whatever the size
    fo.ivf_nlist = o.nlist;
    fo.ivf_refine_factor = o.refine;
    fo.ivf_pq_m = o.pq_m;
    auto before = resident_bytes();
    auto start = clock_type::now();
    auto idx = std::make_unique<index::faiss_index>(o.dim, index::metric::inner_product, fo);
    idx->assign(ids, std::vector<float>(data, data + o.n * static_cast<std::size_t>(o.dim)));
    double build = seconds_since(start);
    double rss = static_cast<double>(resident_bytes() - std::min(before, resident_bytes())) / 1e6;
    // One build, then each requested search effort (nprobe or efSearch) on it.
    std::vector<std::int64_t> efforts{0};
    if (kind == index::index_kind::ivf_pq && !o.nprobe.empty()) efforts = parse_int_list(o.nprobe, "--nprobe");
    if (kind == index::index_kind::hnsw && !o.ef_search.empty()) efforts = parse_int_list(o.ef_search, "--ef-search");
    for (auto effort : efforts) {
      std::string name(index::to_string(idx->current_kind()));
      if (effort > 0) {
        const bool ivf = kind == index::index_kind::ivf_pq;
        idx->set_search_options(ivf ? fo.hnsw_ef_search : static_cast<int>(effort), ivf ? static_cast<int>(effort) : 0,
                                fo.ivf_refine_factor);
        name += fmt::format("/{}{}", ivf ? "np" : "ef", effort);
      }
      auto r = measure_index(*idx, queries, truth, o.k, threads);
      std::string note = fmt::format("{:.1f}x brute, 1 thread", r.qps_one / brute_qps);
      if (idx->current_kind() != kind) {
        note += fmt::format("; {} requested, too few vectors to train it", index::to_string(kind));
      }
      fmt::print("{:<13} {:>9.2f} {:>9.0f} {:>10.1f} {:>12.1f} {:>9.1f} {:>10.3f} {:>8.3f}  ({})\n", name, build, rss,
                 r.qps_one, r.qps_all, r.qps_all / threads, r.recall1, r.recall10, note);
    }
  }

  if (!o.milvus.empty()) {
    // The same vectors through the Milvus REST client: upserts in batches, then the same queries.
    // Against tests/milvus_double this measures the client's protocol overhead (JSON, HTTP, one
    // request per search) on a brute-force Python server; it says nothing about Milvus's speed.
    auto mo = index::parse_milvus_uri(o.milvus);
    mo.collection_prefix = "acg2vec_bench_";
    index::milvus_index(mo, "search", o.dim, index::metric::inner_product).drop();
    auto start = clock_type::now();
    index::milvus_index idx(mo, "search", o.dim, index::metric::inner_product);
    idx.add_batch(ids, std::span<const float>(data, o.n * static_cast<std::size_t>(o.dim)));
    const double build = seconds_since(start);
    auto r = measure_index(idx, queries, truth, o.k, threads);
    fmt::print("{:<13} {:>9.2f} {:>9} {:>10.1f} {:>12.1f} {:>9.1f} {:>10.3f} {:>8.3f}  ({} {}:{}; protocol overhead, "
               "not a Milvus measurement)\n",
               "milvus", build, "-", r.qps_one, r.qps_all, r.qps_all / threads, r.recall1, r.recall10,
               "REST v2 at", mo.host, mo.port);
    idx.drop();
  }
}

// ---------------------------------------------------------------- bench http

struct http_options {
  std::string url;
  std::string concurrency = "1,8,64";
  double seconds = 5.0;
  std::string route = "/health";
  std::string pack;
  std::string image;
  std::string max_batches = "1,8";
  int server_threads = 0;
};

/// `acg2vec serve` on 127.0.0.1 with a port of the kernel's choosing, stopped on destruction.
class bench_server {
 public:
  bench_server(const fs::path& work, const fs::path& models_dir, int http_threads) {
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
  ~bench_server() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status = 0;
      waitpid(pid_, &status, 0);
    }
  }
  bench_server(const bench_server&) = delete;
  bench_server& operator=(const bench_server&) = delete;
  [[nodiscard]] int port() const noexcept { return port_; }
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
};

struct load_result {
  std::size_t ok = 0;
  std::size_t errors = 0;
  std::map<std::string, std::size_t> error_kinds;  ///< "HTTP 503", "Read", ...
  double seconds = 0;
  std::vector<double> latency_ms;
};

/// clients keep-alive connections, each sending one request after the other for seconds.
load_result generate_load(const std::string& host, int port, int clients, double seconds, const std::string& route,
                          const std::string* image) {
  std::vector<load_result> per(static_cast<std::size_t>(clients));
  std::latch ready(clients + 1);
  std::atomic<bool> go{false};
  clock_type::time_point deadline;
  std::vector<std::thread> pool;
  auto send = [&](httplib::Client& c) {
    if (image != nullptr) {
      httplib::MultipartFormDataItems items = {{"image", *image, "image.png", "image/png"}};
      return c.Post(route.c_str(), items);
    }
    return c.Get(route.c_str());
  };
  {
    httplib::Client warm(host, port);
    (void)send(warm);  // the server's first request (model warm-up) stays out of the figures
  }
  for (int t = 0; t < clients; ++t) {
    pool.emplace_back([&, t] {
      auto& mine = per[static_cast<std::size_t>(t)];
      httplib::Client c(host, port);
      c.set_keep_alive(true);
      c.set_tcp_nodelay(true);
      c.set_read_timeout(60, 0);
      // No warm-up request here: an idle kept-alive connection holds one server worker until
      // its keep-alive timeout, so many waiting clients would stall the start by seconds.
      ready.count_down();
      while (!go.load()) std::this_thread::yield();
      while (clock_type::now() < deadline) {
        auto t0 = clock_type::now();
        auto res = send(c);
        double ms = seconds_since(t0) * 1e3;
        if (res && res->status == 200) {
          ++mine.ok;
          mine.latency_ms.push_back(ms);
        } else {
          ++mine.errors;
          ++mine.error_kinds[res ? fmt::format("HTTP {}", res->status) : httplib::to_string(res.error())];
        }
      }
    });
  }
  ready.arrive_and_wait();
  auto start = clock_type::now();
  deadline = start + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(seconds));
  go.store(true);
  for (auto& th : pool) th.join();
  load_result total;
  total.seconds = seconds_since(start);
  for (auto& r : per) {
    total.ok += r.ok;
    total.errors += r.errors;
    for (const auto& [what, n] : r.error_kinds) total.error_kinds[what] += n;
    total.latency_ms.insert(total.latency_ms.end(), r.latency_ms.begin(), r.latency_ms.end());
  }
  return total;
}

/// A copy of a pack (files linked, manifest rewritten) with another max_batch.
fs::path pack_with_max_batch(const fs::path& pack, const fs::path& models_root, int max_batch) {
  auto m = load_manifest(pack);
  auto dir = models_root / m.name;
  fs::create_directories(dir);
  for (const auto& entry : fs::directory_iterator(fs::canonical(pack))) {
    if (entry.path().filename() == "manifest.json") continue;
    fs::create_symlink(entry.path(), dir / entry.path().filename());
  }
  auto raw = m.raw;
  raw["max_batch"] = max_batch;
  std::ofstream(dir / "manifest.json") << raw.dump(1);
  return models_root;
}

void run_bench_http(const http_options& o) {
  line_buffered_stdout();
  auto levels = parse_int_list(o.concurrency, "--concurrency");
  for (auto c : levels) {
    if (c > 256) fail(errc::bad_parameter, "--concurrency: {} clients is more than this load generator allows (256)", c);
  }
  struct row {
    std::string scenario;
    std::int64_t clients;
    load_result r;
  };
  std::vector<row> rows;
  fmt::print("bench http: {:.1f}s per level, load average {}\n", o.seconds, load_average());
  fmt::print("{}\n", runtime::describe_blas());
  auto run_levels = [&](const std::string& scenario, const std::string& host, int port, const std::string& route,
                        const std::string* image) {
    for (auto c : levels) {
      rows.push_back({scenario, c, generate_load(host, port, static_cast<int>(c), o.seconds, route, image)});
    }
  };

  scratch_dir tmp("http");
  if (!o.url.empty()) {
    // Only a server on this machine's loopback: this is a measuring tool, not a load tester for others.
    auto rest = o.url.substr(o.url.find("://") == std::string::npos ? 0 : o.url.find("://") + 3);
    auto colon = rest.find(':');
    auto host = rest.substr(0, colon);
    if (host != "127.0.0.1" && host != "localhost") fail(errc::bad_parameter, "--url must point at 127.0.0.1 or localhost");
    int port = colon == std::string::npos ? 80 : std::stoi(rest.substr(colon + 1));
    run_levels("GET " + o.route, host, port, o.route, nullptr);
  } else {
    const auto empty_models = tmp.path() / "no-models";
    fs::create_directories(empty_models);
    {
      bench_server server(tmp.path() / "plain", empty_models, o.server_threads);
      run_levels("GET " + o.route, "127.0.0.1", server.port(), o.route, nullptr);
    }
    if (!o.pack.empty()) {
      fs::path image_file = o.image;
      if (image_file.empty()) {
        const auto d = source_root() / "tests" / "data" / "nsfw";
        for (const auto& e : fs::directory_iterator(d)) {
          if (e.path().extension() == ".png" && (image_file.empty() || e.path() < image_file)) image_file = e.path();
        }
      }
      std::ifstream in(image_file, std::ios::binary);
      if (!in) fail(errc::not_found, "cannot read image {}", image_file.string());
      const std::string image((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      for (auto mb : parse_int_list(o.max_batches, "--max-batch")) {
        const auto work = tmp.path() / fmt::format("batch{}", mb);
        auto models = pack_with_max_batch(o.pack, work / "models", static_cast<int>(mb));
        bench_server server(work, models, o.server_threads);
        run_levels(fmt::format("POST /v1/classify max_batch={}", mb), "127.0.0.1", server.port(), "/v1/classify",
                   &image);
      }
    }
  }

  fmt::print("\n{:<36} {:>7} {:>8} {:>10} {:>9} {:>9} {:>9} {:>7}\n", "SCENARIO", "CLIENTS", "REQS", "REQ/S",
             "P50_MS", "P95_MS", "P99_MS", "ERRORS");
  for (auto& r : rows) {
    fmt::print("{:<36} {:>7} {:>8} {:>10.1f} {:>9.3f} {:>9.3f} {:>9.3f} {:>7}\n", r.scenario, r.clients, r.r.ok,
               static_cast<double>(r.r.ok) / r.r.seconds, percentile(r.r.latency_ms, 0.5),
               percentile(r.r.latency_ms, 0.95), percentile(r.r.latency_ms, 0.99), r.r.errors);
    for (const auto& [what, n] : r.r.error_kinds) fmt::print("    errors: {} x {}\n", n, what);
  }
  // Batching gain: each batched scenario against max_batch=1 at the same client count.
  for (const auto& b : rows) {
    if (b.scenario.find("max_batch=") == std::string::npos || b.scenario.ends_with("max_batch=1")) continue;
    for (const auto& u : rows) {
      if (u.clients == b.clients && u.scenario.ends_with("max_batch=1") && u.r.ok > 0) {
        fmt::print("batching gain at {} clients ({} vs max_batch=1): {:.2f}x\n", b.clients,
                   b.scenario.substr(b.scenario.rfind(' ') + 1),
                   (static_cast<double>(b.r.ok) / b.r.seconds) / (static_cast<double>(u.r.ok) / u.r.seconds));
      }
    }
  }
}

// ---------------------------------------------------------------- bench ingest

struct ingest_options {
  std::string dir;
  std::size_t max_files = 100;
  std::size_t workers = 8;  // as `acg2vec ingest`
};

std::string read_file_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) fail(errc::not_found, "cannot read {}", p.string());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// The seconds of one end-to-end ingest of files into a fresh collection with workers threads.
double ingest_once(const global_options& global, const fs::path& data_dir, const std::vector<fs::path>& files,
                   const std::vector<std::string>& bytes, std::size_t workers) {
  fs::create_directories(data_dir);
  store::sqlite_store store(data_dir / "acg2vec.db");
  index::vector_spaces spaces(data_dir, store);
  model_registry models(global.models_dir);
  models.load_all();
  search_service service(data_dir, store, spaces, models);
  service.define_spaces();
  std::atomic<std::size_t> next{0};
  auto start = clock_type::now();
  std::vector<std::thread> pool;
  for (std::size_t w = 0; w < workers; ++w) {
    pool.emplace_back([&] {
      for (std::size_t i = next++; i < files.size(); i = next++) {
        item_input in;
        in.id = fmt::format("{}-{}", i, files[i].filename().string());
        try {
          (void)service.add_image(bytes[i], std::move(in), write_mode::skip_existing);
        } catch (const error& e) {
          spdlog::warn("{}: {}", files[i].string(), e.what());
        }
      }
    });
  }
  for (auto& t : pool) t.join();
  service.save_indexes();
  return seconds_since(start);
}

void run_bench_ingest(const global_options& global, const ingest_options& o) {
  line_buffered_stdout();
  std::vector<fs::path> files;
  for (auto it = fs::recursive_directory_iterator(o.dir, fs::directory_options::skip_permission_denied);
       it != fs::recursive_directory_iterator(); ++it) {
    if (it->is_regular_file()) files.push_back(it->path());
  }
  std::sort(files.begin(), files.end());
  std::vector<std::string> bytes;
  std::vector<fs::path> images;
  for (const auto& f : files) {
    if (images.size() >= o.max_files) break;
    auto b = read_file_bytes(f);
    if (image::sniff_image_format(b).empty()) continue;
    images.push_back(f);
    bytes.push_back(std::move(b));
  }
  if (images.empty()) fail(errc::not_found, "bench ingest: no images under {}", o.dir);
  runtime::configure_threads(0);

  model_registry models(global.models_dir);
  models.load_all();
  std::vector<std::shared_ptr<const model_entry>> active;
  std::size_t shared_packs = 0;
  for (const auto& e : models.entries()) {
    if (e->state != model_state::ready || !e->takes_images()) continue;
    // A pack cut from another's network gets its value from that pack's pass, in the service
    // and here alike: counting a second pass would flatter the ingest ratio.
    if (!e->shared_pass_of.empty()) {
      ++shared_packs;
      continue;
    }
    active.push_back(e);
  }
  fmt::print("bench ingest: {} images from {}, {} image models ({} more computed in their passes) in {}, load average {}\n",
             images.size(), o.dir, active.size(), shared_packs, global.models_dir.string(), load_average());
  fmt::print("{}\n", runtime::describe_blas());

  // 1. Where the time goes, one image at a time (the order the service analyses an image in).
  double t_decode = 0, t_signature = 0, t_pre = 0, t_infer = 0;
  std::vector<std::vector<at::Tensor>> prepared(active.size());
  for (const auto& b : bytes) {
    auto t = clock_type::now();
    auto img = image::decode_image(b);
    t_decode += seconds_since(t);
    t = clock_type::now();
    (void)image::perceptual_signature(img);
    t_signature += seconds_since(t);
    for (std::size_t m = 0; m < active.size(); ++m) {
      const auto& e = active[m];
      if (!e->graph) {  // CLIP image towers preprocess internally: counted as inference
        t = clock_type::now();
        (void)e->run_image(img);
        t_infer += seconds_since(t);
        continue;
      }
      t = clock_type::now();
      auto x = e->graph->image_tensor(img);
      t_pre += seconds_since(t);
      t = clock_type::now();
      (void)e->graph->run_batch(x);
      t_infer += seconds_since(t);
      prepared[m].push_back(x);
    }
  }
  // 2. Model-only throughput: the same preprocessed inputs in batches of each pack's max_batch.
  double t_models = 0;
  for (std::size_t m = 0; m < active.size(); ++m) {
    if (!active[m]->graph) continue;
    const auto chunk = static_cast<std::size_t>(active[m]->manifest.max_batch);
    auto t = clock_type::now();
    for (std::size_t i = 0; i < prepared[m].size(); i += chunk) {
      std::vector<at::Tensor> part(prepared[m].begin() + static_cast<std::ptrdiff_t>(i),
                                   prepared[m].begin() + static_cast<std::ptrdiff_t>(std::min(prepared[m].size(), i + chunk)));
      (void)active[m]->graph->run_batch(at::cat(part, 0));
    }
    t_models += seconds_since(t);
  }
  // 3. End to end through the service into a fresh store: sequentially (for the split), then
  // with the workers an ingest would use.
  scratch_dir tmp("ingest");
  const double t_seq = ingest_once(global, tmp.path() / "seq", images, bytes, 1);
  // A fresh process generates oneDNN kernels for each batch size the first time it meets it; a
  // real ingest of thousands of images pays that once, so one untimed pass comes first.
  (void)ingest_once(global, tmp.path() / "warm", images, bytes, o.workers);
  const double t_par = ingest_once(global, tmp.path() / "par", images, bytes, o.workers);

  const double n = static_cast<double>(images.size());
  const double t_rest = std::max(0.0, t_seq - t_decode - t_signature - t_pre - t_infer);
  fmt::print("\n{:<44} {:>10} {:>9} {:>7}\n", "PHASE (one image at a time)", "MS/IMAGE", "IMAGES/S", "SHARE");
  auto line = [&](const char* name, double secs) {
    fmt::print("{:<44} {:>10.2f} {:>9.1f} {:>6.0f}%\n", name, 1e3 * secs / n, secs > 0 ? n / secs : 0.0,
               100.0 * secs / t_seq);
  };
  line("decode", t_decode);
  line("perceptual signature", t_signature);
  line("preprocess (resize, normalise)", t_pre);
  line("inference (batch 1, every image model)", t_infer);
  line("store, index, hashing (remainder)", t_rest);
  line("end to end, 1 worker", t_seq);
  fmt::print("\n{:<44} {:>10} {:>9}\n", "THROUGHPUT", "SECONDS", "IMAGES/S");
  fmt::print("{:<44} {:>10.2f} {:>9.1f}\n", "model-only (preprocessed, batched)", t_models, t_models > 0 ? n / t_models : 0.0);
  fmt::print("{:<44} {:>10.2f} {:>9.1f}\n", fmt::format("ingest end to end, {} workers", o.workers), t_par, n / t_par);
  if (t_models > 0) {
    fmt::print("\ningest / model-only throughput: {:.0f}%\n", 100.0 * t_models / t_par);
  }
}


// ---------------------------------------------------------------- bench soak

struct soak_options {
  std::string pack;
  std::string images;
  int clients = 64;
  double seconds = 600;
  double warmup = 0.2;
  int server_threads = 0;
  std::string report;
};

/// Least-squares slope of y over x.
double slope(const std::vector<std::pair<double, double>>& xy) {
  if (xy.size() < 2) return 0;
  double mx = 0, my = 0;
  for (auto [x, y] : xy) {
    mx += x;
    my += y;
  }
  mx /= static_cast<double>(xy.size());
  my /= static_cast<double>(xy.size());
  double num = 0, den = 0;
  for (auto [x, y] : xy) {
    num += (x - mx) * (y - my);
    den += (x - mx) * (x - mx);
  }
  return den > 0 ? num / den : 0;
}

/// Mixed load for a fixed time: classify (tag), embed, search and insert (each insert beyond a
/// client's fourth deletes its oldest item, so the collection stays the same size and any RSS
/// growth after warm-up is a leak, not data). Fails when any request got a 5xx or no answer.
void run_bench_soak(const soak_options& o) {
  line_buffered_stdout();
  const fs::path pack = fs::canonical(o.pack);
  const std::string model = load_manifest(pack).name;
  const std::string space = model + "-embedding";
  std::vector<std::string> images;
  const fs::path image_dir = o.images.empty() ? source_root() / "tests" / "data" / "nsfw" : fs::path(o.images);
  for (const auto& e : fs::directory_iterator(image_dir)) {
    auto ext = e.path().extension().string();
    if (ext == ".png" || ext == ".jpg" || ext == ".jpeg") images.push_back(read_file_bytes(e.path()));
  }
  if (images.empty()) fail(errc::not_found, "no .png/.jpg images in {}", image_dir.string());

  scratch_dir tmp("soak");
  const auto models = tmp.path() / "models";
  fs::create_directories(models);
  fs::create_symlink(pack, models / pack.filename());
  bench_server server(tmp.path() / "work", models, o.server_threads);
  const int port = server.port();
  fmt::print("bench soak: {} clients for {:.0f}s against {} (load average {})\n", o.clients, o.seconds, model,
             load_average());

  // A collection to search in.
  std::vector<std::string> seed_ids;
  {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(120, 0);
    for (std::size_t i = 0; i < images.size(); ++i) {
      auto id = fmt::format("seed-{}", i);
      httplib::MultipartFormDataItems items = {{"file", images[i], "image.png", "image/png"}, {"id", id, "", ""}};
      auto res = c.Post("/v1/items", items);
      if (!res || res->status != 201) fail(errc::internal, "soak: could not add the seed items");
      seed_ids.push_back(id);
    }
  }

  enum op { classify, embed, search, insert, remove, op_count };
  static constexpr const char* op_names[op_count] = {"classify", "embed/image", "search", "insert", "delete"};
  struct client_stats {
    std::array<std::vector<double>, op_count> latency_ms;
    std::map<int, std::size_t> statuses;
    std::size_t no_answer = 0;
    std::map<std::string, std::size_t> failures;  ///< transport errors by kind
  };
  std::vector<client_stats> per(static_cast<std::size_t>(o.clients));
  std::atomic<bool> stop{false};
  const auto start = clock_type::now();
  const double warmup_s = o.seconds * o.warmup;

  auto client = [&](int t) {
    auto& mine = per[static_cast<std::size_t>(t)];
    std::mt19937 rng(static_cast<unsigned>(t) * 7919U + 1U);
    std::deque<std::string> own;
    std::size_t counter = 0;
    httplib::Client c("127.0.0.1", port);
    c.set_keep_alive(true);
    c.set_tcp_nodelay(true);
    c.set_read_timeout(120, 0);
    while (!stop.load()) {
      const auto& image = images[rng() % images.size()];
      const auto& seed = seed_ids[rng() % seed_ids.size()];
      auto pick = rng() % 100;
      op kind = pick < 30 ? classify : pick < 55 ? embed : pick < 85 ? search : insert;
      if (kind == insert && own.size() >= 4) kind = remove;
      auto t0 = clock_type::now();
      httplib::Result res{nullptr, httplib::Error::Unknown};
      std::string new_id;
      switch (kind) {
        case classify:
          res = c.Post("/v1/classify", httplib::MultipartFormDataItems{{"image", image, "image.png", "image/png"},
                                                                       {"model", model, "", ""}});
          break;
        case embed:
          res = c.Post("/v1/embed/image", httplib::MultipartFormDataItems{{"image", image, "image.png", "image/png"},
                                                                          {"model", space, "", ""}});
          break;
        case search:
          if (rng() % 2 == 0) {
            res = c.Post("/v1/search", json{{"id", seed}, {"k", 10}, {"space", space}}.dump(), "application/json");
          } else {
            res = c.Post("/v1/search", httplib::MultipartFormDataItems{{"image", image, "image.png", "image/png"},
                                                                       {"space", space, "", ""}, {"k", "10", "", ""}});
          }
          break;
        case insert:
          new_id = fmt::format("soak-{}-{}", t, counter++);
          res = c.Post("/v1/items", httplib::MultipartFormDataItems{{"file", image, "image.png", "image/png"},
                                                                    {"id", new_id, "", ""}});
          break;
        case remove:
          res = c.Delete(("/v1/items/" + own.front()).c_str());
          break;
        case op_count:
          break;
      }
      const double ms = seconds_since(t0) * 1e3;
      if (!res) {
        ++mine.no_answer;
        ++mine.failures[fmt::format("{} {}", op_names[kind], httplib::to_string(res.error()))];
        continue;
      }
      ++mine.statuses[res->status];
      if (kind == insert && res->status == 201) own.push_back(new_id);
      if (kind == remove && res->status == 200) own.pop_front();
      if (seconds_since(start) >= warmup_s) mine.latency_ms[kind].push_back(ms);
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < o.clients; ++t) pool.emplace_back(client, t);

  // RSS once a second; a line every 10% of the run so a long soak shows it is alive.
  std::vector<std::pair<double, double>> rss_mb;
  int next_line = 1;
  while (seconds_since(start) < o.seconds) {
    std::this_thread::sleep_for(std::chrono::seconds(1));
    const double t = seconds_since(start);
    rss_mb.emplace_back(t, static_cast<double>(resident_bytes_of(server.pid())) / 1048576.0);
    if (t >= o.seconds * next_line / 10.0) {
      fmt::print("  {:6.0f}s  server RSS {:8.1f} MiB  load average {}\n", t, rss_mb.back().second, load_average());
      ++next_line;
    }
  }
  stop.store(true);
  for (auto& th : pool) th.join();
  const double elapsed = seconds_since(start);

  client_stats all;
  for (auto& c : per) {
    for (int k = 0; k < op_count; ++k) {
      all.latency_ms[k].insert(all.latency_ms[k].end(), c.latency_ms[k].begin(), c.latency_ms[k].end());
    }
    for (auto [s, n] : c.statuses) all.statuses[s] += n;
    all.no_answer += c.no_answer;
    for (const auto& [what, n] : c.failures) all.failures[what] += n;
  }
  fmt::print("\n{:<12} {:>9} {:>9} {:>9} {:>9} {:>9}\n", "OPERATION", "REQS", "REQ/S", "P50_MS", "P95_MS", "P99_MS");
  json report{{"clients", o.clients}, {"seconds", elapsed}, {"model", model}, {"operations", json::object()}};
  for (int k = 0; k < op_count; ++k) {
    auto& v = all.latency_ms[k];
    const double rate = static_cast<double>(v.size()) / (elapsed - warmup_s);
    const double p50 = percentile(v, 0.5), p95 = percentile(v, 0.95), p99 = percentile(v, 0.99);
    fmt::print("{:<12} {:>9} {:>9.1f} {:>9.1f} {:>9.1f} {:>9.1f}\n", op_names[k], v.size(), rate, p50, p95, p99);
    report["operations"][op_names[k]] = {{"requests", v.size()}, {"p50_ms", p50}, {"p95_ms", p95}, {"p99_ms", p99}};
  }
  std::size_t server_errors = 0;
  std::string statuses;
  for (auto [s, n] : all.statuses) {
    statuses += fmt::format(" {}x{}", n, s);
    if (s >= 500) server_errors += n;
    report["statuses"][std::to_string(s)] = n;
  }
  report["no_answer"] = all.no_answer;
  report["failures"] = all.failures;
  for (const auto& [what, n] : all.failures) fmt::print("no answer: {} x {}\n", n, what);

  // Flatness: the RSS trend after warm-up, and the growth from the end of warm-up to the end.
  std::vector<std::pair<double, double>> after;
  for (auto& p : rss_mb) {
    if (p.first >= warmup_s) after.emplace_back(p.first / 60.0, p.second);
  }
  const double warm_rss = after.empty() ? 0 : after.front().second;
  const double end_rss = after.empty() ? 0 : after.back().second;
  double peak = 0;
  for (auto& p : after) peak = std::max(peak, p.second);
  const double trend = slope(after);
  fmt::print("\nstatuses:{}  no answer: {}\n", statuses, all.no_answer);
  fmt::print("server RSS after warm-up {:.1f} MiB, at the end {:.1f} MiB, peak {:.1f} MiB, trend {:+.2f} MiB/min\n",
             warm_rss, end_rss, peak, trend);
  report["rss_mib"] = {{"after_warmup", warm_rss}, {"end", end_rss}, {"peak", peak}, {"trend_per_min", trend}};
  json samples = json::array();
  for (auto& p : rss_mb) samples.push_back({p.first, p.second});
  report["rss_samples"] = samples;
  if (!o.report.empty()) std::ofstream(o.report) << report.dump(1) << "\n";
  if (server_errors > 0 || all.no_answer > 0) {
    fail(errc::internal, "soak: {} server errors and {} requests without an answer", server_errors, all.no_answer);
  }
}

}  // namespace

void add_bench_command(CLI::App& app, global_options& global) {
  auto* bench = app.add_subcommand("bench", "benchmarks against peer runtimes and indexes");
  // One readable line (not CLI11's two) when no instrument is named.
  bench->require_subcommand(0, 1);
  bench->callback([bench] {
    if (bench->get_subcommands().empty()) {
      fail(errc::bad_parameter, "bench: name an instrument: model, search, http, ingest, soak or serve (see bench --help)");
    }
  });

  {
    auto o = std::make_shared<model_options>();
    auto* cmd = bench->add_subcommand("model", "images/s of the runtime vs ONNX Runtime and PyTorch eager");
    auto* src = cmd->add_option_group("model");
    src->add_option("--onnx", o->onnx, "ONNX file (peers: ONNX Runtime; PyTorch when written by tools/export_onnx_models.py)")
        ->check(CLI::ExistingFile);
    src->add_option("--pack", o->pack, "model pack directory")->check(CLI::ExistingDirectory);
    src->require_option(1);
    cmd->add_option("--batch", o->batches, "comma-separated batch sizes")->capture_default_str();
    cmd->add_option("--seconds", o->seconds, "measurement time per runtime and batch")
        ->check(CLI::Range(0.1, 600.0))
        ->capture_default_str();
    cmd->add_option("--peers", o->peers, "ort, torch (comma-separated) or none")->capture_default_str();
    cmd->add_option("--threads", o->threads, "intra-op threads for every runtime (0 = cores)")->capture_default_str();
    cmd->add_option("--warmup", o->warmup, "untimed runs first")->check(CLI::Range(1, 100))->capture_default_str();
    cmd->add_flag("--skip-peak", o->skip_peak, "skip the conv/gemm peak microbenchmarks");
    cmd->add_flag("--profile", o->profile, "after each acg2vec measurement, print the time per op type");
    // On the thread that runs every served forward (runtime/compute.h), so that the figures are
    // those of the thread that owns the process's OpenMP team.
    cmd->callback([o] { runtime::on_compute_thread([&] { run_bench_model(*o); }); });
  }
  {
    auto o = std::make_shared<search_options>();
    auto* cmd = bench->add_subcommand("search", "vector index build time, memory, QPS and recall vs brute force");
    cmd->add_option("--n", o->n, "vectors in the index")->check(CLI::Range(1, 10000000))->capture_default_str();
    cmd->add_option("--dim", o->dim, "dimension")->check(CLI::Range(2, 4096))->capture_default_str();
    cmd->add_option("--kinds", o->kinds, "flat, hnsw, ivf_pq (comma-separated)")->capture_default_str();
    cmd->add_option("--queries", o->queries, "queries")->check(CLI::Range(1, 100000))->capture_default_str();
    cmd->add_option("--k", o->k, "results per query (recall@k)")->check(CLI::Range(1, 1000))->capture_default_str();
    cmd->add_flag("--clustered", o->clustered, "points around n/100 centres instead of isotropic noise");
    cmd->add_option("--threads", o->threads, "threads for the all-threads run (0 = cores)")->capture_default_str();
    cmd->add_option("--brute-seconds", o->brute_seconds, "time bound of the brute-force QPS measurement")
        ->capture_default_str();
    cmd->add_option("--nlist", o->nlist, "IVF-PQ inverted lists (0 = sqrt(n))")->capture_default_str();
    cmd->add_option("--nprobe", o->nprobe, "IVF-PQ lists probed, comma-separated values swept on one build");
    cmd->add_option("--ef-search", o->ef_search, "HNSW efSearch, comma-separated values swept on one build");
    cmd->add_option("--pq-m", o->pq_m, "IVF-PQ sub-quantizers, bytes per code (0 = up to 64, dividing dim)")
        ->capture_default_str();
    cmd->add_option("--refine", o->refine, "IVF-PQ candidates re-ranked exactly, as a multiple of k")
        ->check(CLI::Range(1.0f, 1000.0f))
        ->capture_default_str();
    cmd->add_option("--milvus", o->milvus,
                    "also measure a Milvus collection through the REST client (milvus://host:port[?...]); against "
                    "tests/milvus_double this is the client's protocol overhead only");
    cmd->callback([o] { run_bench_search(*o); });
  }
  {
    auto o = std::make_shared<http_options>();
    auto* cmd = bench->add_subcommand("http", "bounded load on a loopback server: throughput and latency percentiles");
    cmd->add_option("--concurrency", o->concurrency, "comma-separated client counts")->capture_default_str();
    cmd->add_option("--seconds", o->seconds, "duration per client count")
        ->check(CLI::Range(0.2, 120.0))
        ->capture_default_str();
    cmd->add_option("--route", o->route, "GET route of the plain scenario")->capture_default_str();
    cmd->add_option("--url", o->url, "a running server on 127.0.0.1 (default: start one)");
    cmd->add_option("--pack", o->pack, "classifier pack for the POST /v1/classify scenarios")
        ->check(CLI::ExistingDirectory);
    cmd->add_option("--image", o->image, "image posted to /v1/classify (default: tests/data/nsfw's first)")
        ->check(CLI::ExistingFile);
    cmd->add_option("--max-batch", o->max_batches, "pack max_batch values to compare")->capture_default_str();
    cmd->add_option("--server-threads", o->server_threads, "HTTP threads of the started server (0 = its default)");
    cmd->callback([o] { run_bench_http(*o); });
  }
  {
    auto o = std::make_shared<ingest_options>();
    auto* cmd = bench->add_subcommand("ingest", "ingest time split (decode, preprocess, inference, store) vs model-only");
    cmd->add_option("dir", o->dir, "folder of images")->required()->check(CLI::ExistingDirectory);
    cmd->add_option("--max-files", o->max_files, "images used at most")->check(CLI::Range(1, 100000))->capture_default_str();
    cmd->add_option("--workers", o->workers, "ingest workers for the end-to-end run")
        ->check(CLI::Range(1, 64))
        ->capture_default_str();
    cmd->callback([&global, o] { run_bench_ingest(global, *o); });
  }
  {
    auto o = std::make_shared<soak_options>();
    auto* cmd = bench->add_subcommand("soak", "mixed classify/embed/search/insert load for a fixed time: 5xx and RSS");
    cmd->add_option("--pack", o->pack, "classifier pack (its -embedding space is searched)")
        ->required()
        ->check(CLI::ExistingDirectory);
    cmd->add_option("--images", o->images, "folder of images to send (default: tests/data/nsfw)")
        ->check(CLI::ExistingDirectory);
    cmd->add_option("--clients", o->clients, "concurrent keep-alive clients")->check(CLI::Range(1, 256))->capture_default_str();
    cmd->add_option("--seconds", o->seconds, "duration")->check(CLI::Range(1.0, 3600.0))->capture_default_str();
    cmd->add_option("--warmup", o->warmup, "fraction of the run left out of latency and RSS trend")
        ->check(CLI::Range(0.0, 0.9))
        ->capture_default_str();
    cmd->add_option("--server-threads", o->server_threads, "HTTP threads of the started server (0 = its default)");
    cmd->add_option("--report", o->report, "also write the figures and RSS samples as JSON here");
    cmd->callback([o] { run_bench_soak(*o); });
  }
  add_bench_serve_command(*bench, global);
}

}  // namespace acg2vec::cli
