// CLI commands over the embedded collection: ingest and search.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <mutex>
#include <fstream>
#include <sstream>
#include <thread>

#include "cli/commands.h"
#include "core/files.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "image/decode.h"
#include "index/open_index.h"
#include "runtime/threads.h"
#include "search/service.h"
#include "search/watch.h"
#include "store/open_store.h"

namespace acg2vec::cli {

namespace {

using json = nlohmann::json;

/// The embedded collection in --data-dir with every installed model loaded.
struct collection {
  explicit collection(const global_options& global, models::model_registry::observer_fn observer = {})
      : store(acg2vec::store::open_store(global.store, global.data_dir)),
        spaces(global.data_dir, *store, index::parse_index_address(global.index)),
        models(global.models_dir, std::move(observer)),
        service(global.data_dir, *store, spaces, models) {
    models.load_all();
    service.define_spaces();
  }
  std::unique_ptr<store::item_store> store;
  search::vector_spaces spaces;
  models::model_registry models;
  search::search_service service;
};

}  // namespace

void prepare_data_dir(const global_options& global) { std::filesystem::create_directories(global.data_dir); }

void add_collection_commands(CLI::App& app, global_options& global) {
  // ---- ingest ----
  {
    auto* cmd = app.add_subcommand("ingest", "add every image under a directory to the collection (resumable)");
    struct opts_t {
      std::string dir;
      // Each worker holds one image from decoding to storing, so with only max_batch workers
      // every one of them waits inside the running forward and none prepares the next batch
      // (passes held 2.4-3.8 images of 8). 0 = twice the largest max_batch: passes then held 6.3-6.6,
      // and with the workers' lower priority (core/thread_pool.h) the extra decoding no longer
      // slows the forwards as much (BENCHMARKS.md "bench serve", issue 19).
      std::size_t workers = 0;
      std::size_t max_mb = 20;
      std::uint64_t max_pixels = 100'000'000;
    };
    auto o = std::make_shared<opts_t>();
    cmd->add_option("dir", o->dir, "directory to scan recursively")->required()->check(CLI::ExistingDirectory);
    cmd->add_option("--workers", o->workers,
                    "images analysed at once (their model calls are batched together); 0 = twice the largest "
                    "max_batch of the installed image packs")
        ->check(CLI::Range(0, 64))
        ->capture_default_str();
    cmd->add_option("--max-file-mb", o->max_mb, "skip files larger than this")->capture_default_str();
    cmd->add_option("--max-pixels", o->max_pixels, "skip images with more pixels than this (checked before decoding)")
        ->capture_default_str();
    cmd->callback([&global, o] {
      prepare_data_dir(global);
      // How full the model passes were and how long the models ran: what ingest's rate is held
      // against (a pass below max_batch, or models idle while images decode, shows here).
      struct pass_stats {
        std::mutex mutex;
        std::size_t passes = 0, rows = 0;
        double seconds = 0;
      };
      auto passes = std::make_shared<pass_stats>();
      collection c(global, [passes](const std::string&, std::size_t rows, double seconds) {
        std::lock_guard lock(passes->mutex);
        ++passes->passes;
        passes->rows += rows;
        passes->seconds += seconds;
      });
      c.service.set_decode_limits(image::decode_limits{o->max_mb << 20, o->max_pixels});
      std::vector<std::filesystem::path> files;
      std::filesystem::path root = std::filesystem::canonical(o->dir);
      for (auto it = std::filesystem::recursive_directory_iterator(
               root, std::filesystem::directory_options::skip_permission_denied);
           it != std::filesystem::recursive_directory_iterator(); ++it) {
        if (it->is_regular_file()) files.push_back(it->path());
      }
      std::sort(files.begin(), files.end());
      std::atomic<std::size_t> stored{0}, existing{0}, duplicates{0}, non_images{0}, failed{0};
      auto start = std::chrono::steady_clock::now();
      const double cpu_start = process_cpu_seconds();
      {
        progress_bar bar("ingest", files.size());
        std::size_t workers = o->workers;
        if (workers == 0) {
          int widest = 1;
          for (const auto& e : c.models.entries()) {
            if (e->takes_images()) widest = std::max(widest, e->manifest.max_batch);
          }
          workers = std::clamp<std::size_t>(2 * static_cast<std::size_t>(widest), 4, 64);
        }
        thread_pool pool(workers, input_thread_nice());
        std::vector<std::future<void>> jobs;
        for (const auto& f : files) {
          jobs.push_back(pool.submit([&, f] {
            try {
              search::item_input in;
              // The path as found under the folder: relative() would resolve symlinks and name a
              // linked file by its target ("../../elsewhere/x.png").
              in.id = f.lexically_relative(root).generic_string();
              in.source = f.string();
              auto r = search::ingest_bytes(c.service, read_file(f, "image", o->max_mb << 20), std::move(in),
                                    search::write_mode::skip_existing);
              switch (r.status) {
                case search::ingest_status::stored: ++stored; break;
                case search::ingest_status::duplicate: ++duplicates; break;
                case search::ingest_status::existing: ++existing; break;
                case search::ingest_status::not_image: ++non_images; break;
                case search::ingest_status::failed:
                  ++failed;
                  spdlog::warn("{}: {}", f.string(), r.error);
                  break;
              }
            } catch (const error& e) {
              ++failed;
              spdlog::warn("{}: {}", f.string(), e.what());
            }
            bar.advance();
          }));
        }
        for (auto& j : jobs) j.get();
      }
      c.service.save_indexes();
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const double cpu = process_cpu_seconds() - cpu_start;
      fmt::print("ingested {} new, {} already stored, {} duplicates, {} not images, {} failed; {} items in {:.1f}s\n",
                 stored.load(), existing.load(), duplicates.load(), non_images.load(), failed.load(),
                 c.store->count(), secs);
      {
        std::lock_guard lock(passes->mutex);
        if (passes->passes > 0) {
          const int threads = runtime::intra_op_threads();
          fmt::print("model passes: {}, {:.1f} images per pass, {} thread{} each, models busy {:.1f}s of {:.1f}s\n",
                     passes->passes, static_cast<double>(passes->rows) / static_cast<double>(passes->passes), threads,
                     threads == 1 ? "" : "s", passes->seconds, secs);
        }
      }
      // Whether the run was held by the CPU, and what one image cost it (models and all else).
      const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
      if (secs > 0 && stored + duplicates + existing > 0) {
        fmt::print("CPU: {:.1f} core-seconds, {:.2f} of {} cores busy, {:.1f} core-ms per image\n", cpu, cpu / secs,
                   cores, 1e3 * cpu / static_cast<double>(stored + duplicates + existing));
      }
      if (failed > 0 && stored == 0 && existing == 0) fail(errc::unsupported_media, "no file could be ingested");
    });
  }

  // ---- search ----
  {
    auto* cmd = app.add_subcommand("search", "search the collection by image, id, text or tags");
    struct opts_t {
      std::string image, id, text, space, tags, any, none, rating;
      std::size_t k = 10;
      float cutoff = -1;
      bool as_json = false;
    };
    auto o = std::make_shared<opts_t>();
    auto* g = cmd->add_option_group("query");
    g->add_option("--image", o->image, "query image file")->check(CLI::ExistingFile);
    g->add_option("--id", o->id, "a stored item id (more like this)");
    g->add_option("--text", o->text, "text (needs a CLIP pack)");
    g->require_option(0, 1);
    cmd->add_option("--tags", o->tags, "comma-separated tags that must all be present");
    cmd->add_option("--any", o->any, "comma-separated tags of which one must be present");
    cmd->add_option("--none", o->none, "comma-separated tags that must be absent");
    cmd->add_option("--rating", o->rating, "rating filter: general, sensitive, questionable, explicit, safe");
    cmd->add_option("--space", o->space, "vector space (default: signature for images)");
    cmd->add_option("-k,--k", o->k, "number of results")->check(CLI::Range(1, 1000))->capture_default_str();
    cmd->add_option("--cutoff", o->cutoff, "minimum similarity");
    cmd->add_flag("--json", o->as_json, "JSON output");
    cmd->callback([&global, o] {
      collection c(global);
      search::search_request r;
      auto split = [](const std::string& s) {
        std::vector<std::string> out;
        std::stringstream ss(s);
        for (std::string t; std::getline(ss, t, ',');) {
          if (!t.empty()) out.push_back(t);
        }
        return out;
      };
      if (!o->image.empty()) r.image = image::decode_image_file(o->image);
      if (!o->id.empty()) r.item_id = o->id;
      if (!o->text.empty()) r.text = o->text;
      r.space = o->space;
      r.k = o->k;
      r.cutoff = o->cutoff;
      r.filter.all_of = split(o->tags);
      r.filter.any_of = split(o->any);
      r.filter.none_of = split(o->none);
      if (!o->rating.empty()) r.filter.rating = o->rating;
      auto result = c.service.search(r);
      if (o->as_json) {
        json hits = json::array();
        for (const auto& h : result.hits) {
          hits.push_back({{"id", store::item_id_to_json(h.item)}, {"score", h.score}, {"source", h.item.source},
                          {"metadata", h.item.metadata}});
        }
        fmt::print("{}\n", json{{"space", result.space}, {"hits", hits}}.dump(-1, ' ', false, json::error_handler_t::replace));
        return;
      }
      fmt::print("{:>4}  {:>7}  {:<40}  {}\n", "#", "SCORE", "ID", "SOURCE");
      int rank = 0;
      for (const auto& h : result.hits) fmt::print("{:>4}  {:>7.4f}  {:<40}  {}\n", ++rank, h.score, h.item.id, h.item.source);
      if (result.hits.empty()) fmt::print("(no results in space '{}')\n", result.space);
    });
  }
}

}  // namespace acg2vec::cli
