// `acg2vec bench serve --pack DIR`: one pack measured the ways a user meets it, in one run, so
// that the ratios between them mean something on a busy machine:
//   1. model-only: the pack's forward (the function the batcher calls) at batch 1 and max_batch,
//      on the compute thread, plus decode + preprocess of the posted image on a worker thread;
//   2. served: the pack's POST route (/v1/classify, /v1/tag or /v1/embed/image, by task) on a
//      loopback `acg2vec serve` at 1, 8 and 64 keep-alive clients;
//   3. ingest: `acg2vec ingest` of a folder into a fresh data directory.
// Each served figure is printed beside the model-only figure it should approach.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <httplib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <latch>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "cli/bench_common.h"
#include "cli/commands.h"
#include "core/files.h"
#include "core/error.h"
#include "image/decode.h"
#include "models/graph_model.h"
#include "models/manifest.h"
#include "models/registry.h"
#include "runtime/blas.h"
#include "runtime/compute.h"

namespace acg2vec::cli {

namespace {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;
using namespace bench;

struct serve_options {
  std::string pack;
  std::string image;
  std::string dir;
  std::string clients = "1,8,64";
  double seconds = 5.0;
  std::size_t max_files = 100;
  std::size_t workers = 0;
  int server_threads = 0;
  bool skip_ingest = false;
};

std::string cpu_flags_summary() {
  auto cpu = runtime::detect_cpu_features();
  std::string s = cpu.avx512 ? "avx512" : cpu.avx2 ? "avx2" : cpu.avx ? "avx" : "sse";
  if (cpu.fma) s += "+fma";
  return fmt::format("{} ({}), {} cores", cpu.model.empty() ? cpu.vendor : cpu.model, s,
                     std::max(1u, std::thread::hardware_concurrency()));
}

/// Runs this binary with args (stdout captured to a file) and waits; returns the exit status.
int run_self(const std::vector<std::string>& args, const fs::path& out_file) {
  const std::string exe = fs::read_symlink("/proc/self/exe").string();
  pid_t pid = ::fork();
  if (pid < 0) fail(errc::internal, "fork failed");
  if (pid == 0) {
    std::FILE* f = std::freopen(out_file.c_str(), "w", stdout);
    if (f == nullptr) _exit(126);
    std::vector<std::string> all = {exe};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(exe.c_str(), argv.data());
    _exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

struct timing {
  double items_per_s = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  std::size_t count = 0;
  std::size_t errors = 0;
  /// Mean milliseconds per request of each Server-Timing span, in first-seen order.
  std::vector<std::pair<std::string, double>> spans;
};

using span_sums = std::vector<std::pair<std::string, double>>;

/// Adds ms to the span `name` of sums (first-seen order).
void add_span(span_sums& sums, const std::string& name, double ms) {
  auto it = std::find_if(sums.begin(), sums.end(), [&](const auto& s) { return s.first == name; });
  if (it == sums.end()) {
    sums.emplace_back(name, ms);
  } else {
    it->second += ms;
  }
}

/// Adds a Server-Timing header's `name;dur=ms` entries to sums.
void add_server_timing(const std::string& header, span_sums& sums) {
  std::size_t pos = 0;
  while (pos < header.size()) {
    auto end = header.find(',', pos);
    if (end == std::string::npos) end = header.size();
    std::string entry = header.substr(pos, end - pos);
    pos = end + 1;
    auto first = entry.find_first_not_of(' ');
    auto semi = entry.find(';');
    auto dur = entry.find("dur=");
    if (first == std::string::npos || semi == std::string::npos || dur == std::string::npos) continue;
    std::string name = entry.substr(first, semi - first);
    add_span(sums, name, std::strtod(entry.c_str() + dur + 4, nullptr));
  }
}

/// clients keep-alive connections, each posting the image again and again for seconds.
timing post_load(int port, int clients, double seconds, const std::string& route, const std::string& image) {
  struct per_client {
    std::vector<double> ms;
    std::size_t errors = 0;
    std::vector<std::pair<std::string, double>> spans;
  };
  std::vector<per_client> per(static_cast<std::size_t>(clients));
  auto post = [&](httplib::Client& c) {
    httplib::MultipartFormDataItems items = {{"image", image, "image.png", "application/octet-stream"}};
    return c.Post(route.c_str(), items);
  };
  {
    httplib::Client warm("127.0.0.1", port);
    warm.set_read_timeout(120, 0);
    for (int i = 0; i < 3; ++i) (void)post(warm);  // first passes (allocation, packing) stay out
  }
  std::latch ready(clients + 1);
  std::atomic<bool> go{false};
  clock_type::time_point deadline;
  std::vector<std::thread> threads;
  for (int t = 0; t < clients; ++t) {
    threads.emplace_back([&, t] {
      auto& mine = per[static_cast<std::size_t>(t)];
      httplib::Client c("127.0.0.1", port);
      c.set_keep_alive(true);
      c.set_tcp_nodelay(true);
      c.set_read_timeout(120, 0);
      ready.count_down();
      while (!go.load()) std::this_thread::yield();
      while (clock_type::now() < deadline) {
        auto t0 = clock_type::now();
        auto res = post(c);
        if (res && res->status == 200) {
          mine.ms.push_back(seconds_since(t0) * 1e3);
          add_server_timing(res->get_header_value("Server-Timing"), mine.spans);
        } else {
          ++mine.errors;
        }
      }
    });
  }
  ready.arrive_and_wait();
  auto start = clock_type::now();
  deadline = start + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(seconds));
  go.store(true);
  for (auto& th : threads) th.join();
  const double elapsed = seconds_since(start);
  std::vector<double> all;
  timing r;
  for (auto& p : per) {
    all.insert(all.end(), p.ms.begin(), p.ms.end());
    r.errors += p.errors;
    for (const auto& [name, ms] : p.spans) add_span(r.spans, name, ms);
  }
  for (auto& s : r.spans) s.second /= static_cast<double>(std::max<std::size_t>(1, all.size()));
  r.count = all.size();
  r.items_per_s = static_cast<double>(all.size()) / elapsed;
  r.p50_ms = percentile(all, 0.5);
  r.p99_ms = percentile(all, 0.99);
  return r;
}

/// Passes of fn for about seconds (at least 5): items/s and per-pass percentiles.
template <class F>
timing time_passes(double seconds, std::int64_t items_per_pass, F&& fn) {
  std::vector<double> ms;
  auto start = clock_type::now();
  while (ms.size() < 5 || seconds_since(start) < seconds) {
    auto t0 = clock_type::now();
    fn();
    ms.push_back(seconds_since(t0) * 1e3);
  }
  const double elapsed = seconds_since(start);
  timing r;
  r.count = ms.size();
  r.items_per_s = static_cast<double>(ms.size()) * static_cast<double>(items_per_pass) / elapsed;
  r.p50_ms = percentile(ms, 0.5);
  r.p99_ms = percentile(ms, 0.99);
  return r;
}

std::string route_for(models::model_task task) {
  switch (task) {
    case models::model_task::classifier: return "/v1/classify";
    case models::model_task::tagger: return "/v1/tag";
    case models::model_task::image_embedding: return "/v1/embed/image";
    default: return {};
  }
}

void run_bench_serve(const global_options& global, const serve_options& o) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const auto m = models::load_manifest(o.pack);
  if (!m.base.empty()) fail(errc::bad_parameter, "pack '{}' reuses '{}': bench the base pack", m.name, m.base);
  const std::string route = route_for(m.task);
  if (route.empty()) {
    fail(errc::bad_parameter, "bench serve: pack '{}' is a {} pack; it needs a classifier, tagger or image_embedding",
         m.name, to_string(m.task));
  }
  std::vector<int> levels;
  for (std::size_t pos = 0; pos <= o.clients.size();) {
    auto comma = o.clients.find(',', pos);
    auto part = o.clients.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    int c = 0;
    try {
      c = std::stoi(part);
    } catch (const std::exception&) {
      fail(errc::bad_parameter, "--clients: '{}' is not a number", part);
    }
    if (c < 1 || c > 256) fail(errc::bad_parameter, "--clients: {} is outside 1..256", c);
    levels.push_back(c);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }

  // The source tree (for the default image): ACG2VEC_SOURCE_DIR, or above the binary.
  const fs::path source = [] {
    if (const char* s = std::getenv("ACG2VEC_SOURCE_DIR"); s != nullptr && *s != 0) return fs::path(s);
    for (auto p = fs::read_symlink("/proc/self/exe").parent_path(); !p.empty() && p != p.root_path();
         p = p.parent_path()) {
      if (fs::is_directory(p / "tests" / "data" / "nsfw")) return p;
    }
    return fs::current_path();
  }();
  fs::path image_file = o.image;
  if (image_file.empty()) {
    const auto d = source / "tests" / "data" / "nsfw";
    if (!fs::is_directory(d)) fail(errc::bad_parameter, "give --image (no {} here)", d.string());
    for (const auto& e : fs::directory_iterator(d)) {
      if (e.path().extension() == ".png" && (image_file.empty() || e.path() < image_file)) image_file = e.path();
    }
  }
  const fs::path ingest_dir = o.dir.empty() ? image_file.parent_path() : fs::path(o.dir);
  const std::string image = read_file(image_file, "image");
  const std::int64_t max_batch = std::max(1, m.max_batch);

  fmt::print("bench serve: pack {} ({}, max_batch {}, max_wait {} ms), route {}, {:.1f}s per level, load average {}\n",
             m.name, to_string(m.task), max_batch, m.max_wait_ms, route, o.seconds, load_average());
  fmt::print("CPU: {}\n{}\n", cpu_flags_summary(), runtime::describe_blas());

  // 1. Model-only, on the compute thread, with the forward the batcher calls.
  std::unique_ptr<models::graph_model> model;
  runtime::on_compute_thread([&] { model = std::make_unique<models::graph_model>(m, models::load_graph(m.format, m.file)); });
  if (!model->takes_images()) fail(errc::bad_parameter, "pack '{}' does not take images", m.name);
  // Decode + preprocess of the posted image on this (non-compute) thread, as a request worker does.
  at::Tensor one;
  const timing decode = time_passes(std::min(o.seconds, 2.0), 1, [&] { one = model->image_tensor(image::decode_image(image)); });
  const at::Tensor full = one.expand({max_batch, -1, -1, -1}).contiguous();
  timing b1, bmax;
  runtime::on_compute_thread([&] {
    for (int i = 0; i < 3; ++i) (void)model->run_batch(one);
    b1 = time_passes(o.seconds, 1, [&] { (void)model->run_batch(one); });
    if (max_batch > 1) {
      for (int i = 0; i < 2; ++i) (void)model->run_batch(full);
      bmax = time_passes(o.seconds, max_batch, [&] { (void)model->run_batch(full); });
    } else {
      bmax = b1;
    }
  });
  model.reset();

  scratch_dir tmp("serve");
  const auto models_dir = tmp.path() / "models";
  fs::create_directories(models_dir);
  fs::create_directory_symlink(fs::canonical(o.pack), models_dir / m.name);

  // 2. Served.
  struct served_row {
    int clients;
    timing t;
  };
  std::vector<served_row> served;
  {
    bench_server server(tmp.path() / "serve", models_dir, o.server_threads);
    for (int c : levels) served.push_back({c, post_load(server.port(), c, o.seconds, route, image)});
  }

  // 3. Ingest of a folder with `acg2vec ingest`, as a user runs it.
  double ingest_rate = 0;
  std::size_t ingested = 0;
  std::string ingest_note;
  std::string ingest_cpu_line;
  double ingest_cpu_ms = 0;  // core-ms per image, as `acg2vec ingest` measured itself
  if (!o.skip_ingest) {
    const auto files_dir = tmp.path() / "ingest-files";
    fs::create_directories(files_dir);
    std::vector<fs::path> files;
    for (const auto& e : fs::recursive_directory_iterator(ingest_dir)) {
      if (e.is_regular_file()) files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    if (files.size() > o.max_files) files.resize(o.max_files);
    for (std::size_t i = 0; i < files.size(); ++i) {
      fs::create_symlink(fs::absolute(files[i]), files_dir / fmt::format("{:05}{}", i, files[i].extension().string()));
    }
    const auto out = tmp.path() / "ingest.out";
    int rc = run_self({"--log-level", "error", "--data-dir", (tmp.path() / "ingest-data").string(), "--models-dir",
                       models_dir.string(), "ingest", files_dir.string(), "--workers", std::to_string(o.workers)},
                      out);
    std::ifstream in(out);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // "ingested N new, ... ; M items in S.Ss"
    std::size_t n = 0;
    double secs = 0;
    if (rc == 0 && std::sscanf(text.c_str(), "ingested %zu new", &n) == 1) {
      auto in_pos = text.rfind(" items in ");
      if (in_pos != std::string::npos) secs = std::strtod(text.c_str() + in_pos + 10, nullptr);
    }
    if (secs > 0 && n > 0) {
      ingested = n;
      ingest_rate = static_cast<double>(n) / secs;
      if (auto p = text.find("model passes: "); p != std::string::npos) {
        ingest_note = text.substr(p, text.find('\n', p) - p);
      }
      if (auto p = text.find("CPU: "); p != std::string::npos) {
        ingest_cpu_line = text.substr(p, text.find('\n', p) - p);
        if (auto q = ingest_cpu_line.rfind(", "); q != std::string::npos)
          ingest_cpu_ms = std::strtod(ingest_cpu_line.c_str() + q + 2, nullptr);
      }
    } else {
      ingest_note = fmt::format("ingest failed (exit {}): {}", rc, text);
    }
  }

  // Table: each row with the model-only figure it is measured against.
  const double b1_s = 1.0 / std::max(b1.items_per_s, 1e-9);
  const double decode_s = decode.p50_ms / 1e3;
  const double one_client_ref = 1.0 / (b1_s + decode_s);
  fmt::print("\n{:<40} {:>7} {:>9} {:>9} {:>9}   {}\n", "WHAT", "CLIENTS", "ITEMS/S", "P50_MS", "P99_MS",
             "AGAINST (target)");
  fmt::print("{:<40} {:>7} {:>9.1f} {:>9.2f} {:>9.2f}\n", "decode + preprocess (one image, 1 thread)", "-",
             decode.items_per_s, decode.p50_ms, decode.p99_ms);
  fmt::print("{:<40} {:>7} {:>9.1f} {:>9.2f} {:>9.2f}\n", "model-only batch 1", "-", b1.items_per_s, b1.p50_ms,
             b1.p99_ms);
  fmt::print("{:<40} {:>7} {:>9.1f} {:>9.2f} {:>9.2f}\n", fmt::format("model-only batch {}", max_batch), "-",
             bmax.items_per_s, bmax.p50_ms, bmax.p99_ms);
  for (const auto& r : served) {
    std::string against;
    if (r.clients == 1) {
      against = fmt::format("{:.2f}x of 1/(batch-1 pass + decode) = {:.1f}/s (>= 0.85)", r.t.items_per_s / one_client_ref,
                            one_client_ref);
    } else {
      against = fmt::format("{:.2f}x of model-only batch {} (>= 0.90 at 64)", r.t.items_per_s / bmax.items_per_s,
                            max_batch);
    }
    if (r.clients >= 64) against += fmt::format("; p99/p50 {:.2f} (<= 2)", r.t.p99_ms / std::max(r.t.p50_ms, 1e-9));
    if (r.t.errors > 0) against += fmt::format("; {} errors", r.t.errors);
    fmt::print("{:<40} {:>7} {:>9.1f} {:>9.2f} {:>9.2f}   {}\n", "POST " + route, r.clients, r.t.items_per_s,
               r.t.p50_ms, r.t.p99_ms, against);
  }
  // Served and ingested images are decoded on the same cores that run the forwards, so the CPU
  // bounds them below model-only: one image costs a 1/bmax share of all cores plus its decode on
  // one core.
  {
    const double cores = std::max(1u, std::thread::hardware_concurrency());
    const double ceiling = 1.0 / (1.0 / std::max(bmax.items_per_s, 1e-9) + decode_s / cores);
    fmt::print("  CPU bound with decoding on the same {} cores: {:.1f}/s = {:.2f}x of model-only batch {}\n",
               static_cast<int>(cores), ceiling, ceiling / bmax.items_per_s, max_batch);
  }
  // Where a request's time goes, from the server's Server-Timing headers: what the round trip
  // holds beyond the spans (client, loopback, the connection loop) is "outside".
  for (const auto& r : served) {
    if (r.t.spans.empty()) continue;
    std::string parts;
    double inside = 0;
    for (const auto& [name, ms] : r.t.spans) {
      parts += fmt::format(" {} {:.2f}", name, ms);
      if (name == "worker_wait" || name == "parse" || name == "handler") inside += ms;
    }
    double mean_ms = r.t.items_per_s > 0 ? static_cast<double>(r.clients) * 1e3 / r.t.items_per_s : 0;
    fmt::print("  {} client{}, mean ms per request:{}; outside the server {:.2f} of {:.2f}\n", r.clients,
               r.clients == 1 ? "" : "s", parts, std::max(0.0, mean_ms - inside), mean_ms);
  }
  if (!o.skip_ingest) {
    if (ingest_rate > 0) {
      fmt::print("{:<40} {:>7} {:>9.1f} {:>9} {:>9}   {:.2f}x of model-only batch {} (>= 0.90)\n",
                 fmt::format("ingest, {} images, {} workers", ingested,
                             o.workers == 0 ? std::string("default") : std::to_string(o.workers)),
                 "-", ingest_rate, "-", "-", ingest_rate / bmax.items_per_s, max_batch);
      if (!ingest_note.empty()) fmt::print("  ingest {}\n", ingest_note);
      if (ingest_cpu_ms > 0) {
        // What an image cost the ingest against what its forward costs model-only: the rest
        // (decode, signatures, thumbnail, store) bounds the ingest on these cores.
        const double cores = std::max(1u, std::thread::hardware_concurrency());
        const double forward_ms = 1e3 * cores / std::max(bmax.items_per_s, 1e-9);
        fmt::print("  ingest {}; model-only batch {} costs {:.1f} core-ms per image, so at most {:.2f}x of it "
                   "with this much other work per image\n",
                   ingest_cpu_line, max_batch, forward_ms,
                   forward_ms / std::max(ingest_cpu_ms, forward_ms));
      }
    } else {
      fmt::print("{}\n", ingest_note);
    }
  }
  (void)global;
}

}  // namespace

void add_bench_serve_command(CLI::App& bench, global_options& global) {
  auto o = std::make_shared<serve_options>();
  auto* cmd = bench.add_subcommand(
      "serve", "one pack model-only, served over HTTP at several client counts, and ingested: ratios in one run");
  cmd->add_option("--pack", o->pack, "classifier, tagger or image_embedding pack directory")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--image", o->image, "image posted and timed (default: tests/data/nsfw's first PNG)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--dir", o->dir, "folder ingested (default: the image's folder)")->check(CLI::ExistingDirectory);
  cmd->add_option("--clients", o->clients, "comma-separated client counts for the served rows")->capture_default_str();
  cmd->add_option("--seconds", o->seconds, "duration of each measurement")
      ->check(CLI::Range(0.2, 120.0))
      ->capture_default_str();
  cmd->add_option("--max-files", o->max_files, "images ingested at most")->check(CLI::Range(1, 100000))->capture_default_str();
  cmd->add_option("--workers", o->workers, "ingest workers (as `acg2vec ingest --workers`; 0 = ingest's default)")
      ->check(CLI::Range(0, 64))
      ->capture_default_str();
  cmd->add_option("--server-threads", o->server_threads, "HTTP threads of the started server (0 = its default)");
  cmd->add_flag("--skip-ingest", o->skip_ingest, "leave out the ingest row");
  cmd->callback([&global, o] { run_bench_serve(global, *o); });
}

}  // namespace acg2vec::cli
