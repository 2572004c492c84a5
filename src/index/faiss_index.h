#pragma once
// vector_index on FAISS. Vectors live at sequential FAISS positions; a position's external id is
// kept beside the index (saved in the same file), so arbitrary string ids map to FAISS's int64
// labels. Removal marks the position dead (HNSW and IVF-PQ cannot delete in place); searches skip
// dead positions by over-fetching, and the index is compacted when dead positions pass a fraction.

#include "index/vector_index.h"

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace faiss {
struct Index;
}

namespace acg2vec::index {

struct faiss_options {
  /// Space name, for log lines.
  std::string name;
  index_kind kind = index_kind::automatic;
  /// automatic: switch from flat to HNSW at this many live vectors.
  std::size_t auto_hnsw_threshold = 50000;
  int hnsw_m = 32;
  int hnsw_ef_construction = 40;
  int hnsw_ef_search = 128;
  /// ivf_pq: stay flat (exact) until this many vectors exist to train on.
  std::size_t ivf_min_train = 10000;
  /// ivf_pq: inverted lists; 0 = sqrt(vectors at training time).
  std::size_t ivf_nlist = 0;
  /// ivf_pq: sub-quantizers (bytes per code); must divide the dimension; 0 = the largest divisor
  /// of the dimension up to min(64, dim / 4).
  std::size_t ivf_pq_m = 0;
  /// ivf_pq: inverted lists probed per query; 0 = max(16, nlist / 8).
  int ivf_nprobe = 0;
  /// ivf_pq: candidates re-ranked with the exact vectors, as a multiple of k. PQ distances alone
  /// are coarse; 32 candidates per result keep recall@10 near 1 for little cost.
  float ivf_refine_factor = 32.0f;
  /// Compact when dead positions exceed this fraction of all positions.
  double max_dead_fraction = 0.2;
};

class faiss_index final : public vector_index {
 public:
  faiss_index(int dim, metric m, faiss_options options = {});
  ~faiss_index() override;
  faiss_index(const faiss_index&) = delete;
  faiss_index& operator=(const faiss_index&) = delete;

  /// @brief Reads a file written by save(). Throws acg2vec::error (internal) if it is truncated,
  /// fails its checksum or FAISS cannot read it. *generation receives the stamped generation.
  static std::unique_ptr<faiss_index> load(const std::filesystem::path& file, faiss_options options,
                                           std::uint64_t* generation);

  /// @brief Replaces the whole content in one go (faster than add() one by one for a rebuild).
  /// data holds ids.size() rows of dim() floats.
  void assign(std::vector<std::string> ids, std::vector<float> data);

  void add(std::string_view id, std::span<const float> v) override;
  bool remove(std::string_view id) override;
  [[nodiscard]] std::vector<hit> search(std::span<const float> query, std::size_t k,
                                        const id_filter* filter = nullptr) const override;
  [[nodiscard]] bool contains(std::string_view id) const override;
  [[nodiscard]] std::size_t size() const override { return pos_of_.size(); }
  [[nodiscard]] int dim() const override { return dim_; }
  [[nodiscard]] metric space_metric() const override { return metric_; }
  void save(const std::filesystem::path& file, std::uint64_t generation) const override;

  /// @brief Changes the search-time settings (efSearch, nprobe, re-ranking factor) without a
  /// rebuild; 0 for nprobe keeps the built default. Not to be called while searches run.
  void set_search_options(int hnsw_ef_search, int ivf_nprobe, float ivf_refine_factor);
  /// @brief The structure in use now (never automatic).
  [[nodiscard]] index_kind current_kind() const noexcept { return kind_; }
  /// @brief Positions held by FAISS, dead ones included.
  [[nodiscard]] std::size_t positions() const noexcept { return id_at_.size(); }

 private:
  struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };

  [[nodiscard]] index_kind wanted_kind(std::size_t live) const;
  void build(index_kind kind, std::vector<std::string> ids, std::vector<float> data);
  void compact(index_kind kind);
  void after_change();
  [[nodiscard]] const float* stored_vectors() const;
  [[nodiscard]] std::vector<hit> exact_search(const float* q, std::size_t k, const id_filter* filter) const;

  int dim_;
  metric metric_;
  faiss_options options_;
  index_kind kind_ = index_kind::flat;
  std::size_t trained_on_ = 0;  // ivf_pq: vectors the quantizers were trained with
  std::unique_ptr<faiss::Index> index_;
  std::vector<std::string> id_at_;  // by FAISS position; empty = dead
  std::unordered_map<std::string, std::int64_t, string_hash, std::equal_to<>> pos_of_;
};

}  // namespace acg2vec::index
