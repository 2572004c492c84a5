#pragma once
// Translation of a Keras model (its model_config JSON plus its weights) into the runtime IR.
// Shared by the Keras .h5 loader and the TF.js layers-model loader, which differ only in how
// they find the JSON and the weight tensors.
//
// Layout: Keras image tensors are NHWC; the IR runs ONNX operators on NCHW. The graph input
// keeps the Keras NHWC layout and is transposed once. Every Keras layer's output is available
// under the layer's name in Keras order (4-D outputs through a Transpose view back to NHWC), so
// a model can be cut at any layer (e.g. "add_43"); the NCHW value the network itself uses is
// named "<layer>:nchw". Call select_outputs() to cut and drop the views nobody asked for.
//
// Layers: InputLayer, Conv2D (groups, dilation), DepthwiseConv2D, SeparableConv2D,
// BatchNormalization, LayerNormalization, Dense, Activation (relu, relu6, sigmoid, softmax, tanh,
// linear, swish/silu, elu, selu, softplus, softsign, exponential, hard_sigmoid), ReLU (max_value,
// negative_slope, threshold), LeakyReLU, PReLU, ELU, ThresholdedReLU, Softmax, Add, Subtract,
// Multiply, Average, Maximum, Minimum, Concatenate, MaxPooling2D, AveragePooling2D (TF 'same':
// padded cells are not counted), GlobalAverage/MaxPooling2D, ZeroPadding2D, Cropping2D,
// UpSampling2D (nearest), Flatten, Reshape, Permute, Rescaling, Dropout and other inference no-ops,
// and nested Functional/Sequential models (inlined).

#include <nlohmann/json_fwd.hpp>

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/graph.h"

namespace acg2vec::runtime {

/// One weight tensor of a layer; name is the short Keras name ("kernel", "bias", "gamma", ...).
struct keras_weight {
  std::string name;
  at::Tensor value;  ///< float32, in the Keras (TF) layout, e.g. HWIO for Conv2D kernels
};

/// Weights by owning layer name, each list in the order the file stores it.
using keras_weights = std::map<std::string, std::vector<keras_weight>>;

/// @brief Short Keras weight name: "block1/conv/kernel:0" -> "kernel".
std::string keras_weight_short_name(std::string_view full_name);

/// @brief Name of the layer that owns a weight: "block1/conv/kernel:0" -> "conv"; "" when unscoped.
std::string keras_weight_owner(std::string_view full_name);

/// @brief Refuses a JSON document holding a non-integral number beyond ±2^63 (or NaN/inf):
/// reading one as an integer, as layer configs and weight manifests are read, is an undefined
/// conversion inside nlohmann::json. Throws bad_parameter naming source.
void check_json_numbers(const nlohmann::json& document, std::string_view source);

/// @brief Translates a Keras model config ({"class_name": "Model"|"Functional"|"Sequential",
/// "config": ...}) with its weights into a graph; `source` names the file in error messages.
/// Throws acg2vec::error naming the layer for unknown classes, missing or mis-shaped weights.
/// Pass the weights with std::move to let each layer's source tensors go once translated.
graph translate_keras_model(const nlohmann::json& model_config, keras_weights weights, const std::string& source);

/// @brief Appends global average pooling over height and width of a 4-D Keras layer's output
/// (a cut with "pool": "gap", e.g. illust2vec = add_43 + GAP). Returns the new value's name,
/// "<layer>/gap", shape [N, C]. Throws not_found when the layer has no 4-D output.
std::string append_keras_gap(graph& g, const std::string& layer);

/// @brief Makes `outputs` (value names, e.g. Keras layer names) the graph outputs and removes
/// every node they do not depend on. Throws not_found for a name no node produces.
void select_outputs(graph& g, const std::vector<std::string>& outputs);

}  // namespace acg2vec::runtime
