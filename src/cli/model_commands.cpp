// CLI commands that run model packs directly: tag, embed, models list|check.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <future>

#include "cli/commands.h"
#include "cli/model_pull.h"
#include "cli/tag_captions.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "image/decode.h"
#include "models/postprocess.h"
#include "models/layouts.h"
#include "models/registry.h"
#include "models/text_model.h"
#include "runtime/compute.h"

namespace acg2vec::cli {

namespace {

using json = nlohmann::json;

struct file_result {
  std::string file;
  std::vector<at::Tensor> outputs;
  std::string error;
};

// Decodes files on a small pool while the model runs, and feeds the model in chunks of its
// max_batch so many files share forward passes.
std::vector<file_result> run_files(const models::graph_model& model, const std::vector<std::string>& files) {
  std::vector<file_result> results(files.size());
  // This thread only merges decoded images; forwards run on the compute thread (runtime/compute.h).
  runtime::single_openmp_thread();
  thread_pool pool(2, input_thread_nice());
  std::vector<std::future<at::Tensor>> inputs;
  inputs.reserve(files.size());
  for (const auto& f : files) {
    inputs.push_back(pool.submit([&model, f] { return model.image_tensor(image::decode_image_file(f)); }));
  }
  progress_bar bar(model.manifest().name, files.size());
  std::size_t chunk = static_cast<std::size_t>(model.manifest().max_batch);
  for (std::size_t start = 0; start < files.size(); start += chunk) {
    std::vector<at::Tensor> batch;
    std::vector<std::size_t> index;
    for (std::size_t i = start; i < std::min(files.size(), start + chunk); ++i) {
      results[i].file = files[i];
      try {
        batch.push_back(inputs[i].get());
        index.push_back(i);
      } catch (const std::exception& e) {
        results[i].error = e.what();
      }
    }
    if (!batch.empty()) {
      auto out = model.run_batch(at::cat(batch, 0));
      for (std::size_t j = 0; j < index.size(); ++j) {
        for (const auto& o : out) results[index[j]].outputs.push_back(o[static_cast<std::int64_t>(j)]);
      }
    }
    bar.advance(std::min(files.size(), start + chunk) - start);
  }
  bar.finish();
  return results;
}

models::model_registry& loaded_registry(const global_options& global, std::unique_ptr<models::model_registry>& holder) {
  holder = std::make_unique<models::model_registry>(global.models_dir);
  holder->load_all();
  return *holder;
}

int report_failures(const std::vector<file_result>& results) {
  int failed = 0;
  for (const auto& r : results) {
    if (!r.error.empty()) {
      std::fprintf(stderr, "acg2vec: %s: %s\n", r.file.c_str(), r.error.c_str());
      ++failed;
    }
  }
  return failed;
}

// One pack: load it the way serve does and run it once on a grey image or a word.
void check_pack(const models::model_manifest& m) {
  if (!m.base.empty()) fail(errc::bad_parameter, "pack '{}' reuses '{}': check the base pack", m.name, m.base);
  if (m.task == models::model_task::clip_text || m.task == models::model_task::text_embedding) {
    auto text = models::text_model::load(m);
    auto v = text->embed({"1girl"});
    fmt::print("pack '{}' ({}, {}): text → [{}]\n", m.name, to_string(m.task), to_string(m.format),
               fmt::join(v.sizes(), ", "));
    if (auto vision = text->vision()) {
      models::clip_image_model image(vision);
      image::image_rgb8 grey{64, 64, std::vector<std::uint8_t>(64 * 64 * 3, 128)};
      fmt::print("pack '{}-image': image → [{}]\n", m.name, fmt::join(image.embed(grey).sizes(), ", "));
    }
    fmt::print("pack '{}' is valid\n", m.name);
    return;
  }
  auto graph = models::load_graph(m.format, m.file);
  models::graph_model model(m, graph);
  auto info = model.describe();
  fmt::print("{}\n", info.dump(2));
  if (model.takes_images()) {
    image::image_rgb8 grey{64, 64, std::vector<std::uint8_t>(64 * 64 * 3, 128)};
    auto out = model.run_image(grey);
    for (std::size_t i = 0; i < out.size(); ++i) {
      fmt::print("output {} ({}): shape [{}]\n", i, model.output_names()[i], fmt::join(out[i].sizes(), ", "));
    }
  }
  fmt::print("pack '{}' is valid\n", m.name);
}

}  // namespace

void add_model_commands(CLI::App& app, global_options& global) {
  // ---- tag ----
  {
    auto* cmd = app.add_subcommand("tag", "tag images with an installed tagger (DeepDanbooru, WD)");
    struct opts_t {
      std::vector<std::string> files;
      std::string model;
      float threshold = -1;
      bool as_json = false;
      bool all = false;
    };
    auto o = std::make_shared<opts_t>();
    cmd->add_option("files", o->files, "image files (with --captions also directories)")
        ->required()
        ->check(CLI::ExistingPath);
    cmd->add_option("--model", o->model,
                    "tagger pack name (default: the first installed tagger); with --captions 'a,b' combines several");
    cmd->add_option("--threshold", o->threshold, "score threshold for general and character tags")
        ->check(CLI::Range(0.0, 1.0));
    cmd->add_flag("--json", o->as_json, "one JSON object per line");
    cmd->add_flag("--all", o->all, "report every tag with its score");
    auto captions = add_caption_options(*cmd);
    cmd->callback([&global, o, cmd, captions] {
      if (captions_requested(*cmd, *captions)) {
        run_caption_job(global, *cmd, *captions, o->files, o->model, o->threshold);
        return;
      }
      for (const auto& f : o->files) {
        if (std::filesystem::is_directory(f)) fail(errc::bad_parameter, "{} is a directory (use --captions to caption a folder)", f);
      }
      std::unique_ptr<models::model_registry> holder;
      auto& reg = loaded_registry(global, holder);
      auto e = reg.resolve(o->model, models::model_task::tagger);
      models::tag_options opts;
      opts.include_all = o->all;
      if (o->threshold >= 0) {
        opts.thresholds[models::tag_category::general] = o->threshold;
        opts.thresholds[models::tag_category::character] = o->threshold;
      }
      auto results = run_files(*e->graph, o->files);
      for (const auto& r : results) {
        if (!r.error.empty()) continue;
        auto report = models::tag_report(e->manifest, r.outputs.at(0), opts);
        if (o->as_json) {
          report["file"] = r.file;
          fmt::print("{}\n", report.dump(-1, ' ', false, json::error_handler_t::replace));
          continue;
        }
        std::string line;
        if (report.contains("rating")) line += fmt::format("[{}] ", report["rating"]["name"].get<std::string>());
        for (const auto& cat : {"character", "general"}) {
          if (!report["tags"].contains(cat)) continue;
          for (const auto& t : report["tags"][cat]) {
            line += fmt::format("{}:{:.2f} ", t["name"].get<std::string>(), t["score"].get<float>());
          }
        }
        fmt::print("{}\t{}\n", r.file, line);
      }
      if (int failed = report_failures(results)) fail(errc::unsupported_media, "{} of {} files failed", failed, results.size());
    });
  }

  // ---- embed ----
  {
    auto* cmd = app.add_subcommand("embed", "compute image embeddings (illust2vec, nsfw embedding, ...)");
    struct opts_t {
      std::vector<std::string> files;
      std::string model;
      bool as_json = false;
    };
    auto o = std::make_shared<opts_t>();
    cmd->add_option("files", o->files, "image files")->required()->check(CLI::ExistingFile);
    cmd->add_option("--model", o->model, "image_embedding pack (default: the first installed)");
    cmd->add_flag("--json", o->as_json, "one JSON object per line with the full vector");
    cmd->callback([&global, o] {
      std::unique_ptr<models::model_registry> holder;
      auto& reg = loaded_registry(global, holder);
      auto e = reg.resolve(o->model, models::model_task::image_embedding);
      auto results = run_files(*e->graph, o->files);
      for (const auto& r : results) {
        if (!r.error.empty()) continue;
        auto v = models::to_json_array(r.outputs.at(0));
        if (o->as_json) {
          fmt::print("{}\n", json{{"file", r.file}, {"model", e->manifest.name}, {"dim", v.size()}, {"vector", v}}.dump());
        } else {
          std::string head;
          for (std::size_t i = 0; i < std::min<std::size_t>(4, v.size()); ++i) head += fmt::format("{:.4f} ", v[i].get<float>());
          fmt::print("{}\t{}-d\t{}...\n", r.file, v.size(), head);
        }
      }
      if (int failed = report_failures(results)) fail(errc::unsupported_media, "{} of {} files failed", failed, results.size());
    });
  }

  // ---- models ----
  {
    auto* cmd = app.add_subcommand("models", "list, check and pull model packs");
    cmd->require_subcommand(1);
    auto* list = cmd->add_subcommand("list", "list packs in --models-dir with their state");
    auto as_json = std::make_shared<bool>(false);
    auto available = std::make_shared<bool>(false);
    list->add_flag("--json", *as_json, "JSON output");
    list->add_flag("--available", *available, "list the packs `models pull NAME` can install, with sizes and licences");
    list->callback([&global, as_json, available] {
      if (*available) {
        print_catalogue(global, *as_json);
        return;
      }
      std::unique_ptr<models::model_registry> holder;
      auto& reg = loaded_registry(global, holder);
      if (*as_json) {
        fmt::print("{}\n", reg.health().dump(2));
        return;
      }
      fmt::print("{:<28} {:<16} {:<12} {:<8} {}\n", "NAME", "TASK", "FORMAT", "STATE", "DETAIL");
      for (const auto& e : reg.entries()) {
        std::string state = e->state == models::model_state::ready ? "ready" : "failed";
        std::string detail = e->error.empty() ? e->manifest.dir.string() : e->error;
        if (e->error.empty()) detail += pulled_revision(e->manifest.dir);
        fmt::print("{:<28} {:<16} {:<12} {:<8} {}\n", e->manifest.name, to_string(e->manifest.task),
                   e->manifest.base.empty() ? std::string(to_string(e->manifest.format)) : "base:" + e->manifest.base,
                   state, detail);
      }
    });
    auto* check = cmd->add_subcommand(
        "check", "validate a pack folder (manifest.json or a drop-in layout) and run one dummy inference");
    auto dir = std::make_shared<std::string>();
    check->add_option("dir", *dir, "pack folder: one with manifest.json, or a WD tagger, DeepDanbooru, immich CLIP, "
                                   "Hugging Face CLIPModel or sentence-transformers folder as downloaded")
        ->required()
        ->check(CLI::ExistingDirectory);
    check->callback([dir] {
      if (!std::filesystem::exists(std::filesystem::path(*dir) / "manifest.json")) {
        // Say what was inferred, so the user can save it as manifest.json and edit it.
        auto inferred = models::infer_packs(*dir);
        for (const auto& p : inferred) {
          fmt::print("# {} layout: the manifest inferred for {} (save as manifest.json there to edit it)\n{}\n",
                     p.layout, p.dir.string(), p.manifest.dump(2));
        }
      }
      for (const auto& m : models::load_packs(*dir)) check_pack(m);
    });
    add_pull_command(cmd, global);
  }
}

}  // namespace acg2vec::cli
