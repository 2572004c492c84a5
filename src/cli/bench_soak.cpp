// `acg2vec bench soak`: mixed load for a fixed time; counts 5xx and unanswered requests and
// follows the server's RSS.
#include <httplib.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <deque>
#include <map>
#include <random>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/bench_common.h"
#include "cli/commands.h"
#include "core/error.h"
#include "core/files.h"
#include "models/manifest.h"

namespace acg2vec::cli {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;
using namespace bench;

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
  const std::string model = models::load_manifest(pack).name;
  const std::string space = model + "-embedding";
  std::vector<std::string> images;
  const fs::path image_dir = o.images.empty() ? source_root() / "tests" / "data" / "nsfw" : fs::path(o.images);
  for (const auto& e : fs::directory_iterator(image_dir)) {
    auto ext = e.path().extension().string();
    if (ext == ".png" || ext == ".jpg" || ext == ".jpeg") images.push_back(read_file(e.path(), "image"));
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

void add_bench_soak(CLI::App& bench_cmd) {
  auto o = std::make_shared<soak_options>();
  auto* cmd = bench_cmd.add_subcommand("soak", "mixed classify/embed/search/insert load for a fixed time: 5xx and RSS");
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

}  // namespace acg2vec::cli
