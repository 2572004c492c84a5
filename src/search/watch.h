#pragma once
// Watch folders: keeps the collection in step with directory trees that change.
//
// Each watched root has a record of the files it has seen (size, mtime, content hash, the item
// it became), kept in <data-dir>/watch/. Changes reach the watcher as inotify events (recursive:
// every directory has a watch), which only mark paths as dirty; once the tree has been quiet for
// a settle period the dirty paths are rescanned and compared with the record (plan_changes), so
// a file being written is read once, after it settles. A reconcile pass (the same comparison over
// the whole tree) runs at start-up, after an inotify queue overflow and whenever a watch could
// not be kept, so changes made while no watcher ran are caught too.
//
// Files become items through ingest_file, the path `acg2vec ingest` uses. A renamed or moved file
// is recognised by its content hash and stays the same item (id, tags and metadata kept; its
// source is updated). The watcher only ever removes items it created itself (or that were
// ingested from that very file): items added by other routes are left alone.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "search/service.h"

namespace acg2vec::search {

// ---- ingesting one file (shared with `acg2vec ingest`) ----

enum class ingest_status {
  stored,      ///< a new item was stored (or an existing one replaced, for write_mode::upsert)
  existing,    ///< the id is already stored
  duplicate,   ///< identical content is stored under another id (ingest_result::id names it)
  not_image,   ///< the bytes are not in an image format acg2vec reads (by their signature)
  failed,      ///< an image file that could not be decoded or analysed (ingest_result::error says why)
};

struct ingest_result {
  ingest_status status = ingest_status::failed;
  std::string id;     ///< the item the file is now (or already was), when it is one
  std::string hash;   ///< content hash of the bytes read
  std::string error;  ///< for failed
};


/// @brief One file's bytes into the collection, as `acg2vec ingest` and the watcher do it:
/// non-images are skipped (not_image), the image is analysed and stored with add_image(mode);
/// a file that cannot be decoded or analysed comes back as failed with the reason (errors that
/// concern the service rather than the file, unavailable and internal, are thrown).
ingest_result ingest_bytes(search_service& service, std::string_view bytes, item_input input, write_mode mode);

// ---- planning (pure functions, unit-tested) ----


/// A regular file as a scan saw it.
struct file_stat {
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;
  bool operator==(const file_stat&) const = default;
};

/// What the watcher remembers of one file under a root.
struct file_record {
  file_stat stat;
  std::string hash;   ///< content hash of the bytes last read
  std::string id;     ///< the item it is; empty when it is not one (not an image, or failed)
  bool owned = false; ///< the watcher created the item (or adopted it): only then may it remove it
  std::string error;  ///< why it failed to become an item; empty otherwise
};

/// Relative path (generic, '/'-separated) → record / stat.
using tree_state = std::map<std::string, file_record>;
using tree_scan = std::map<std::string, file_stat>;

/// What to do to bring the collection in step with a scan.
struct change_plan {
  std::vector<std::string> add;                              ///< new paths
  std::vector<std::string> update;                           ///< size/mtime and content changed
  std::vector<std::string> touch;                            ///< size/mtime changed, content did not
  std::vector<std::pair<std::string, std::string>> move;     ///< (from, to): same content, new path
  std::vector<std::string> remove;                           ///< gone from the tree
  [[nodiscard]] bool empty() const {
    return add.empty() && update.empty() && touch.empty() && move.empty() && remove.empty();
  }
};

/// Content hash of a scanned file by its relative path; nullopt when it cannot be read.
using hash_fn = std::function<std::optional<std::string>(const std::string& path)>;

/// @brief True when path is one of prefixes or lies under one ("" stands for the whole tree).
bool in_scope(const std::string& path, const std::vector<std::string>& prefixes);

/// @brief Compares the records of the paths in scope with a scan of the same scope. A path in
/// both is unchanged when size and mtime match, else hashed: same hash → touch, else update.
/// A recorded path missing from the scan whose hash equals that of a new path is a move (a
/// same-named candidate is preferred, then the first in path order); the other missing paths are
/// removed and the other new ones added. Only paths in scope are considered on either side.
change_plan plan_changes(const tree_state& state, const tree_scan& scan, const std::vector<std::string>& scope,
                         const hash_fn& hash_of);

/// Collects dirty paths until the tree settles. A batch is due when no event came for `settle`,
/// or, in a tree that never goes quiet, when its oldest path has waited `max_wait` (then only the
/// paths that are themselves quiet for `settle` are taken). Taking everything at once when quiet
/// keeps both halves of a rename in one batch, so it is planned as a move.
class debouncer {
 public:
  using clock = std::chrono::steady_clock;
  debouncer(std::chrono::milliseconds settle, std::chrono::milliseconds max_wait)
      : settle_(settle), max_wait_(max_wait) {}

