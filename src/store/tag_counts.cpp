// The generic tag count: one pass over every item. Backends with a tag table (SQLite) override it
// with a query; for the others this is the definition the override must agree with.
#include <algorithm>
#include <set>

#include "store/item_store.h"

namespace acg2vec::store {

std::vector<tag_count> item_store::tag_counts(std::string_view prefix, std::size_t limit, float min_score,
                                              const std::optional<std::string>& tagger) const {
  std::map<std::string, std::size_t> counts;
  constexpr std::size_t page = 500;
  for (std::size_t offset = 0;; offset += page) {
    auto items = list(offset, page, false);
    for (const auto& it : items) {
      std::set<std::string> on;  // a tag given by two taggers counts once per item
      for (const auto& [name, list] : it.tags) {
        if (tagger && *tagger != name) continue;
        for (const auto& [tag, score] : list) {
          if (score >= min_score && std::string_view(tag).starts_with(prefix)) on.insert(tag);
        }
      }
      for (const auto& t : on) ++counts[t];
    }
    if (items.size() < page) break;
  }
  std::vector<tag_count> out;
  out.reserve(counts.size());
  for (auto& [tag, n] : counts) out.push_back({tag, n});
  std::stable_sort(out.begin(), out.end(), [](const tag_count& a, const tag_count& b) { return a.items > b.items; });
  if (limit != 0 && out.size() > limit) out.resize(limit);
  return out;
}

}  // namespace acg2vec::store
