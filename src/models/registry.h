#pragma once
// Every model pack under --models-dir, loaded in the background at start-up. /health reports the
// state of each; a pack that fails to load is reported with its message and the others still work.
//
// Thread safety: all methods may be called concurrently; packs are immutable once ready.

#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "models/graph_model.h"
#include "models/manifest.h"
#include "models/text_model.h"
#include "models/upscaler.h"

namespace acg2vec::models {

enum class model_state { loading, ready, failed };

struct model_entry {
  model_manifest manifest;
  model_state state = model_state::loading;
  std::string error;
  double load_seconds = 0;
  std::shared_ptr<const graph_model> graph;  ///< set for onnx / keras_h5 / tfjs_layers packs
  std::shared_ptr<const text_model> text;    ///< set for text_embedding / clip_text packs
  std::shared_ptr<const clip_image_model> clip_image;  ///< set for the image tower of a CLIP pack
  std::shared_ptr<const upscaler> upscale;             ///< set for upscaler packs
  /// The pack whose forward pass also yields this pack's value (graph->companions() of that pack
  /// names this one); empty when this pack needs a pass of its own.
  std::string shared_pass_of;

  /// @brief Whether run_image() works for this pack.
  [[nodiscard]] bool takes_images() const noexcept { return (graph && graph->takes_images()) || clip_image; }
  /// @brief Image → outputs (batch row removed), whatever kind of pack this is.
  [[nodiscard]] std::vector<at::Tensor> run_image(const image::image_rgb8& img) const;
};

class model_registry {
 public:
  using observer_fn = std::function<void(const std::string& model, std::size_t rows, double seconds)>;

  explicit model_registry(std::filesystem::path models_dir, observer_fn observer = {});
  ~model_registry();
  model_registry(const model_registry&) = delete;
  model_registry& operator=(const model_registry&) = delete;

  /// @brief Starts loading every pack on a background thread (returns at once).
  void start();
  /// @brief Loads every pack on the calling thread (CLI commands).
  void load_all();
  /// @brief Blocks until loading has finished.
  void wait() const;
  /// @brief Whether loading has finished (every pack is ready or failed).
  [[nodiscard]] bool loaded() const noexcept { return done_.load(); }

  /// @brief A ready pack by name or alias. Unknown → not_found; loading or failed → unavailable.
  std::shared_ptr<const model_entry> get(std::string_view name) const;
  /// @brief The first ready pack for a task (in name order), or nullptr.
  std::shared_ptr<const model_entry> first(model_task task) const;
  /// @brief As get(name) when name is non-empty, else first(task); errors name what to install.
  std::shared_ptr<const model_entry> resolve(std::string_view name, model_task task) const;
  /// @brief Snapshot of every entry (any state).
  std::vector<std::shared_ptr<const model_entry>> entries() const;
  /// @brief {"ready": bool, "models": {name: {state, task, format, error?, load_seconds}}}
  nlohmann::json health() const;

  [[nodiscard]] const std::filesystem::path& dir() const noexcept { return dir_; }

 private:
  void load_everything();

  std::filesystem::path dir_;
  observer_fn observer_;
  mutable std::shared_mutex mutex_;
  std::map<std::string, std::shared_ptr<const model_entry>> entries_;  // by pack name
  std::map<std::string, std::string> aliases_;                          // alias → pack name
  std::atomic<bool> done_{false};
  mutable std::mutex done_mutex_;
  mutable std::condition_variable done_cv_;
  std::thread loader_;
};

/// @brief Loads the op graph of a pack's weights file in its format (onnx, keras_h5, tfjs_layers).
runtime::graph load_graph(model_format format, const std::filesystem::path& file);

}  // namespace acg2vec::models