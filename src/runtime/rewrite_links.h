#pragma once
// What the load-time rewrites (rewrites.cpp, rewrites_fold.cpp) share: who reads and writes each
// value, dropping rewritten nodes, and the values of Constant nodes. Internal to src/runtime.

#include "runtime/graph.h"
#include "runtime/ops.h"
#include "runtime/rewrites.h"

#include <string>
#include <unordered_map>
#include <vector>

namespace acg2vec::runtime::rewrite {

struct value_links {
  std::unordered_map<std::string, int> readers;           ///< value -> number of node inputs reading it
  std::unordered_map<std::string, std::size_t> producer;  ///< value -> index of the node writing it
};

inline value_links link_values(const graph& g) {
  value_links l;
  for (const auto& n : g.nodes)
    for (const auto& in : n.inputs) ++l.readers[in];
  for (std::size_t i = 0; i < g.nodes.size(); ++i)
    for (const auto& out : g.nodes[i].outputs) l.producer[out] = i;
  return l;
}

// The graph without the nodes marked removed, in order.
inline void drop_removed(graph& g, const std::vector<bool>& removed) {
  std::vector<node> kept;
  for (std::size_t i = 0; i < g.nodes.size(); ++i)
    if (!removed[i]) kept.push_back(std::move(g.nodes[i]));
  g.nodes = std::move(kept);
}

// The values written by Constant nodes (default domain, one output).
inline std::unordered_map<std::string, at::Tensor> constant_values(const graph& g) {
  std::unordered_map<std::string, at::Tensor> out;
  for (const auto& n : g.nodes)
    if (n.op_type == "Constant" && is_default_domain(n.domain) && n.outputs.size() == 1)
      if (auto v = attr_tensor(n, "value")) out[n.outputs[0]] = *v;
  return out;
}


/// What is known of a graph's values at load time: its initializers and its Constant nodes' values.
class known_constants {
 public:
  explicit known_constants(const graph& g) : g_(&g), nodes_(constant_values(g)) {}
  /// @brief The value of name, or nullptr when it is not a load-time constant.
  const at::Tensor* operator()(const std::string& name) const {
    if (auto it = g_->initializers.find(name); it != g_->initializers.end()) return &it->second;
    if (auto it = nodes_.find(name); it != nodes_.end()) return &it->second;
    return nullptr;
  }

 private:
  const graph* g_;
  std::unordered_map<std::string, at::Tensor> nodes_;
};

}  // namespace acg2vec::runtime::rewrite
