#pragma once
// item_store on Redis (or any server speaking its protocol, e.g. Tendis), standalone or
// Redis Cluster. Key layout, atomicity and cluster design: docs/scale-out.md.
//
// Per item (hash tag {id}, so both keys live on one cluster slot):
//   <prefix>:item:{id}   hash: the item's fields, tags and scores as JSON, its order key
//   <prefix>:vec:{id}    hash: vector space -> raw float32 bytes
// Collection-wide indexes (hash tag {<prefix>}, all on one slot):
//   <prefix>:{<prefix>}:gen, :seq, :order (newest-first zset), :hash:<h>, :tag:<t>,
//   :space:<s> (zset id -> dim), :spaces (set of space names)

#include "store/item_store.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace acg2vec::store {

struct redis_options {
  /// host:port pairs; in cluster mode any reachable node is enough to discover the others.
  std::vector<std::pair<std::string, int>> nodes;
  std::string username;  ///< ACL user (empty: legacy AUTH with the password only)
  std::string password;  ///< empty: no AUTH
  int db = 0;            ///< SELECT; must be 0 on a cluster
  std::string prefix = "acg2vec";  ///< namespace of every key, [A-Za-z0-9_.-]+
  std::chrono::milliseconds connect_timeout{1000};
  std::chrono::milliseconds command_timeout{3000};
  /// After a failed connect, further attempts wait 50 ms, doubling up to this.
  std::chrono::milliseconds max_backoff{1000};
};

/// @brief Parses redis://[[user]:password@]host:port[,host:port...][/db][?prefix=..&timeout_ms=..
/// &connect_timeout_ms=..]. Throws bad_parameter.
redis_options parse_redis_uri(std::string_view uri);

namespace redis_detail {
class redis_cluster_link;
}

class redis_store final : public item_store {
 public:
  /// @brief Connects (detecting standalone vs cluster); errc::unavailable if no node answers.
  explicit redis_store(redis_options options);
  ~redis_store() override;
  redis_store(const redis_store&) = delete;
  redis_store& operator=(const redis_store&) = delete;

  std::uint64_t insert(const item& it) override;
  std::uint64_t upsert(const item& it) override;
  std::uint64_t insert_batch(std::span<const item> items) override;
  std::uint64_t upsert_batch(std::span<const item> items) override;
  bool remove(std::string_view id) override;
  /// @brief Duplicate resolve through a journal (see redis_store.cpp, "Resolve journal"): the whole
  /// change is recorded in one command first, then applied; a process killed in between leaves the
  /// journal, and the next access of any redis_store on this prefix finishes it, so readers see the
  /// old state or the new one. before_commit runs with the journal written, the upserts applied and
  /// the removals not yet made (the point where a crash used to leave a mix).
  std::uint64_t upsert_and_remove(std::span<const item> upserts, std::span<const std::string> removals,
                                  const std::function<void()>& before_commit = {}) override;

  [[nodiscard]] std::optional<item> get(std::string_view id) const override;
  [[nodiscard]] bool contains(std::string_view id) const override;
  [[nodiscard]] std::optional<std::string> find_by_hash(std::string_view hash) const override;
  [[nodiscard]] std::size_t count() const override;
  [[nodiscard]] std::vector<item> list(std::size_t offset, std::size_t limit,
                                       bool with_vectors) const override;
  void for_each_vector(
      std::string_view space,
      const std::function<void(const std::string& id, std::span<const float> v)>& f) const override;
  [[nodiscard]] std::vector<std::string> search_tags(const tag_query& query) const override;
  [[nodiscard]] std::map<std::string, space_count> vector_counts() const override;
  [[nodiscard]] std::uint64_t generation() const override;

  /// @brief True when connected to a Redis Cluster (slot routing on).
  [[nodiscard]] bool cluster_mode() const noexcept;
  /// @brief Deletes every key of this store's prefix (tests and migrations into a fresh store).
  void clear();

 private:
  enum class write_mode { insert, upsert };
  std::uint64_t write(std::span<const item> items, write_mode mode);
  /// Finishes resolves that a killed process left in the journal (once per store object, before its
  /// first read or write; again after a failure to reach the server).
  void finish_journal() const;
  std::uint64_t apply_journal_entry(std::string_view token, std::string_view payload,
                                    const std::function<void()>& before_commit);
  mutable std::atomic<bool> journal_checked_{false};
  mutable std::mutex journal_mutex_;

  redis_options options_;
  mutable std::mutex mutex_;  // one command stream per node: calls take turns
  std::unique_ptr<redis_detail::redis_cluster_link> link_;
};

}  // namespace acg2vec::store
