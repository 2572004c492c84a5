#pragma once
// Exact search by scanning every vector: the reference the FAISS indexes are tested against.

#include "index/vector_index.h"

#include <string>
#include <unordered_map>
#include <vector>

namespace acg2vec::index {

class brute_index final : public vector_index {
 public:
  brute_index(int dim, metric m);

  void add(std::string_view id, std::span<const float> v) override;
  bool remove(std::string_view id) override;
  [[nodiscard]] std::vector<hit> search(std::span<const float> query, std::size_t k,
                                        const id_filter* filter = nullptr) const override;
  [[nodiscard]] bool contains(std::string_view id) const override;
  [[nodiscard]] std::size_t size() const override { return ids_.size(); }
  [[nodiscard]] int dim() const override { return dim_; }
  [[nodiscard]] metric space_metric() const override { return metric_; }
  /// @brief Not supported: the reference index lives in memory only (throws not_implemented).
  void save(const std::filesystem::path& file, std::uint64_t generation) const override;

 private:
  struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };

  int dim_;
  metric metric_;
  std::vector<float> data_;  // row i belongs to ids_[i]
  std::vector<std::string> ids_;
  std::unordered_map<std::string, std::size_t, string_hash, std::equal_to<>> row_of_;
};

}  // namespace acg2vec::index
