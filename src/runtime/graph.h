#pragma once
// The model runtime's intermediate representation: a graph of ONNX-semantics operators whose
// tensors are libtorch tensors. Every loader (ONNX, Keras .h5, TF.js, ...) produces this IR;
// one executor runs it. Operator semantics are those of the ONNX operator of the same op_type
// at the graph's opset (default domain), so a loader for another format translates its layers
// into ONNX operators (e.g. a Keras Conv2D with 'same' padding becomes Conv with explicit,
// possibly asymmetric, pads on NCHW data).

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <variant>
#include <vector>

namespace acg2vec::runtime {

/// An operator attribute, as in ONNX AttributeProto (graphs are not supported).
using attribute = std::variant<std::int64_t, double, std::string, std::vector<std::int64_t>, std::vector<double>,
                               std::vector<std::string>, at::Tensor>;

struct node {
  std::string name;                  ///< unique within the graph when the format names it
  std::string op_type;               ///< ONNX operator name, e.g. "Conv"
  std::string domain;                ///< "" for the default ONNX domain
  std::vector<std::string> inputs;   ///< value names; "" marks an omitted optional input
  std::vector<std::string> outputs;  ///< value names
  std::map<std::string, attribute> attributes;
};

/// A graph input or output: name, element type and shape (-1 for a dynamic dimension).
struct value_info {
  std::string name;
  at::ScalarType dtype = at::kFloat;
  std::vector<std::int64_t> shape;
  bool rank_known = true;  ///< false when the format does not declare a shape (shape is then empty)
  /// Optional names of dynamic dimensions (ONNX dim_param); equal names denote equal sizes
  /// across inputs, which the executor enforces. Empty, or one entry per dimension ("" = unnamed).
  std::vector<std::string> dim_names;
};

struct graph {
  std::string name;
  std::int64_t opset = 17;
  std::vector<value_info> inputs;   ///< excludes initializers
  std::vector<value_info> outputs;
  std::map<std::string, at::Tensor> initializers;
  std::vector<node> nodes;          ///< any order; the executor sorts topologically
};

/// @brief Keeps only the nodes that some value in `keep` depends on (through their inputs), in
/// their order; graph outputs, inputs and initializers are left as they are.
void drop_unneeded(graph& g, const std::set<std::string>& keep);

}  // namespace acg2vec::runtime
