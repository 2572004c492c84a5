#pragma once
// The item store is the source of truth for everything acg2vec knows about an illustration:
// identity, provenance, the seed's free-form extendInfo, tags, scores and embedding vectors.
// Vector indexes are derived data and are rebuilt from here (see search/vector_spaces.h).

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace acg2vec::store {

/// Longest accepted external id, in bytes.
inline constexpr std::size_t max_id_bytes = 256;

/// One illustration. Times are milliseconds since the Unix epoch; 0 means "set it for me".
struct item {
  std::string id;           ///< external id; the seed's integer itemId is kept as its decimal text
  bool numeric_id = false;  ///< true when the id was given as a JSON integer (it goes back out as one)
  std::string source;       ///< path or URL the image came from
  std::string content_hash; ///< hash of the image bytes, for de-duplication
  int width = 0;
  int height = 0;
  nlohmann::json metadata;  ///< the seed's extendInfo: a JSON object (or null)
  /// Per tagger ("deepdanbooru", ...): (tag, score) pairs.
  std::map<std::string, std::vector<std::pair<std::string, float>>> tags;
  /// Per scorer ("pix2score", ...): named values.
  std::map<std::string, std::map<std::string, float>> scores;
  /// Per vector space ("illust2vec", "signature", ...): the raw embedding.
  std::map<std::string, std::vector<float>> vectors;
  std::int64_t created_at = 0;
  std::int64_t updated_at = 0;
};

/// Minimum for one scorer output, e.g. {"pix2score", "bookmark", 0.5}.
struct score_minimum {
  std::string scorer;
  std::string name;
  float minimum = 0.0f;
};

/// Maximum for one scorer output (value <= maximum), e.g. {"nsfw", "porn", 0.2}.
struct score_maximum {
  std::string scorer;
  std::string name;
  float maximum = 0.0f;
};

/// One scorer output, e.g. {"pix2score", "bookmark"}.
struct score_key {
  std::string scorer;
  std::string name;
};

/// How many items carry a tag (see item_store::tag_counts).
struct tag_count {
  std::string tag;
  std::size_t items = 0;
};

/// Tag search. A tag "is on" an item when some tagger (or `tagger`, if set) gave it a score
/// >= min_score. Results are newest first unless order_by_score / ascending say otherwise.
/// Rating tags come in two spellings: "rating:<rating>" (DeepDanbooru-style packs) and the four bare
/// names WD-style taggers give their rating category (category 9 in the pack's tag list; the stored
/// tag keeps only its name, and these four names are not general tags in those lists).
inline constexpr std::string_view bare_rating_tags[] = {"general", "sensitive", "questionable", "explicit"};
/// @brief Whether a stored tag name is a rating tag (either spelling).
inline bool is_rating_tag(std::string_view tag) noexcept {
  if (tag.starts_with("rating:")) return true;
  for (auto r : bare_rating_tags) {
    if (tag == r) return true;
  }
  return false;
}
/// @brief The rating a rating tag names ("rating:explicit" and "explicit" both name "explicit").
inline std::string_view rating_of_tag(std::string_view tag) noexcept {
  return tag.starts_with("rating:") ? tag.substr(7) : tag;
}

struct tag_query {
  std::vector<std::string> all_of;   ///< every one of these tags is on the item
  std::vector<std::string> any_of;   ///< at least one of these is on the item (ignored when empty)
  std::vector<std::string> none_of;  ///< none of these is on the item
  std::optional<std::string> tagger; ///< only this tagger's tags count
  float min_score = 0.0f;
  /// Rating such as "safe" / "questionable" / "explicit": for some tagger, the item's highest-scoring
  /// rating tag (is_rating_tag: "rating:*" or a bare WD rating name) must name <rating>.
  std::optional<std::string> rating;
  std::vector<score_minimum> score_minimums;
  std::vector<score_maximum> score_maximums;  ///< an item without that output never matches
  /// Order by this scorer output, highest first; items without it come after all that have it.
  std::optional<score_key> order_by_score;
  /// Reverses the order: oldest first, or lowest score first (items without the score still last).
  bool ascending = false;
  std::size_t offset = 0;
  std::size_t limit = 0;  ///< 0 = no limit
};

/// Per vector space: how many items carry a vector and its dimension.
struct space_count {
  std::size_t count = 0;
  int dim = 0;
};

/// @brief Throws errc::bad_parameter unless id is non-empty, at most 256 bytes and valid UTF-8.
void validate_item_id(std::string_view id);
/// @brief validate_item_id plus what a new item's id must also satisfy to be reachable over HTTP:
/// no empty, "." or ".." path segment, and no "/thumbnail" ending.
void validate_new_item_id(std::string_view id);
/// @brief Throws errc::bad_parameter unless name matches [A-Za-z0-9_.-]{1,64} and is not "." or "..".
/// Space names become file names of the index files, hence the strict alphabet.
void validate_space_name(std::string_view name);
/// @brief Checks every field of an item (id, space names, finite vectors, tag names, metadata shape).
void validate_item(const item& it);
/// @brief The checks every backend makes on a write batch before touching storage: each item is
/// validated, an insert batch may not name an id twice (conflict), and each item's metadata must
/// serialise. Returns the serialised metadata, one per item, in order.
std::vector<std::string> prepare_write_batch(std::span<const item> items, bool insert);
/// @brief Reads an id from JSON: an integer (numeric_id = true) or a string. Throws bad_parameter.
std::pair<std::string, bool> item_id_from_json(const nlohmann::json& value);
/// @brief The id as JSON: an integer when it was given as one, a string otherwise.
nlohmann::json item_id_to_json(const item& it);

/// Storage for items. Implementations are safe to use from many threads at once. Every write is
/// atomic (an item is stored completely or not at all) and durable once the call returns.
class item_store {
 public:
  virtual ~item_store() = default;

  /// @brief Stores a new item; errc::conflict if the id exists. Returns the new generation.
  virtual std::uint64_t insert(const item& it) = 0;
  /// @brief Stores or replaces an item (created_at of an existing item is kept). Returns the generation.
  virtual std::uint64_t upsert(const item& it) = 0;
  /// @brief Inserts all items in one transaction: on any failure none of them is stored.
  virtual std::uint64_t insert_batch(std::span<const item> items) = 0;
  /// @brief Upserts all items in one transaction.
  virtual std::uint64_t upsert_batch(std::span<const item> items) = 0;
  /// @brief Deletes an item with everything attached to it; false if it did not exist.
  virtual bool remove(std::string_view id) = 0;
  /// @brief Upserts `upserts` and deletes `removals` together (duplicate resolve). The SQLite store
  /// does it in ONE transaction, the Redis store through a journal finished by the next opening (see
  /// redis_store.h); either way a crash leaves all of it or none. This default (for other backends)
  /// writes the upserts first and then deletes one by one, so a crash in between leaves the merged
  /// items beside the ones not yet deleted. before_commit runs after the writes, before the commit
  /// (tests use it to stop a process mid-transaction).
  virtual std::uint64_t upsert_and_remove(std::span<const item> upserts, std::span<const std::string> removals,
                                          const std::function<void()>& before_commit = {});

  /// @brief The complete item, or nullopt.
  [[nodiscard]] virtual std::optional<item> get(std::string_view id) const = 0;
  [[nodiscard]] virtual bool contains(std::string_view id) const = 0;
  /// @brief Id of an item with this content hash (the oldest), or nullopt.
  [[nodiscard]] virtual std::optional<std::string> find_by_hash(std::string_view hash) const = 0;
  [[nodiscard]] virtual std::size_t count() const = 0;
  /// @brief Items newest first; vectors are loaded only when with_vectors is set.
  [[nodiscard]] virtual std::vector<item> list(std::size_t offset, std::size_t limit,
                                               bool with_vectors) const = 0;
  /// @brief Calls f for every stored vector of one space (used to rebuild indexes).
  virtual void for_each_vector(
      std::string_view space,
      const std::function<void(const std::string& id, std::span<const float> v)>& f) const = 0;
  /// @brief Ids matching a tag query, newest first.
  [[nodiscard]] virtual std::vector<std::string> search_tags(const tag_query& query) const = 0;
  /// @brief Tags whose name starts with prefix (byte-wise; "" = all) and the number of items each is
  /// on in the sense of tag_query (score >= min_score; only tagger's tags when set), most items first,
  /// then by name; at most limit rows (0 = all). The default scans every item; backends with a tag
  /// table answer from it.
  [[nodiscard]] virtual std::vector<tag_count> tag_counts(std::string_view prefix, std::size_t limit,
                                                          float min_score,
                                                          const std::optional<std::string>& tagger) const;
  /// @brief Vector counts per space.
  [[nodiscard]] virtual std::map<std::string, space_count> vector_counts() const = 0;
  /// @brief A number that grows with every committed write; persisted, so indexes saved
  /// at generation g are known to be current when the store still reports g.
  [[nodiscard]] virtual std::uint64_t generation() const = 0;
};

}  // namespace acg2vec::store
