#pragma once
// item_store on one SQLite database file in WAL mode: one writer connection behind a mutex,
// a small pool of read-only connections so reads never wait for a write to finish.

#include "store/item_store.h"

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <vector>

namespace acg2vec::store {

struct sqlite_options {
  /// synchronous=FULL fsyncs the WAL on every commit, so an acknowledged write survives a
  /// power loss as well as a killed process. NORMAL survives only the latter; it is faster
  /// for many small writes but batches already amortise the fsync.
  bool full_sync = true;
  int busy_timeout_ms = 5000;
  std::size_t max_readers = 4;
  /// Upper bound on the database size in pages (PRAGMA max_page_count); 0 = SQLite's default.
  /// Reaching it fails writes exactly like a full disk.
  std::int64_t max_pages = 0;
};

class sqlite_connection;

class sqlite_store final : public item_store {
 public:
  /// @brief Opens (creating if needed) the database file and migrates its schema.
  explicit sqlite_store(const std::filesystem::path& file, sqlite_options options = {});
  ~sqlite_store() override;
  sqlite_store(const sqlite_store&) = delete;
  sqlite_store& operator=(const sqlite_store&) = delete;

  std::uint64_t insert(const item& it) override;
  std::uint64_t upsert(const item& it) override;
  std::uint64_t insert_batch(std::span<const item> items) override;
  std::uint64_t upsert_batch(std::span<const item> items) override;
  bool remove(std::string_view id) override;
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
  [[nodiscard]] std::vector<tag_count> tag_counts(std::string_view prefix, std::size_t limit, float min_score,
                                                  const std::optional<std::string>& tagger) const override;
  [[nodiscard]] std::map<std::string, space_count> vector_counts() const override;
  [[nodiscard]] std::uint64_t generation() const override;

  /// @brief The schema version this build writes (PRAGMA user_version after migration).
  static int schema_version() noexcept;
  [[nodiscard]] const std::filesystem::path& file() const noexcept { return file_; }

 private:
  class reader_lease;
  enum class write_mode { insert, upsert };

  std::uint64_t write(std::span<const item> items, write_mode mode);
  void write_rows(sqlite_connection& c, std::span<const item> items, write_mode mode,
                  const std::vector<std::string>& metadata_text);
  reader_lease acquire_reader() const;
  void release_reader(std::unique_ptr<sqlite_connection> c) const;

  std::filesystem::path file_;
  sqlite_options options_;
  std::mutex write_mutex_;
  std::unique_ptr<sqlite_connection> writer_;
  mutable std::mutex readers_mutex_;
  mutable std::condition_variable readers_cv_;
  mutable std::vector<std::unique_ptr<sqlite_connection>> idle_readers_;
  mutable std::size_t open_readers_ = 0;
  std::atomic<std::uint64_t> generation_{0};
};

}  // namespace acg2vec::store
