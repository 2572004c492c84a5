#pragma once
// Loader for TensorFlow.js layers-models: model.json (modelTopology = a Keras model config, plus
// weightsManifest) and its binary weight shards, including uint8/uint16-quantised and float16
// weights. Translated into the runtime IR by the same code as Keras .h5 files.

#include <filesystem>

#include "runtime/graph.h"
#include "runtime/keras_layers.h"

namespace acg2vec::runtime {

/// @brief Loads a TF.js layers-model from its model.json (shards resolved next to it, with or
/// without a ".bin" suffix). Throws acg2vec::error naming the layer or shard at fault.
graph load_tfjs_layers(const std::filesystem::path& model_json);

/// @brief Decodes the weightsManifest of a TF.js model.json into per-layer float tensors.
keras_weights read_tfjs_weights(const std::filesystem::path& model_json);

}  // namespace acg2vec::runtime
