#pragma once
// Nearest-neighbour search over one vector space, keyed by the store's external item ids.
// Implementations are NOT internally synchronised; vector_spaces adds the locking.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace acg2vec::index {

/// How a space compares vectors. inner_product spaces hold L2-normalised vectors (normalised on
/// add and on query), so the inner product is the cosine similarity.
enum class metric { inner_product, l2 };

/// Which structure a FAISS index uses. automatic = flat below auto_hnsw_threshold vectors,
/// HNSW from there on.
enum class index_kind { automatic, flat, hnsw, ivf_pq };

/// One search result. score: higher is more similar (cosine for inner_product spaces,
/// 1 / (1 + distance) for l2 spaces). distance: Euclidean distance between the (normalised,
/// for inner_product) vectors, the measure the seed's Milvus collections used.
struct hit {
  std::string id;
  float score = 0.0f;
  float distance = 0.0f;
};

/// Predicate on item ids; only ids for which it returns true may be returned.
using id_filter = std::function<bool(std::string_view)>;

class vector_index {
 public:
  virtual ~vector_index() = default;

  /// @brief Adds or replaces the vector of an id. Throws bad_parameter on a wrong dimension,
  /// a non-finite value or a zero vector in an inner_product space.
  virtual void add(std::string_view id, std::span<const float> v) = 0;
  /// @brief Removes an id; false if it was not there.
  virtual bool remove(std::string_view id) = 0;
  /// @brief Up to k nearest live ids, best first; filter (optional) restricts the candidates.
  [[nodiscard]] virtual std::vector<hit> search(std::span<const float> query, std::size_t k,
                                                const id_filter* filter = nullptr) const = 0;
  [[nodiscard]] virtual bool contains(std::string_view id) const = 0;
  /// @brief Number of live vectors.
  [[nodiscard]] virtual std::size_t size() const = 0;
  [[nodiscard]] virtual int dim() const = 0;
  [[nodiscard]] virtual metric space_metric() const = 0;
  /// @brief Writes the index to file (atomically: a temporary file renamed over it), stamped with
  /// the store generation it reflects.
  virtual void save(const std::filesystem::path& file, std::uint64_t generation) const = 0;
  /// @brief Adds or replaces many rows (data: ids.size() rows of dim() floats). A remote index
  /// sends them in a few requests instead of one per row; the default adds them one by one.
  virtual void add_many(const std::vector<std::string>& ids, std::span<const float> data) {
    const auto d = static_cast<std::size_t>(dim());
    for (std::size_t i = 0; i < ids.size(); ++i) add(ids[i], data.subspan(i * d, d));
  }
};

/// @brief L2-normalises v in place; throws bad_parameter for a zero or non-finite vector.
void normalize(std::span<float> v);
/// @brief Throws bad_parameter unless v has dim entries, all finite.
void check_vector(std::span<const float> v, int dim, std::string_view what);
/// @brief Turns a raw FAISS distance (inner product, or squared L2) into a hit's score/distance.
void fill_score(hit& h, metric m, float raw);
/// @brief The k best of (raw FAISS distance, position) pairs as hits, best first (ties by
/// position); ids[position] names each hit. Reorders `scored`.
std::vector<hit> top_hits(std::vector<std::pair<float, std::size_t>>& scored, std::size_t k, metric m,
                          const std::vector<std::string>& ids);
/// @brief "inner_product" / "l2".
std::string_view to_string(metric m) noexcept;
/// @brief "automatic" / "flat" / "hnsw" / "ivf_pq".
std::string_view to_string(index_kind k) noexcept;
/// @brief Parses a kind name; throws bad_parameter for an unknown one.
index_kind parse_index_kind(std::string_view name);

}  // namespace acg2vec::index
