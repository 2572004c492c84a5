#pragma once
// One FAISS index per named vector space, persisted as <data_dir>/index/<space>.faiss and
// rebuilt from the item store when that file is missing, stale or corrupt. Each space has its
// own reader/writer lock: any number of searches run together, an add or remove waits for them
// and is visible to every search that starts after it returns.

#include "index/open_index.h"
#include "store/item_store.h"

#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <shared_mutex>
#include <string>
#include <vector>

namespace acg2vec::search {

class vector_spaces {
 public:
  /// @brief Opens the spaces listed (see define()). The store must outlive this object.
  vector_spaces(std::filesystem::path data_dir, const store::item_store& store,
                const std::vector<index::space_config>& spaces = {});
  /// @brief Same, with the spaces where `address` says (see index::parse_index_address). FAISS
  /// parameters named in the address are saved under data_dir/index/faiss.json and used from then
  /// on; naming different ones removes the saved indexes, which are rebuilt with them.
  vector_spaces(std::filesystem::path data_dir, const store::item_store& store, index::index_address address,
                const std::vector<index::space_config>& spaces = {});
  vector_spaces(const vector_spaces&) = delete;
  vector_spaces& operator=(const vector_spaces&) = delete;

  /// @brief Loads a space's saved index if it is current, else rebuilds it from the store
  /// (and saves it). Defining an existing space again with the same dim and metric does nothing;
  /// with a different one it is errc::conflict.
  void define(const index::space_config& config);
  [[nodiscard]] bool has(std::string_view space) const;
  [[nodiscard]] std::vector<index::space_info> info() const;

  /// @brief Adds or replaces id's vector in a space (errc::not_found for an unknown space).
  void add(std::string_view space, std::string_view id, std::span<const float> v);
  /// @brief Removes id from a space; false if it was not there.
  bool remove(std::string_view space, std::string_view id);
  /// @brief Removes id from every space.
  void remove_everywhere(std::string_view id);
  /// @brief Makes every defined space reflect a stored item: its vectors are added, and it is
  /// removed from spaces where it has none.
  void apply(const store::item& it);
  /// @brief k nearest neighbours in one space, optionally restricted by a filter.
  [[nodiscard]] std::vector<index::hit> search(std::string_view space, std::span<const float> query,
                                        std::size_t k, const index::id_filter* filter = nullptr) const;
  [[nodiscard]] bool contains(std::string_view space, std::string_view id) const;
  [[nodiscard]] std::size_t size(std::string_view space) const;

  /// @brief Discards a space's index and rebuilds it from the store.
  void rebuild(std::string_view space);
  /// @brief Saves every space stamped with `generation`. The caller guarantees that the indexes
  /// reflect exactly that store generation (e.g. no write in flight), otherwise the next start
  /// would trust an index that misses a write.
  void save_all(std::uint64_t generation) const;
  /// @brief Where a space's index is saved.
  [[nodiscard]] std::filesystem::path file_of(std::string_view space) const;

 private:
  struct slot {
    index::space_config config;
    mutable std::shared_mutex mutex;
    std::unique_ptr<index::vector_index> index;
    index::faiss_index* faiss = nullptr;  // index as FAISS, null when remote
  };

  slot& find(std::string_view space) const;
  void choose_faiss_options(std::optional<index::faiss_options> named);
  [[nodiscard]] index::faiss_options options_for(const index::space_config& config) const;
  std::unique_ptr<index::faiss_index> rebuild_from_store(const index::space_config& config, std::uint64_t* generation) const;
  void refill_remote(const index::space_config& config, index::vector_index& index) const;

  std::filesystem::path dir_;
  const store::item_store& store_;
  index::remote_index_factory remote_;
  std::optional<index::faiss_options> faiss_;  // saved or named parameters; unset: each space's own
  mutable std::shared_mutex spaces_mutex_;  // guards the map, not the indexes
  std::map<std::string, std::unique_ptr<slot>, std::less<>> spaces_;
};

}  // namespace acg2vec::search