  /// @brief Records an event on path at now.
  void touch(const std::string& path, clock::time_point now);
  /// @brief Removes and returns the paths that are due at now (sorted).
  std::vector<std::string> take_due(clock::time_point now);
  /// @brief When the next batch may be due (nullopt when nothing is pending).
  [[nodiscard]] std::optional<clock::time_point> next_check(clock::time_point now) const;
  [[nodiscard]] std::size_t pending() const { return paths_.size(); }

 private:
  struct times {
    clock::time_point first, last;
  };
  std::chrono::milliseconds settle_, max_wait_;
  std::map<std::string, times> paths_;
  clock::time_point last_event_{};
};

// ---- the watcher ----

struct watch_options {
  std::chrono::milliseconds settle{500};      ///< quiet time before dirty paths are read
  std::chrono::milliseconds max_wait{10000};  ///< longest a dirty path waits in a busy tree
  std::size_t workers = 2;                    ///< files analysed at once
  std::size_t max_file_bytes = 20u << 20;     ///< larger files are recorded as failed
  /// Directories never scanned or watched (the data and models directories, should they lie in a
  /// watched tree: thumbnails written there must not become items).
  std::vector<std::filesystem::path> exclude;
  bool once = false;  ///< reconcile once, then end the thread (`acg2vec watch --once`)
  /// Called (from a watcher thread) after each batch and state change; may be empty.
  std::function<void()> on_change;
};

/// The state of one root as GET /v1/stats and `acg2vec watch` show it.
struct root_status {
  std::string root;
  std::string state = "starting";  ///< starting | reconciling | watching | error | stopped
  std::string message;             ///< what went wrong, for "error"
  std::size_t files = 0;           ///< files known under the root (items or not)
  std::size_t items = 0;           ///< of them, files that are items
  std::size_t pending = 0;         ///< dirty paths not yet applied
  std::int64_t last_event_ms = 0;  ///< wall time of the last file-system event (0: none yet)
  std::size_t errors = 0;          ///< files that failed to become items (not retried until changed)
  std::vector<std::pair<std::string, std::string>> failed;  ///< up to 20 of them: (path, error)
  std::uint64_t ingested = 0, updated = 0, moved = 0, removed = 0, reconciles = 0;
  std::uint64_t reads = 0;  ///< files read and handed to the ingest step (a burst of writes should be one)
};

nlohmann::json to_json(const root_status& s);

/// Watches a set of roots, one thread each, applying their changes through the service.
class folder_watcher {
 public:
  /// @param state_dir where each root's record lives (created if needed)
  folder_watcher(search_service& service, std::filesystem::path state_dir, std::vector<std::filesystem::path> roots,
                 watch_options options);
  ~folder_watcher();  ///< stops and joins
  folder_watcher(const folder_watcher&) = delete;
  folder_watcher& operator=(const folder_watcher&) = delete;

  /// @brief Starts every root's thread (a reconcile pass, then watching). Call once the service
  /// can add images (models loaded, spaces defined).
  void start();
  /// @brief Stops all threads: work in progress finishes its current files, the rest is left for
  /// the next start's reconcile. Safe to call more than once.
  void stop();
  /// @brief True when every root's thread has ended (after --once, or after an error).
  [[nodiscard]] bool finished() const;
  [[nodiscard]] std::vector<root_status> status() const;
  /// @brief The stats() section: one object per root.
  [[nodiscard]] nlohmann::json status_json() const;
  /// @brief For tests: hands root `root` (in constructor order) one event with this inotify mask
  /// (no watch, no name), handled by that root's thread exactly like one read from inotify. Lets a
  /// test reach paths the kernel produces only under load, such as IN_Q_OVERFLOW.
  void inject_event(std::size_t root, std::uint32_t mask);

 private:
  class root_watch;
  std::vector<std::unique_ptr<root_watch>> roots_;
};


}  // namespace acg2vec::search