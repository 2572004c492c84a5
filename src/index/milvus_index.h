#pragma once
// vector_index on a Milvus collection through Milvus's REST API v2 (/v2/vectordb/...), one
// collection per vector space: a VarChar primary key "id" (our external ids) and a FloatVector
// field "vector". Only tested against tests/milvus_double/ (a local double of that protocol);
// docs/scale-out.md lists what was and was not verified against a real Milvus.

#include "index/vector_index.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>

namespace acg2vec::index {

struct milvus_options {
  std::string host = "127.0.0.1";
  int port = 19530;
  std::string token;            ///< "user:password" or an API key; sent as Authorization: Bearer
  std::string db_name;          ///< empty: the server's default database
  std::string collection_prefix = "acg2vec_";
  std::string index_type = "HNSW";  ///< index created with the collection (HNSW, IVF_FLAT, FLAT, AUTOINDEX...)
  nlohmann::json index_params = {{"M", 16}, {"efConstruction", 200}};
  nlohmann::json search_params = nlohmann::json::object();  ///< e.g. {"ef": 64} or {"nprobe": 16}
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds timeout{10000};
  int retries = 3;            ///< extra attempts for transport failures and retriable codes
  std::size_t insert_batch = 500;  ///< rows per insert request
  std::size_t max_id_bytes = 512;  ///< VarChar max_length of the primary key
};

/// @brief Parses milvus://host:port[?token=..&db=..&prefix=..&index_type=..&timeout_ms=..].
milvus_options parse_milvus_uri(std::string_view uri);

class milvus_http;

class milvus_index final : public vector_index {
 public:
  /// @brief Opens (creating if missing) the collection <prefix><space>. errc::conflict when it
  /// exists with another dimension or metric; errc::unavailable when Milvus does not answer.
  milvus_index(const milvus_options& options, std::string space, int dim, metric m);
  ~milvus_index() override;
  milvus_index(const milvus_index&) = delete;
  milvus_index& operator=(const milvus_index&) = delete;

  void add(std::string_view id, std::span<const float> v) override;
  /// @brief Upserts many rows in requests of options.insert_batch rows. data: ids.size() rows.
  void add_batch(const std::vector<std::string>& ids, std::span<const float> data);
  bool remove(std::string_view id) override;
  /// @brief The filter predicate runs here on candidates Milvus returns; the request is repeated
  /// with a larger limit while too few pass (up to Milvus's 16384 cap).
  [[nodiscard]] std::vector<hit> search(std::span<const float> query, std::size_t k,
                                        const id_filter* filter = nullptr) const override;
  /// @brief Search with a Milvus boolean filter expression evaluated by the server.
  [[nodiscard]] std::vector<hit> search_expr(std::span<const float> query, std::size_t k,
                                             const std::string& filter_expression) const;
  [[nodiscard]] bool contains(std::string_view id) const override;
  [[nodiscard]] std::size_t size() const override;
  [[nodiscard]] int dim() const override { return dim_; }
  [[nodiscard]] metric space_metric() const override { return metric_; }
  /// @brief Nothing to write: Milvus persists the collection itself.
  void save(const std::filesystem::path& file, std::uint64_t generation) const override;
  /// @brief Drops the collection (tests, and rebuilding a space from the store).
  void drop();
  [[nodiscard]] const std::string& collection() const noexcept { return collection_; }

 private:
  nlohmann::json prepare(std::span<const float> v) const;
  std::vector<hit> run_search(std::span<const float> query, std::size_t limit, const std::string& filter) const;

  milvus_options options_;
  std::string collection_;
  int dim_;
  metric metric_;
  std::unique_ptr<milvus_http> http_;
};

/// @brief A Milvus string literal for filter expressions: "..." with \ and " escaped.
std::string milvus_quote(std::string_view s);

}  // namespace acg2vec::index
