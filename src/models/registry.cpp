#include "models/registry.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <condition_variable>
#include <set>

#include "core/error.h"
#include "models/layouts.h"
#include "runtime/compute.h"
#include "runtime/keras_h5.h"
#include "runtime/ncnn_loader.h"
#include "runtime/onnx_loader.h"
#include "runtime/tfjs.h"

namespace acg2vec::models {

std::vector<at::Tensor> model_entry::run_image(const image::image_rgb8& img) const {
  if (graph && graph->takes_images()) return graph->run_image(img);
  if (clip_image) return {clip_image->embed(img)};
  fail(errc::bad_parameter, "model '{}' does not take images", manifest.name);
}

runtime::graph load_graph(model_format format, const std::filesystem::path& file) {
  switch (format) {
    case model_format::onnx: return runtime::load_onnx(file);
    case model_format::keras_h5: return runtime::load_keras_h5(file);
    case model_format::tfjs_layers: return runtime::load_tfjs_layers(file);
    case model_format::ncnn: {
      auto bin = file;
      return runtime::load_ncnn(file, bin.replace_extension(".bin"));
    }
    default: break;
  }
  fail(errc::bad_parameter, "format '{}' is not an op-graph format", to_string(format));
}

model_registry::model_registry(std::filesystem::path models_dir, observer_fn observer)
    : dir_(std::move(models_dir)), observer_(std::move(observer)) {}

model_registry::~model_registry() {
  if (loader_.joinable()) loader_.join();
}

void model_registry::start() {
  loader_ = std::thread([this] { load_everything(); });
}

void model_registry::load_all() { load_everything(); }

void model_registry::wait() const {
  std::unique_lock lock(done_mutex_);
  done_cv_.wait(lock, [this] { return done_.load(); });
}

void model_registry::load_everything() {
  // Loading runs ops (weight packing, probe passes): on the compute thread, so that no other
  // thread ever starts an OpenMP team (runtime/compute.h).
  if (!runtime::on_compute_thread_now()) {
    runtime::single_openmp_thread();
    runtime::on_compute_thread([this] { load_everything(); });
    return;
  }
  std::vector<model_manifest> manifests;
  std::error_code ec;
  if (std::filesystem::is_directory(dir_, ec)) {
    std::vector<std::filesystem::path> dirs;
    for (const auto& e : std::filesystem::directory_iterator(dir_, ec)) {
      // Hidden folders are work in progress (models pull assembles packs in .pull-*).
      if (e.path().filename().string().starts_with(".")) continue;
      if (e.is_directory() && is_pack_dir(e.path())) dirs.push_back(e.path());
    }
    std::sort(dirs.begin(), dirs.end());
    for (const auto& d : dirs) {
      try {
        // A manifest.json, or the manifests inferred from a drop-in layout (models/layouts.h).
        for (auto& m : load_packs(d)) {
          manifests.push_back(std::move(m));
          if (const auto& emb = manifests.back().embedding) {
            model_manifest derived;
            derived.name = manifests.back().name + "-embedding";
            derived.task = model_task::image_embedding;
            derived.base = manifests.back().name;
            derived.dir = manifests.back().dir;
            derived.cut = *emb;
            derived.max_batch = manifests.back().max_batch;
            derived.max_wait_ms = manifests.back().max_wait_ms;
            manifests.push_back(std::move(derived));
          }
        }
      } catch (const std::exception& e) {
        auto entry = std::make_shared<model_entry>();
        entry->manifest.name = d.filename().string();
        entry->manifest.dir = d;
        entry->state = model_state::failed;
        entry->error = e.what();
        spdlog::error("model pack {}: {}", d.string(), e.what());
        std::unique_lock lock(mutex_);
        entries_[entry->manifest.name] = entry;
      }
    }
  } else {
    spdlog::warn("models directory {} does not exist; no model is available", dir_.string());
  }
  {
    std::unique_lock lock(mutex_);
    for (const auto& m : manifests) {
      auto entry = std::make_shared<model_entry>();
      entry->manifest = m;
      entries_[m.name] = entry;
      for (const auto& a : m.aliases) aliases_[a] = m.name;
    }
  }
  // Packs without a base first, so "base" packs can reuse their graph.
  std::stable_sort(manifests.begin(), manifests.end(),
                   [](const auto& a, const auto& b) { return a.base.empty() && !b.base.empty(); });
  std::map<std::string, std::shared_ptr<runtime::graph>> graphs;  // by pack name
  for (auto m : manifests) {
    auto entry = std::make_shared<model_entry>();
    entry->manifest = m;
    auto start = std::chrono::steady_clock::now();
    try {
      std::shared_ptr<runtime::graph> g;
      if (!m.base.empty()) {
        auto it = graphs.find(m.base);
        if (it == graphs.end()) fail(errc::unavailable, "base pack '{}' is not installed or failed to load", m.base);
        g = it->second;
        // The derived pack reads the base pack's weights and, unless it says otherwise, its preprocessing.
        std::shared_lock lock(mutex_);
        const auto& base = entries_.at(m.base)->manifest;
        m.format = base.format;
        m.file = base.file;
        if (m.input.empty()) m.input = base.input;
        entry->manifest = m;
      } else if (m.format == model_format::onnx &&
                 (m.task == model_task::clip_text || m.task == model_task::text_embedding)) {
        entry->text = text_model::load(m);
      } else if (m.task == model_task::upscaler) {
        if (!std::filesystem::exists(m.file)) fail(errc::not_found, "weights file {} is missing", m.file.string());
        const runtime::graph ug = m.format == model_format::ncnn ? runtime::load_ncnn(m.file, m.weights)
                                                                  : load_graph(m.format, m.file);
        entry->upscale = std::make_shared<upscaler>(m, ug);
        entry->state = model_state::ready;
        entry->load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        spdlog::info("model pack '{}' ({}, {}) ready in {:.1f}s", m.name, to_string(m.task), to_string(m.format),
                     entry->load_seconds);
        std::unique_lock lock(mutex_);
        entries_[m.name] = entry;
        continue;
      } else if (m.format == model_format::sentence_transformers || m.format == model_format::hf_clip) {
        entry->text = text_model::load(m);
      } else {  // a graph: ONNX, Keras .h5, TF.js or ncnn
        if (!std::filesystem::exists(m.file)) fail(errc::not_found, "weights file {} is missing", m.file.string());
        g = std::make_shared<runtime::graph>(m.format == model_format::ncnn ? runtime::load_ncnn(m.file, m.weights)
                                                                            : load_graph(m.format, m.file));
        graphs[m.name] = g;
      }
      if (entry->text) {
        entry->state = model_state::ready;
        if (auto vision = entry->text->vision()) {
          // A CLIP checkpoint also yields its image tower as "<name>-image".
          auto image_entry = std::make_shared<model_entry>();
          image_entry->manifest = m;
          image_entry->manifest.name = m.name + "-image";
          image_entry->manifest.task = model_task::clip_image;
          image_entry->manifest.aliases = m.raw.value("image_aliases", std::vector<std::string>{});
          image_entry->clip_image = std::make_shared<clip_image_model>(vision);
          image_entry->state = model_state::ready;
          std::unique_lock lock(mutex_);
          entries_[image_entry->manifest.name] = image_entry;
          for (const auto& a : image_entry->manifest.aliases) aliases_[a] = image_entry->manifest.name;
        }
        entry->load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        spdlog::info("model pack '{}' ({}, {}) ready in {:.1f}s", m.name, to_string(m.task), to_string(m.format),
                     entry->load_seconds);
        std::unique_lock lock(mutex_);
        entries_[m.name] = entry;
        continue;
      }
      auto observer = observer_ ? batcher::observer_fn([obs = observer_, name = m.name](std::size_t rows, double s) {
        obs(name, rows, s);
      })
                                : batcher::observer_fn{};
      // Packs cut from this one's network with the same preprocessing ride along in its pass.
      std::vector<companion_output> companions;
      if (m.base.empty()) {
        for (const auto& other : manifests) {
          if (other.base == m.name && other.cut && (other.input.empty() || other.input == m.input)) {
            companions.push_back({other.name, *other.cut});
          }
        }
      } else {
        std::shared_lock lock(mutex_);
        const auto& base = entries_.at(m.base);
        for (const auto& c : base->graph ? base->graph->companions() : std::vector<companion_output>{}) {
          if (c.pack == m.name) entry->shared_pass_of = m.base;
        }
      }
      try {
        entry->graph = std::make_shared<graph_model>(m, *g, observer, companions);
      } catch (const std::exception& e) {
        if (companions.empty()) throw;
        // A derived pack with a bad cut must not take its base down: it fails on its own below.
        spdlog::warn("model pack '{}': computing its derived packs in the same pass failed ({}); "
                     "they run on their own",
                     m.name, e.what());
        entry->graph = std::make_shared<graph_model>(m, *g, observer);
      }
      entry->state = model_state::ready;
    } catch (const std::exception& e) {
      entry->state = model_state::failed;
      entry->error = e.what();
      spdlog::error("model pack '{}' failed to load: {}", m.name, e.what());
    }
    entry->load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (entry->state == model_state::ready) {
      spdlog::info("model pack '{}' ({}, {}) ready in {:.1f}s", m.name, to_string(m.task), to_string(m.format),
                   entry->load_seconds);
    }
    std::unique_lock lock(mutex_);
    entries_[m.name] = entry;
  }
  {
    std::lock_guard lock(done_mutex_);
    done_ = true;
  }
  done_cv_.notify_all();
}

std::shared_ptr<const model_entry> model_registry::get(std::string_view name) const {
  std::shared_lock lock(mutex_);
  std::string key(name);
  if (auto a = aliases_.find(key); a != aliases_.end()) key = a->second;
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    fail(errc::not_found, "model '{}' is not installed (install its pack in {})", name, dir_.string());
  }
  const auto& e = it->second;
  if (e->state == model_state::loading) fail(errc::unavailable, "model '{}' is still loading", name);
  if (e->state == model_state::failed) fail(errc::unavailable, "model '{}' failed to load: {}", name, e->error);
  return e;
}

