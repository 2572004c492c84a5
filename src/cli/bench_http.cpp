// `acg2vec bench http`: bounded load on a loopback server; throughput and latency percentiles.
#include <httplib.h>
#include <fmt/format.h>

#include <map>
#include <atomic>
#include <latch>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/bench_common.h"
#include "cli/commands.h"
#include "core/uri.h"
#include "core/error.h"
#include "models/manifest.h"
#include "runtime/blas.h"

namespace acg2vec::cli {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;
using namespace bench;

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
  auto m = models::load_manifest(pack);
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
    const auto parts = parse_uri(o.url.find("://") == std::string::npos ? "http://" + o.url : o.url, "--url", 80);
    if (parts.hosts.size() != 1) fail(errc::bad_parameter, "--url must name one server");
    const auto& [host, port] = parts.hosts[0];
    if (host != "127.0.0.1" && host != "localhost") fail(errc::bad_parameter, "--url must point at 127.0.0.1 or localhost");
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

}  // namespace

void add_bench_http(CLI::App& bench_cmd) {
  auto o = std::make_shared<http_options>();
  auto* cmd = bench_cmd.add_subcommand("http", "bounded load on a loopback server: throughput and latency percentiles");
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

}  // namespace acg2vec::cli
