#include "index/similarity_join.h"

#include "core/clock.h"
#include "core/error.h"

#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/utils/distances.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>

namespace acg2vec::index {
namespace {

// A hit of one query vector: qv numbers the query vectors (row i's own is 2i, its alternative 2i+1).
struct hit {
  std::size_t qv = 0;
  std::size_t row = 0;
  float score = 0.0f;
};

// Keeps each query vector's best `neighbours` hits, then folds them into pairs (a < b) with the best score.
std::vector<row_pair> to_pairs(std::vector<hit> hits, std::size_t neighbours) {
  std::sort(hits.begin(), hits.end(), [](const hit& x, const hit& y) {
    if (x.qv != y.qv) return x.qv < y.qv;
    if (x.score != y.score) return x.score > y.score;
    return x.row < y.row;
  });
  std::vector<row_pair> pairs;
  std::size_t kept = 0;
  for (std::size_t i = 0; i < hits.size(); ++i) {
    if (i == 0 || hits[i].qv != hits[i - 1].qv) kept = 0;
    // The same row can reach a query through two clusters only once, but be safe against repeats.
    if (i > 0 && hits[i].qv == hits[i - 1].qv && hits[i].row == hits[i - 1].row) continue;
    if (kept++ >= neighbours) continue;
    const std::size_t row = hits[i].qv / 2;
    pairs.push_back({std::min(row, hits[i].row), std::max(row, hits[i].row), hits[i].score});
  }
  std::sort(pairs.begin(), pairs.end(), [](const row_pair& x, const row_pair& y) {
    if (x.a != y.a) return x.a < y.a;
    if (x.b != y.b) return x.b < y.b;
    return x.score > y.score;
  });
  pairs.erase(std::unique(pairs.begin(), pairs.end(),
                          [](const row_pair& x, const row_pair& y) { return x.a == y.a && x.b == y.b; }),
              pairs.end());
  return pairs;
}

// For each of nq query vectors (ids qvs), the rows of `base` (nb rows, ids base_rows) that reach the
// threshold and are not the query's own row, at most the best k of them. Queries go in blocks so that
// the range results stay bounded when many rows are alike.
void compare_block(const float* queries, std::span<const std::size_t> qvs, const float* base,
                   std::span<const std::size_t> base_rows, std::size_t d, std::size_t k, float threshold,
                   std::vector<hit>& out) {
  const std::size_t nb = base_rows.size();
  if (qvs.empty() || nb == 0) return;
  // FAISS keeps inner products strictly above the radius; ask a hair lower and apply >= here.
  const float radius = std::nextafter(threshold, -std::numeric_limits<float>::infinity());
  const std::size_t block = std::clamp<std::size_t>((std::size_t{1} << 23) / nb, 64, 8192);
  std::vector<hit> mine;
  for (std::size_t start = 0; start < qvs.size(); start += block) {
    const std::size_t count = std::min(block, qvs.size() - start);
    faiss::RangeSearchResult result(count);
    faiss::range_search_inner_product(queries + start * d, base, d, count, nb, radius, &result);
    for (std::size_t q = 0; q < count; ++q) {
      const std::size_t qv = qvs[start + q];
      mine.clear();
      for (std::size_t r = result.lims[q]; r < result.lims[q + 1]; ++r) {
        const std::size_t row = base_rows[static_cast<std::size_t>(result.labels[r])];
        if (result.distances[r] < threshold || row == qv / 2) continue;
        mine.push_back({qv, row, result.distances[r]});
      }
      if (mine.size() > k) {
        std::nth_element(mine.begin(), mine.begin() + static_cast<std::ptrdiff_t>(k), mine.end(),
                         [](const hit& x, const hit& y) { return x.score != y.score ? x.score > y.score : x.row < y.row; });
        mine.resize(k);
      }
      out.insert(out.end(), mine.begin(), mine.end());
    }
  }
}

}  // namespace

std::vector<row_pair> similarity_self_join(std::span<const float> data, int dim, std::span<const float> alt_queries,
                                           const self_join_options& options, self_join_stats* stats) {
  if (dim <= 0) fail(errc::bad_parameter, "self-join: dimension must be positive, got {}", dim);
  const auto d = static_cast<std::size_t>(dim);
  if (data.size() % d != 0) fail(errc::bad_parameter, "self-join: {} floats is not a whole number of rows", data.size());
  const std::size_t n = data.size() / d;
  if (!alt_queries.empty() && alt_queries.size() != data.size())
    fail(errc::bad_parameter, "self-join: {} alternative query floats for {} rows", alt_queries.size(), n);
  if (options.neighbours == 0) fail(errc::bad_parameter, "self-join: neighbours must be at least 1");
  self_join_stats local_stats;
  self_join_stats& st = stats ? *stats : local_stats;
  st = {};
  if (n < 2) return {};
  const std::size_t m = options.queries > 0 ? std::min(options.queries, n) : n;
  const bool alt = !alt_queries.empty();
  const std::size_t k = options.neighbours;
  std::vector<hit> hits;

  if (n <= options.exact_max) {
    st.exact = true;
    auto t0 = std::chrono::steady_clock::now();
    std::vector<std::size_t> rows(n);
    for (std::size_t i = 0; i < n; ++i) rows[i] = i;
    std::vector<std::size_t> qvs(m);
    for (std::size_t i = 0; i < m; ++i) qvs[i] = 2 * i;
    compare_block(data.data(), qvs, data.data(), rows, d, k, options.threshold, hits);
    if (alt) {
      for (std::size_t i = 0; i < m; ++i) qvs[i] = 2 * i + 1;
      compare_block(alt_queries.data(), qvs, data.data(), rows, d, k, options.threshold, hits);
    }
    st.compare_seconds = seconds_since(t0);
    st.mean_compared = static_cast<double>(n);
    return to_pairs(std::move(hits), options.neighbours);
  }

  // Clusters: spherical k-means on a sample, every row assigned to its nearest centroid.
  st.exact = false;
  auto t0 = std::chrono::steady_clock::now();
  std::size_t nlist = options.clusters > 0 ? options.clusters
                                           : static_cast<std::size_t>(std::lround(2.0 * std::sqrt(static_cast<double>(n))));
  nlist = std::clamp<std::size_t>(nlist, 1, n);
  const std::size_t probes = std::clamp<std::size_t>(options.probes, 1, nlist);
  st.clusters = nlist;
  st.probes = probes;
  faiss::ClusteringParameters cp;
  cp.niter = 10;
  cp.spherical = true;
  cp.max_points_per_centroid = 128;
  cp.seed = 1234;  // the same grouping on every run
  faiss::Clustering clustering(dim, nlist, cp);
  faiss::IndexFlatIP centroids(dim);
  try {
    clustering.train(static_cast<faiss::Index::idx_t>(n), data.data(), centroids);
  } catch (const std::exception& e) {
    fail(errc::internal, "self-join: clustering {} rows failed: {}", n, e.what());
  }
  // Each row's `probes` nearest clusters (the first is its own); the alternative queries' likewise.
  std::vector<float> unused(n * probes);
  std::vector<faiss::Index::idx_t> probe_of(n * probes);
  centroids.search(static_cast<faiss::Index::idx_t>(n), data.data(), static_cast<faiss::Index::idx_t>(probes), unused.data(),
                   probe_of.data());
  std::vector<faiss::Index::idx_t> alt_probe_of;
  if (alt) {
    alt_probe_of.resize(m * probes);
    unused.resize(m * probes);
    centroids.search(static_cast<faiss::Index::idx_t>(m), alt_queries.data(), static_cast<faiss::Index::idx_t>(probes),
                     unused.data(), alt_probe_of.data());
  }
  unused = {};
  // Rows by cluster, and query vectors by the clusters they search (counting sort, in row order).
  std::vector<std::size_t> member_start(nlist + 1, 0), query_start(nlist + 1, 0);
  for (std::size_t i = 0; i < n; ++i) ++member_start[static_cast<std::size_t>(probe_of[i * probes]) + 1];
  auto count_queries = [&](const std::vector<faiss::Index::idx_t>& p) {
    for (std::size_t i = 0; i < m; ++i)
      for (std::size_t j = 0; j < probes; ++j)
        if (p[i * probes + j] >= 0) ++query_start[static_cast<std::size_t>(p[i * probes + j]) + 1];
  };
  count_queries(probe_of);
  if (alt) count_queries(alt_probe_of);
  for (std::size_t c = 0; c < nlist; ++c) {
    member_start[c + 1] += member_start[c];
    query_start[c + 1] += query_start[c];
  }
  std::vector<std::size_t> members(n), queries(query_start[nlist]);
  {
    std::vector<std::size_t> fill(member_start.begin(), member_start.end() - 1);
    for (std::size_t i = 0; i < n; ++i) members[fill[static_cast<std::size_t>(probe_of[i * probes])]++] = i;
    fill.assign(query_start.begin(), query_start.end() - 1);
    auto place = [&](const std::vector<faiss::Index::idx_t>& p, std::size_t tag) {
      for (std::size_t i = 0; i < m; ++i)
        for (std::size_t j = 0; j < probes; ++j)
          if (p[i * probes + j] >= 0) queries[fill[static_cast<std::size_t>(p[i * probes + j])]++] = 2 * i + tag;
    };
    place(probe_of, 0);
    if (alt) place(alt_probe_of, 1);
  }
  probe_of = {};
  alt_probe_of = {};
  st.cluster_seconds = seconds_since(t0);

  // One matrix product per cluster: the queries that search it against its rows.
  t0 = std::chrono::steady_clock::now();
  std::vector<float> base, asked;
  double compared = 0;
  for (std::size_t c = 0; c < nlist; ++c) {
    std::span<const std::size_t> rows(members.data() + member_start[c], member_start[c + 1] - member_start[c]);
    std::span<const std::size_t> qvs(queries.data() + query_start[c], query_start[c + 1] - query_start[c]);
    if (rows.empty() || qvs.empty()) continue;
    base.resize(rows.size() * d);
    for (std::size_t r = 0; r < rows.size(); ++r)
      std::copy_n(data.data() + rows[r] * d, d, base.data() + r * d);
    asked.resize(qvs.size() * d);
    for (std::size_t q = 0; q < qvs.size(); ++q) {
      const std::size_t row = qvs[q] / 2;
      const float* src = (qvs[q] % 2 == 0 ? data.data() : alt_queries.data()) + row * d;
      std::copy_n(src, d, asked.data() + q * d);
    }
    compare_block(asked.data(), qvs, base.data(), rows, d, k, options.threshold, hits);
    compared += static_cast<double>(rows.size()) * static_cast<double>(qvs.size());
  }
  st.compare_seconds = seconds_since(t0);
  st.mean_compared = compared / static_cast<double>(alt ? 2 * m : m);
  return to_pairs(std::move(hits), options.neighbours);
}

std::vector<row_pair> all_pairs_scan(std::span<const float> data, int dim, float threshold, std::size_t rows) {
  if (dim <= 0) fail(errc::bad_parameter, "pair scan: dimension must be positive, got {}", dim);
  const auto d = static_cast<std::size_t>(dim);
  const std::size_t n = data.size() / d;
  const std::size_t m = rows > 0 ? std::min(rows, n) : n;
  std::vector<row_pair> out;
  // FAISS keeps inner products strictly above the radius; ask a hair lower and apply >= here.
  const float radius = std::nextafter(threshold, -std::numeric_limits<float>::infinity());
  constexpr std::size_t block = 4096;  // bounds the result buffers when many rows are alike
  for (std::size_t start = 0; start < m; start += block) {
    const std::size_t count = std::min(block, m - start);
    faiss::RangeSearchResult result(count);
    faiss::range_search_inner_product(data.data() + start * d, data.data(), d, count, n, radius, &result);
    for (std::size_t q = 0; q < count; ++q) {
      const std::size_t i = start + q;
      for (std::size_t r = result.lims[q]; r < result.lims[q + 1]; ++r) {
        const auto j = static_cast<std::size_t>(result.labels[r]);
        const float s = result.distances[r];
        if (s < threshold || j == i) continue;
        // Pairs with both rows scanned are seen twice; keep the one from the smaller row.
        if (j < m && j < i) continue;
        out.push_back({std::min(i, j), std::max(i, j), s});
      }
    }
  }
  std::sort(out.begin(), out.end(), [](const row_pair& x, const row_pair& y) {
    return x.a != y.a ? x.a < y.a : x.b < y.b;
  });
  return out;
}

}  // namespace acg2vec::index
