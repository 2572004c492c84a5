#pragma once
// A model pack backed by an op graph (ONNX, Keras .h5 or TF.js): image in → preprocess →
// dynamic batcher → executor → named outputs. Text and CLIP packs live in text_model.h.

#include <ATen/ATen.h>

#include <future>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "image/decode.h"
#include "image/preprocess.h"
#include "models/batcher.h"
#include "models/manifest.h"
#include "runtime/executor.h"
#include "runtime/graph.h"

namespace acg2vec::models {

/// A value of the same network wanted by another pack (a derived "-embedding" pack or one that
/// names this pack as its base): computed in this pack's forward pass, so that analysing an image
/// for both packs costs one pass, not two.
struct companion_output {
  std::string pack;  ///< the pack that wants the value
  cut_spec cut;
};

class graph_model {
 public:
  /// @param graph the loaded graph (shared between packs that reuse one file through "base").
  /// @param observer receives (rows, seconds) of each forward pass, for /metrics.
  /// @param companions values of other packs to compute in the same pass (see submit_image).
  graph_model(model_manifest manifest, const runtime::graph& graph, batcher::observer_fn observer = {},
              std::vector<companion_output> companions = {});

  [[nodiscard]] const model_manifest& manifest() const noexcept { return manifest_; }
  /// @brief Names of the values this model returns, in order (after any cut).
  [[nodiscard]] const std::vector<std::string>& output_names() const noexcept { return output_names_; }
  [[nodiscard]] const runtime::executor& executor() const noexcept { return *executor_; }
  [[nodiscard]] bool takes_images() const noexcept { return takes_images_; }

  /// @brief Decoded image → outputs, each with its batch row removed (e.g. [9176] scores).
  std::vector<at::Tensor> run_image(const image::image_rgb8& image) const;
  /// @brief Queues the image for the next batch without waiting: the future yields this model's
  /// outputs, then the companions' values (in companions() order) from the same pass, each with
  /// its batch row ([1, ...]).
  [[nodiscard]] std::future<std::vector<at::Tensor>> submit_image(const image::image_rgb8& image) const;
  /// @brief The packs whose values submit_image also returns.
  [[nodiscard]] const std::vector<companion_output>& companions() const noexcept { return companions_; }
  /// @brief Already-preprocessed input [N, ...] → outputs [N, ...] (goes through the batcher).
  std::vector<at::Tensor> run_batch(const at::Tensor& input) const;
  /// @brief The float input tensor [1, ...] this model would see for an image.
  at::Tensor image_tensor(const image::image_rgb8& image) const;

  /// @brief Inputs/outputs/op counts as JSON (for /v1/models and `models check`).
  [[nodiscard]] nlohmann::json describe() const;

 private:
  std::vector<at::Tensor> forward(const at::Tensor& batch) const;

  model_manifest manifest_;
  std::vector<companion_output> companions_;
  std::vector<bool> pooled_in_graph_;  ///< per executor output: a Keras GAP was appended to the graph
  std::unique_ptr<runtime::executor> executor_;
  std::vector<std::string> output_names_;
  bool takes_images_ = false;
  image::preprocess_spec preprocess_{};
  std::unique_ptr<batcher> batcher_;
};

}  // namespace acg2vec::models