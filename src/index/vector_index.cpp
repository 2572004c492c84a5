#include "index/vector_index.h"

#include "core/error.h"

#include <algorithm>
#include <cmath>

namespace acg2vec::index {

void check_vector(std::span<const float> v, int dim, std::string_view what) {
  if (v.size() != static_cast<std::size_t>(dim))
    fail(errc::bad_parameter, "{} has {} dimensions; the space has {}", what, v.size(), dim);
  for (float x : v) {
    if (!std::isfinite(x)) fail(errc::bad_parameter, "{} contains a non-finite value", what);
  }
}

void normalize(std::span<float> v) {
  double sum = 0.0;
  for (float x : v) sum += static_cast<double>(x) * x;
  if (!std::isfinite(sum) || sum <= 0.0)
    fail(errc::bad_parameter, "a zero or non-finite vector cannot be normalised");
  const auto inv = static_cast<float>(1.0 / std::sqrt(sum));
  for (float& x : v) x *= inv;
}

void fill_score(hit& h, metric m, float raw) {
  if (m == metric::inner_product) {
    h.score = raw;
    // |a - b|^2 = 2 - 2 a.b for unit vectors.
    h.distance = std::sqrt(std::max(0.0f, 2.0f - 2.0f * raw));
  } else {
    h.distance = std::sqrt(std::max(0.0f, raw));
    h.score = 1.0f / (1.0f + h.distance);
  }
}

std::string_view to_string(metric m) noexcept {
  return m == metric::inner_product ? "inner_product" : "l2";
}

std::string_view to_string(index_kind k) noexcept {
  switch (k) {
    case index_kind::automatic:
      return "automatic";
    case index_kind::flat:
      return "flat";
    case index_kind::hnsw:
      return "hnsw";
    case index_kind::ivf_pq:
      return "ivf_pq";
  }
  return "unknown";
}

index_kind parse_index_kind(std::string_view name) {
  for (auto k : {index_kind::automatic, index_kind::flat, index_kind::hnsw, index_kind::ivf_pq}) {
    if (name == to_string(k)) return k;
  }
  if (name == "auto") return index_kind::automatic;
  fail(errc::bad_parameter, "unknown index kind '{}' (automatic, flat, hnsw, ivf_pq)", name);
}

std::vector<hit> top_hits(std::vector<std::pair<float, std::size_t>>& scored, std::size_t k, metric m,
                          const std::vector<std::string>& ids) {
  const std::size_t n = std::min(k, scored.size());
  const bool ip = m == metric::inner_product;
  std::partial_sort(scored.begin(), scored.begin() + static_cast<std::ptrdiff_t>(n), scored.end(),
                    [ip](const auto& a, const auto& b) {
                      if (a.first != b.first) return ip ? a.first > b.first : a.first < b.first;
                      return a.second < b.second;
                    });
  std::vector<hit> hits(n);
  for (std::size_t i = 0; i < n; ++i) {
    hits[i].id = ids[scored[i].second];
    fill_score(hits[i], m, scored[i].first);
  }
  return hits;
}

}  // namespace acg2vec::index
