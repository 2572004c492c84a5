#include "runtime/graph.h"

#include <unordered_map>

namespace acg2vec::runtime {

void drop_unneeded(graph& g, const std::set<std::string>& keep) {
  std::unordered_map<std::string, std::size_t> producer;
  for (std::size_t i = 0; i < g.nodes.size(); ++i)
    for (const auto& out : g.nodes[i].outputs) producer[out] = i;
  std::vector<bool> needed(g.nodes.size(), false);
  std::vector<std::string> pending(keep.begin(), keep.end());
  while (!pending.empty()) {
    const std::string value = std::move(pending.back());
    pending.pop_back();
    auto it = producer.find(value);
    if (it == producer.end() || needed[it->second]) continue;
    needed[it->second] = true;
    for (const auto& in : g.nodes[it->second].inputs)
      if (!in.empty()) pending.push_back(in);
  }
  std::vector<node> kept;
  for (std::size_t i = 0; i < g.nodes.size(); ++i)
    if (needed[i]) kept.push_back(std::move(g.nodes[i]));
  g.nodes = std::move(kept);
}

}  // namespace acg2vec::runtime
