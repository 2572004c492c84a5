// `acg2vec bench ingest`: where ingest time goes (decode, preprocess, inference, store) against
// the model alone.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/bench_common.h"
#include "cli/commands.h"
#include "core/error.h"
#include "core/files.h"
#include "image/decode.h"
#include "image/signature.h"
#include "search/vector_spaces.h"
#include "models/registry.h"
#include "runtime/blas.h"
#include "search/service.h"
#include "store/sqlite_store.h"

namespace acg2vec::cli {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;
using namespace bench;

struct ingest_options {
  std::string dir;
  std::size_t max_files = 100;
  std::size_t workers = 8;  // as `acg2vec ingest`
};

/// The seconds of one end-to-end ingest of files into a fresh collection with workers threads.
double ingest_once(const global_options& global, const fs::path& data_dir, const std::vector<fs::path>& files,
                   const std::vector<std::string>& bytes, std::size_t workers) {
  fs::create_directories(data_dir);
  store::sqlite_store store(data_dir / "acg2vec.db");
  search::vector_spaces spaces(data_dir, store);
  models::model_registry models(global.models_dir);
  models.load_all();
  search::search_service service(data_dir, store, spaces, models);
  service.define_spaces();
  std::atomic<std::size_t> next{0};
  auto start = clock_type::now();
  std::vector<std::thread> pool;
  for (std::size_t w = 0; w < workers; ++w) {
    pool.emplace_back([&] {
      for (std::size_t i = next++; i < files.size(); i = next++) {
        search::item_input in;
        in.id = fmt::format("{}-{}", i, files[i].filename().string());
        try {
          (void)service.add_image(bytes[i], std::move(in), search::write_mode::skip_existing);
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
    auto b = read_file(f, "image");
    if (image::sniff_image_format(b).empty()) continue;
    images.push_back(f);
    bytes.push_back(std::move(b));
  }
  if (images.empty()) fail(errc::not_found, "bench ingest: no images under {}", o.dir);

  models::model_registry models(global.models_dir);
  models.load_all();
  std::vector<std::shared_ptr<const models::model_entry>> active;
  std::size_t shared_packs = 0;
  for (const auto& e : models.entries()) {
    if (e->state != models::model_state::ready || !e->takes_images()) continue;
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

}  // namespace

void add_bench_ingest(CLI::App& bench_cmd, global_options& global) {
  auto o = std::make_shared<ingest_options>();
  auto* cmd = bench_cmd.add_subcommand("ingest", "ingest time split (decode, preprocess, inference, store) vs model-only");
  cmd->add_option("dir", o->dir, "folder of images")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("--max-files", o->max_files, "images used at most")->check(CLI::Range(1, 100000))->capture_default_str();
  cmd->add_option("--workers", o->workers, "ingest workers for the end-to-end run")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  cmd->callback([&global, o] { run_bench_ingest(global, *o); });
}

}  // namespace acg2vec::cli
