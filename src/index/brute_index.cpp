#include "index/brute_index.h"

#include "core/error.h"

#include <algorithm>
#include <cstring>

namespace acg2vec::index {

brute_index::brute_index(int dim, metric m) : dim_(dim), metric_(m) {
  if (dim <= 0) fail(errc::bad_parameter, "vector dimension must be positive, not {}", dim);
}

void brute_index::add(std::string_view id, std::span<const float> v) {
  check_vector(v, dim_, "vector");
  std::vector<float> row(v.begin(), v.end());
  if (metric_ == metric::inner_product) normalize(row);
  const auto d = static_cast<std::size_t>(dim_);
  if (auto it = row_of_.find(id); it != row_of_.end()) {
    std::memcpy(data_.data() + it->second * d, row.data(), d * sizeof(float));
    return;
  }
  row_of_.emplace(std::string(id), ids_.size());
  ids_.emplace_back(id);
  data_.insert(data_.end(), row.begin(), row.end());
}

bool brute_index::remove(std::string_view id) {
  const auto it = row_of_.find(id);
  if (it == row_of_.end()) return false;
  const std::size_t row = it->second;
  const std::size_t last = ids_.size() - 1;
  const auto d = static_cast<std::size_t>(dim_);
  row_of_.erase(it);
  if (row != last) {
    // Move the last row into the hole.
    std::memcpy(data_.data() + row * d, data_.data() + last * d, d * sizeof(float));
    ids_[row] = std::move(ids_[last]);
    row_of_[ids_[row]] = row;
  }
  ids_.pop_back();
  data_.resize(last * d);
  return true;
}

std::vector<hit> brute_index::search(std::span<const float> query, std::size_t k,
                                     const id_filter* filter) const {
  check_vector(query, dim_, "query vector");
  std::vector<float> q(query.begin(), query.end());
  if (metric_ == metric::inner_product) normalize(q);
  const auto d = static_cast<std::size_t>(dim_);
  // (raw, row); for l2 the raw value is the squared distance, smaller is better.
  std::vector<std::pair<float, std::size_t>> scored;
  scored.reserve(ids_.size());
  for (std::size_t row = 0; row < ids_.size(); ++row) {
    if (filter != nullptr && !(*filter)(ids_[row])) continue;
    const float* x = data_.data() + row * d;
    float raw = 0.0f;
    if (metric_ == metric::inner_product) {
      for (std::size_t j = 0; j < d; ++j) raw += q[j] * x[j];
    } else {
      for (std::size_t j = 0; j < d; ++j) {
        const float diff = q[j] - x[j];
        raw += diff * diff;
      }
    }
    scored.emplace_back(raw, row);
  }
  return top_hits(scored, k, metric_, ids_);
}

bool brute_index::contains(std::string_view id) const { return row_of_.find(id) != row_of_.end(); }

void brute_index::save(const std::filesystem::path& file, std::uint64_t) const {
  fail(errc::not_implemented, "the brute-force index cannot be saved ({})", file.string());
}

}  // namespace acg2vec::index
