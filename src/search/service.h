#pragma once
// The one place that combines models, the item store and the vector indexes: analysing an
// image into an item (tags, scores, vectors, signature), keeping store and indexes in step,
// and answering searches by image, stored id, text and tags.
//
// Durability: an item is acknowledged once the store has committed it; indexes are derived and
// rebuilt from the store when their saved copy is stale. Thread safety: every method may be
// called concurrently; writes are serialised, searches run beside them.

#include <atomic>
#include <filesystem>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "image/decode.h"
#include "search/vector_spaces.h"
#include "models/registry.h"
#include "search/request.h"
#include "store/item_store.h"

namespace acg2vec::search {

/// What the caller says about a new item (everything else is computed from the image).
struct item_input {
  std::optional<std::string> id;  ///< external id; when absent the content hash is used
  bool numeric_id = false;
  std::string source;
  nlohmann::json metadata;  ///< the seed's extendInfo (object or null)
};

enum class write_mode {
  insert,         ///< errc::conflict when the id exists
  upsert,         ///< replace an existing item
  skip_existing,  ///< ingest: an existing id or identical content is skipped, not an error
};

struct add_outcome {
  std::string id;
  bool stored = false;           ///< false when skipped
  std::string duplicate_of;      ///< set when identical content is already stored
  std::optional<store::item> item;  ///< the item as written, when stored (no read-after-write race)
};

struct search_hit {
  store::item item;
  float score = 0.0f;
  float distance = 0.0f;
};

struct search_result {
  std::string space;  ///< the space searched ("tags" for a pure tag query)
  std::vector<search_hit> hits;
};

/// A page of the collection (GET /v1/items with filters).
struct browse_request {
  store::tag_query filter;             ///< filters, order and paging (offset, limit)
  std::optional<std::string> like;     ///< order by similarity to this item instead
  std::string space;                   ///< with like: the vector space ("" = the item's default)
};

struct browse_page {
  std::vector<search_hit> hits;  ///< score is the similarity with like, else 0
  std::size_t total = 0;         ///< matching items (with like: at most this many can be ranked)
  std::string space;             ///< with like: the space searched
};

class search_service {
 public:
  search_service(std::filesystem::path data_dir, store::item_store& store, search::vector_spaces& spaces,
                 models::model_registry& models);

  /// @brief Defines the vector spaces of every ready model (and the signature space). Call once
  /// the registry has loaded; safe to call again.
  void define_spaces();

  /// @brief Analyses image bytes with every installed image model and stores the item.
  add_outcome add_image(std::string_view bytes, item_input input, write_mode mode);
  /// @brief Replaces only the metadata (extendInfo) of a stored item; returns the item as written.
  store::item update_metadata(std::string_view id, const nlohmann::json& metadata);
  /// @brief Deletes an item everywhere, its thumbnail included; false when it did not exist.
  bool remove(std::string_view id);
  /// @brief Replaces only the source (path or URL) of a stored item, e.g. after the watched file
  /// was renamed; nullopt when the item does not exist.
  std::optional<store::item> update_source(std::string_view id, std::string source);
  /// @brief Adds a section to stats(): f() is called on every stats() call (must be thread-safe).
  void add_stats_section(std::string name, std::function<nlohmann::json()> f);

  /// @brief The size and pixel limits every decode of an uploaded image applies.
  void set_decode_limits(image::decode_limits limits) { decode_limits_ = limits; }
  [[nodiscard]] image::decode_limits decode_limits() const { return decode_limits_; }
  /// @brief Removes thumbnails that no stored item references (left by a crash between a
  /// delete and its file removal) and stray temporary files; returns how many were removed.
  std::size_t sweep_thumbnails();
  [[nodiscard]] std::optional<store::item> get(std::string_view id) const;
  [[nodiscard]] std::vector<store::item> list(std::size_t offset, std::size_t limit) const;

  /// @brief One page of the items matching a filter, in the filter's order or by similarity to an
  /// item (search/browse.cpp).
  [[nodiscard]] browse_page browse(const browse_request& request) const;
  /// @brief The collection's tags by prefix with their item counts (store::item_store::tag_counts).
  [[nodiscard]] std::vector<store::tag_count> tag_counts(std::string_view prefix, std::size_t limit, float min_score,
                                                         const std::optional<std::string>& tagger) const;

  /// @brief Answers a search; errc::bad_parameter for an empty or contradictory request.
  [[nodiscard]] search_result search(const search_request& request) const;

  /// @brief Names of the vector spaces defined so far.
  [[nodiscard]] std::vector<std::string> space_names() const;
  /// @brief Counts per space, models used, store size.
  [[nodiscard]] nlohmann::json stats() const;
  /// @brief A JPEG thumbnail of a stored item, or nullopt.
  [[nodiscard]] std::optional<std::string> thumbnail(std::string_view id) const;

  /// @brief Persists the indexes (stamped with the store generation).
  void save_indexes();

  /// @brief The store and indexes, for read-only work beside the service (search/dedup.h).
  [[nodiscard]] const store::item_store& store() const noexcept { return store_; }
  [[nodiscard]] const search::vector_spaces& spaces() const noexcept { return spaces_; }
  /// @brief Writes merged items and removes their duplicates in one store call (one transaction on
  /// SQLite), then brings the indexes and thumbnails in line. Serialised with every other write.
  /// before_commit runs inside the transaction (a test hook; see search/dedup.cpp).
  void commit_merge(std::span<const store::item> kept, std::span<const std::string> removed,
                    const std::function<void()>& before_commit = {});

  /// @brief Hash used for de-duplication (SHA-256, hex).
  static std::string content_hash(std::string_view bytes);

 private:
  store::item analyse(const image::image_rgb8& image) const;
  std::vector<float> query_vector(const search_request& request, std::string& space) const;
  std::filesystem::path thumbnail_path(const std::string& hash) const;
  /// Image queries: near-duplicates of the query (signature candidates re-ranked by the fine stage)
  /// first, then the other hits (search/dedup.h explains the fine stage).
  std::vector<index::hit> near_duplicates_first(const image::image_rgb8& img, const std::string& space,
                                                std::span<const float> query, std::vector<index::hit> hits,
                                                std::size_t fetch, const index::id_filter* filter) const;

  std::filesystem::path data_dir_;
  store::item_store& store_;
  search::vector_spaces& spaces_;
  models::model_registry& models_;
  /// Removes the thumbnail of hash unless another item still uses it (call under write_mutex_).
  void drop_thumbnail_if_unused(const std::string& hash);
  /// Encodes a thumbnail into a temporary file of its own next to thumb; empty when the image
  /// cannot be encoded, errc::unavailable when the file cannot be written.
  std::string write_thumbnail_tmp(const image::image_rgb8& img, const std::filesystem::path& thumb,
                                  const std::string& id);

  std::mutex write_mutex_;
  mutable std::mutex stats_mutex_;
  std::vector<std::pair<std::string, std::function<nlohmann::json()>>> stats_sections_;
  image::decode_limits decode_limits_;
  std::atomic<std::uint64_t> next_tmp_{0};
};

/// Name of the model-free near-duplicate space.
inline constexpr std::string_view signature_space = "signature";

}  // namespace acg2vec::search