std::shared_ptr<const model_entry> model_registry::first(model_task task) const {
  std::shared_lock lock(mutex_);
  for (const auto& [name, e] : entries_) {
    if (e->state == model_state::ready && e->manifest.task == task) return e;
  }
  return nullptr;
}

std::shared_ptr<const model_entry> model_registry::resolve(std::string_view name, model_task task) const {
  if (!name.empty()) {
    auto e = get(name);
    if (e->manifest.task != task) {
      fail(errc::bad_parameter, "model '{}' is a {} model, not a {} model", name, to_string(e->manifest.task),
           to_string(task));
    }
    return e;
  }
  if (auto e = first(task)) return e;
  if (!done_) fail(errc::unavailable, "models are still loading");
  fail(errc::unavailable, "no {} model is installed; add a pack with \"task\": \"{}\" to {}", to_string(task),
       to_string(task), dir_.string());
}

std::vector<std::shared_ptr<const model_entry>> model_registry::entries() const {
  std::shared_lock lock(mutex_);
  std::vector<std::shared_ptr<const model_entry>> out;
  for (const auto& [_, e] : entries_) out.push_back(e);
  return out;
}

nlohmann::json model_registry::health() const {
  nlohmann::json models = nlohmann::json::object();
  for (const auto& e : entries()) {
    nlohmann::json m{{"state", e->state == model_state::ready     ? "ready"
                               : e->state == model_state::loading ? "loading"
                                                                  : "failed"},
                     {"task", to_string(e->manifest.task)}};
    if (e->state != model_state::failed || !e->manifest.base.empty() || !e->manifest.file.empty()) {
      m["format"] = to_string(e->manifest.format);
    }
    if (!e->error.empty()) m["error"] = e->error;
    if (e->state == model_state::ready) m["load_seconds"] = e->load_seconds;
    models[e->manifest.name] = m;
  }
  return {{"ready", done_.load()}, {"models", models}};
}

}  // namespace acg2vec::models