// `acg2vec bench model`: images/s of the runtime against ONNX Runtime (node) and PyTorch eager on
// the same graph, in one run, plus the machine's conv/GEMM peak.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/bench_common.h"
#include "cli/commands.h"
#include "core/error.h"
#include "models/graph_model.h"
#include "models/manifest.h"
#include "models/registry.h"
#include "runtime/blas.h"
#include "runtime/compute.h"
#include "runtime/executor.h"
#include "runtime/onnx_loader.h"
#include "runtime/threads.h"

namespace acg2vec::cli {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;
using namespace bench;

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
  std::string shape;  // the input's non-batch dimensions, for models that leave them open
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
  // The executor's own cost per step: what a run takes beyond its kernels (reading the clock
  // around each kernel included, so it is an upper bound).
  if (profile.runs > 0 && profile.steps > 0) {
    const double outside = std::max(0.0, profile.run_ms - total);
    fmt::print("  dispatch between kernels: {:.3f} ms per run of {:.3f} ms ({:.1f}%), {:.2f} us per step over {} steps\n",
               outside / static_cast<double>(profile.runs), profile.run_ms / static_cast<double>(profile.runs),
               100.0 * outside / std::max(profile.run_ms, 1e-9), 1e3 * outside / static_cast<double>(profile.steps),
               profile.steps / profile.runs);
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
  std::unique_ptr<models::graph_model> model;
  std::string label;
  if (!o.onnx.empty()) {
    onnx_file = fs::absolute(o.onnx);
    owned = std::make_unique<runtime::executor>(runtime::load_onnx(onnx_file));
    label = onnx_file.stem().string();
  } else {
    auto m = models::load_manifest(o.pack);
    if (!m.base.empty()) fail(errc::bad_parameter, "pack '{}' reuses '{}': bench the base pack", m.name, m.base);
    if (m.format == models::model_format::onnx) onnx_file = m.file;
    model = std::make_unique<models::graph_model>(m, models::load_graph(m.format, m.file));
    label = m.name;
  }
  const runtime::executor& ex = owned ? *owned : model->executor();
  if (ex.inputs().size() != 1 || ex.inputs()[0].dtype != at::kFloat || !ex.inputs()[0].rank_known) {
    fail(errc::bad_parameter, "bench model: '{}' must take one float tensor of known rank (it takes {} inputs)", label,
         ex.inputs().size());
  }
  auto shape = ex.inputs()[0].shape;
  if (!o.shape.empty()) {
    const auto given = parse_int_list(o.shape, "--shape");
    if (given.size() + 1 != shape.size())
      fail(errc::bad_parameter, "--shape: '{}' takes {} dimensions after the batch, not {}", label, shape.size() - 1,
           given.size());
    for (std::size_t i = 1; i < shape.size(); ++i) {
      if (given[i - 1] <= 0 || (shape[i] > 0 && shape[i] != given[i - 1]))
        fail(errc::bad_parameter, "--shape: dimension {} of '{}' is {}, not {}", i, label, shape[i], given[i - 1]);
      shape[i] = given[i - 1];
    }
  }
  for (std::size_t i = 1; i < shape.size(); ++i) {
    if (shape[i] <= 0) fail(errc::bad_parameter, "bench model: input dimension {} of '{}' is not fixed (give --shape)", i, label);
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

}  // namespace

void add_bench_model(CLI::App& bench_cmd) {
  auto o = std::make_shared<model_options>();
  auto* cmd = bench_cmd.add_subcommand("model", "images/s of the runtime vs ONNX Runtime and PyTorch eager");
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
  cmd->add_option("--shape", o->shape,
                  "the input's dimensions after the batch, comma-separated, for models that leave them open "
                  "(e.g. 3,292,292 for a Real-CUGAN pack)");
  // On the thread that runs every served forward (runtime/compute.h), so that the figures are
  // those of the thread that owns the process's OpenMP team.
  cmd->callback([o] { runtime::on_compute_thread([&] { run_bench_model(*o); }); });
}

}  // namespace acg2vec::cli
