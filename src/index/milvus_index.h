#pragma once
// vector_index on a Milvus collection through Milvus's REST API v2 (/v2/vectordb/...), one
// collection per vector space: a VarChar primary key "id" (our external ids) and a FloatVector
// field "vector". Tested against tests/milvus_double/ (a double rebuilt from Milvus's server
// code); docs/scale-out.md lists the supported versions and what was and was not verified against
// a real Milvus.

#include "index/vector_index.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>

namespace acg2vec::index {

/// The oldest Milvus this client supports: REST v2 (/v2/vectordb/...) first shipped in 2.4.0.
inline constexpr const char* milvus_minimum_version = "2.4.0";
/// Milvus's dimension bounds for float vectors (proxy: validateDimension, 2..32768 by default).
inline constexpr int milvus_min_dim = 2;
inline constexpr int milvus_max_dim = 32768;

struct milvus_options {
  std::string host = "127.0.0.1";
  int port = 19530;
  std::string token;            ///< "user:password" or an API key; sent as Authorization: Bearer
  std::string db_name;          ///< empty: the server's default database
  std::string collection_prefix = "acg2vec_";  ///< letters, digits and '_' only
  std::string index_type = "HNSW";  ///< HNSW, IVF_FLAT, IVF_SQ8, FLAT or AUTOINDEX
  nlohmann::json index_params = {{"M", 16}, {"efConstruction", 200}};
  nlohmann::json search_params = nlohmann::json::object();  ///< e.g. {"ef": 64} or {"nprobe": 16}
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds timeout{10000};
  std::chrono::milliseconds load_timeout{120000};  ///< bound on waiting for LoadStateLoaded
  std::chrono::milliseconds retry_backoff{100};    ///< first pause between attempts, doubled each time
  int retries = 3;            ///< extra attempts for transport failures and retriable codes
  std::size_t insert_batch = 500;  ///< rows per upsert request
  std::size_t max_id_bytes = 512;  ///< VarChar max_length of the primary key
};

/// @brief Parses milvus://host[:port][?index=HNSW&M=16&efConstruction=200&ef=64&nlist=128&nprobe=16
/// &db=NAME&prefix=acg2vec_&token=user:password&timeout_ms=..&load_timeout_ms=..&retries=..].
/// Unknown keys, values out of Milvus's ranges and parameters that do not belong to the chosen
/// index (ef with IVF_FLAT, nprobe with HNSW) are bad_parameter.
milvus_options parse_milvus_uri(std::string_view uri);

/// @brief The collection that holds a vector space: prefix + the space name with every byte
/// outside [A-Za-z0-9] escaped ('_' as "__", any other byte as '_' + two lowercase hex digits,
/// e.g. '-' as "_2d"; a leading digit is escaped too when the prefix is empty). The escape is
/// prefix-free, so distinct spaces always get distinct names. bad_parameter when the result
/// exceeds Milvus's 255-character limit or the prefix is not a valid name start.
std::string milvus_collection_name(std::string_view prefix, std::string_view space);
/// @brief The inverse of milvus_collection_name; nullopt when collection is not prefix + a
/// well-formed escape.
std::optional<std::string> milvus_space_name(std::string_view prefix, std::string_view collection);

class milvus_http;

class milvus_index final : public vector_index {
 public:
  /// @brief Opens the collection of a space: describe; create it when missing; verify its schema
  /// (errc::conflict on any difference); create the vector index when missing; load it and wait
  /// for LoadStateLoaded (bounded by options.load_timeout). A collection left half-created by an
  /// earlier run (no index, not loaded) is repaired. errc::unavailable when Milvus does not
  /// answer, refuses the credentials or cannot load in time.
  milvus_index(const milvus_options& options, std::string space, int dim, metric m);
  ~milvus_index() override;
  milvus_index(const milvus_index&) = delete;
  milvus_index& operator=(const milvus_index&) = delete;

  void add(std::string_view id, std::span<const float> v) override;
  /// @brief Upserts many rows in requests of options.insert_batch rows. data: ids.size() rows.
  void add_batch(const std::vector<std::string>& ids, std::span<const float> data);
  void add_many(const std::vector<std::string>& ids, std::span<const float> data) override {
    add_batch(ids, data);
  }
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
  /// @brief The search parameters sent for a request of `limit` results (ef raised to limit).
  [[nodiscard]] nlohmann::json search_params_for(std::size_t limit) const;

 private:
  void open();
  void verify_schema(const nlohmann::json& description) const;
  void ensure_index();
  /// Loads the collection when it is not loaded and waits for LoadStateLoaded.
  void ensure_loaded() const;
  /// A read (search / query): when Milvus answers "collection not loaded" (101: a restart or a
  /// release), loads the collection and asks once more.
  nlohmann::json read(const std::string& path, const nlohmann::json& body) const;
  nlohmann::json prepare(std::span<const float> v) const;
  std::vector<hit> run_search(std::span<const float> query, std::size_t limit, const std::string& filter) const;

  milvus_options options_;
  std::string space_;
  std::string collection_;
  int dim_;
  metric metric_;
  std::unique_ptr<milvus_http> http_;
};

/// @brief A Milvus string literal for filter expressions: "..." with \ and " escaped.
std::string milvus_quote(std::string_view s);

}  // namespace acg2vec::index
