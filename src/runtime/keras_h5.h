#pragma once
// Loader for Keras HDF5 model files (model.save("x.h5")): the model_config attribute gives the
// architecture, model_weights/<layer>/... the weights. The result is the runtime IR; see
// keras_layers.h for how layers, layouts and value names are translated.

#include <filesystem>

#include "runtime/graph.h"
#include "runtime/keras_layers.h"

namespace acg2vec::runtime {

/// @brief Loads a Keras .h5 model (functional or Sequential) into the IR; every layer output is
/// a value named after the layer. Throws acg2vec::error naming the layer at fault.
graph load_keras_h5(const std::filesystem::path& file);

/// @brief Reads only the weights of a Keras .h5 file (a full model or a save_weights file).
keras_weights read_keras_h5_weights(const std::filesystem::path& file);

}  // namespace acg2vec::runtime
