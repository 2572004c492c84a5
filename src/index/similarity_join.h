#pragma once
// The similarity self-join: every pair of rows of one matrix whose inner product reaches a threshold,
// without comparing every pair. Duplicate grouping (search/dedup) runs on it.
//
// Small inputs are joined exactly, all queries at once against all rows, as blocked matrix products.
// Larger ones are first cut into clusters by spherical k-means; each query is compared, again as one
// matrix product per cluster, with the rows of the few clusters nearest to it. Pairs whose two rows
// lie in clusters far apart in both rows' views are missed: `bench dedup` measures that recall
// against the exact scan.

#include <cstddef>
#include <span>
#include <vector>

namespace acg2vec::index {

/// Two rows (a < b) and their inner product.
struct row_pair {
  std::size_t a = 0;
  std::size_t b = 0;
  float score = 0.0f;
};

struct self_join_options {
  float threshold = 0.0f;
  /// Neighbours kept per query (best first): bounds the output when many rows are alike.
  std::size_t neighbours = 16;
  /// Query only the first `queries` rows (0 = all); their pairs with every row are found.
  std::size_t queries = 0;
  /// Up to this many rows the join is exact.
  std::size_t exact_max = 30000;
  /// Clusters (0 = about 2 * sqrt(rows)) and clusters searched per query.
  std::size_t clusters = 0;
  std::size_t probes = 32;
};

/// How a join ran, for reports and benchmarks.
struct self_join_stats {
  bool exact = true;
  std::size_t clusters = 0;
  std::size_t probes = 0;
  double cluster_seconds = 0.0;  ///< k-means and assignment
  double compare_seconds = 0.0;  ///< the per-cluster products
  double mean_compared = 0.0;    ///< rows compared per query
};

/// @brief Pairs of rows of `data` (rows of dim floats) with inner product >= options.threshold, each once.
/// Row i asks with its own vector and, when alt_queries is not empty, also with alt_queries' row i (for
/// example the signature of the mirrored image); the pair's score is the larger of what either found.
std::vector<row_pair> similarity_self_join(std::span<const float> data, int dim, std::span<const float> alt_queries,
                                           const self_join_options& options, self_join_stats* stats = nullptr);

/// @brief Every pair of rows with inner product >= threshold, by comparing all pairs (blocked matrix
/// products): the exact reference the self-join is measured against. rows > 0 limits the scan to pairs
/// touching the first `rows` rows.
std::vector<row_pair> all_pairs_scan(std::span<const float> data, int dim, float threshold, std::size_t rows = 0);

}  // namespace acg2vec::index
