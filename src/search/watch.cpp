// The folder watcher: one thread per root turns inotify events into dirty paths, and applies
// each settled batch (plan_changes over the dirty paths) through the search service.
// One file because the event loop, the catch-up pass and the batch application share one root's state
// (its record, dirty set and counters) under one lock; the pure planning is in watch_plan.cpp.
#include "search/watch.h"

#include <sys/inotify.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <future>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include "core/files.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "search/watch_inotify.h"

namespace acg2vec::search {

namespace {

using json = nlohmann::json;
constexpr std::size_t max_failed_listed = 20;
constexpr int state_version = 1;

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string join_path(const std::string& dir, const std::string& name) { return dir.empty() ? name : dir + "/" + name; }

}  // namespace

json to_json(const root_status& s) {
  json failed = json::array();
  for (const auto& [path, error] : s.failed) failed.push_back({{"path", path}, {"error", error}});
  json j{{"root", s.root},         {"state", s.state},       {"files", s.files},
         {"items", s.items},       {"pending", s.pending},   {"last_event_ms", s.last_event_ms},
         {"errors", s.errors},     {"failed", failed},       {"ingested", s.ingested},
         {"updated", s.updated},   {"moved", s.moved},       {"removed", s.removed},
         {"reconciles", s.reconciles}, {"reads", s.reads}};
  if (!s.message.empty()) j["message"] = s.message;
  return j;
}

/// One watched root: its record, its inotify watches and its thread.
class folder_watcher::root_watch {
 public:
  root_watch(search_service& service, std::filesystem::path state_dir, std::filesystem::path root,
             watch_options options)
      : service_(service), state_dir_(std::move(state_dir)), root_(std::move(root)), options_(std::move(options)),
        debounce_(options_.settle, options_.max_wait) {
    status_.root = root_.string();
    auto key = search_service::content_hash(root_.string()).substr(0, 16);
    state_file_ = state_dir_ / (key + ".json");
    lock_file_ = state_dir_ / (key + ".lock");
  }
  ~root_watch() { stop(); }

  void start() {
    if (thread_.joinable()) return;
    thread_ = std::thread([this] { run(); });
  }

  void inject(std::uint32_t mask) {
    {
      std::lock_guard lock(mutex_);
      fs_event e;
      e.mask = mask;
      injected_.push_back(std::move(e));
    }
    wake_.notify();
  }

  void stop() {
    stopping_ = true;
    wake_.notify();
    if (thread_.joinable()) thread_.join();
  }

  root_status status() const {
    std::lock_guard lock(mutex_);
    root_status s = status_;
    s.files = files_.size();
    s.items = 0;
    s.errors = 0;
    for (const auto& [path, rec] : files_) {
      if (!rec.id.empty()) ++s.items;
      if (!rec.error.empty()) {
        ++s.errors;
        if (s.failed.size() < max_failed_listed) s.failed.emplace_back(path, rec.error);
      }
    }
    s.pending = pending_ + in_flight_;
    return s;
  }

 private:
  // ---- the thread ----

  void run() {
    try {
      std::filesystem::create_directories(state_dir_);
      if (!lock_.try_lock(lock_file_)) {
        fail(errc::conflict, "another acg2vec process watches {} with this data directory", root_.string());
      }
      load_state();
      inotify_.emplace();
      if (!std::filesystem::is_directory(root_)) {
        set_error(fmt::format("{} is not a directory (unmounted?); nothing is removed while it is missing",
                              root_.string()));
        root_lost_ = true;
      } else {
        reconcile();
      }
      if (!options_.once) loop();
      {
        std::lock_guard lock(mutex_);
        if (status_.state != "error") status_.state = "stopped";
      }
    } catch (const std::exception& e) {
      spdlog::error("watch {}: {}", root_.string(), e.what());
      // The thread ends; the error stays visible in the status until the process stops.
      set_error(e.what());
    }
    finished_ = true;
    notify();
  }

 public:
  [[nodiscard]] bool finished() const { return finished_; }

 private:

  void loop() {
    while (!stopping_) {
      auto now = debouncer::clock::now();
      std::optional<std::chrono::milliseconds> timeout;
      {
        std::lock_guard lock(mutex_);
        if (auto t = debounce_.next_check(now)) {
          timeout = std::chrono::duration_cast<std::chrono::milliseconds>(*t - now) + std::chrono::milliseconds(1);
        }
      }
      // A lost root is looked for again every few seconds.
      if (root_lost_ && (!timeout || *timeout > std::chrono::seconds(2))) timeout = std::chrono::seconds(2);
      auto ready = wait_readable({inotify_->fd(), wake_.fd()}, timeout);
      if (stopping_) break;
      if (ready[1]) wake_.clear();
      if (ready[0]) handle_events(inotify_->read_events());
      std::vector<fs_event> injected;
      {
        std::lock_guard lock(mutex_);
        injected.swap(injected_);
      }
      if (!injected.empty()) handle_events(injected);
      if (root_lost_) {
        if (std::filesystem::is_directory(root_)) {
          spdlog::info("watch {}: the root is back; reconciling", root_.string());
          root_lost_ = false;
          reconcile();
        }
        continue;
      }
      if (full_rescan_) {
        full_rescan_ = false;
        reconcile();
        continue;
      }
      std::vector<std::string> due;
      {
        std::lock_guard lock(mutex_);
        due = debounce_.take_due(debouncer::clock::now());
        pending_ = debounce_.pending();
        in_flight_ += due.size();
      }
      if (!due.empty()) apply(due);
    }
  }

  // wd_paths_ and the inotify instance belong to this thread alone; mutex_ guards what status()
  // and the ingest workers share (the debouncer, the record, the counters).
  void handle_events(const std::vector<fs_event>& events) {
    auto now = debouncer::clock::now();
    std::vector<std::string> dirty;
    bool lost = false;
    for (const auto& e : events) {
      if (e.mask & IN_Q_OVERFLOW) {
        // Events were lost: only a full comparison with the tree can tell what changed.
        spdlog::warn("watch {}: the inotify queue overflowed; reconciling", root_.string());
        full_rescan_ = true;
        continue;
      }
      auto dir = wd_paths_.find(e.wd);
      if (dir == wd_paths_.end()) continue;  // a watch removed a moment ago
      if (e.mask & IN_IGNORED) {
        wd_paths_.erase(dir);
        continue;
      }
      if (e.mask & (IN_DELETE_SELF | IN_MOVE_SELF)) {
        if (dir->second.empty()) lost = true;
        continue;  // a subdirectory's own deletion or move is reported by its parent as well
      }
      std::string path = join_path(dir->second, e.name);
      if (e.mask & IN_ISDIR) {
        if (e.mask & (IN_CREATE | IN_MOVED_TO)) {
          // Files written into a new directory before its watch exists are found by the scan of
          // the directory when the batch is applied.
          watch_tree(path);
        } else if (e.mask & IN_MOVED_FROM) {
          // The directory's watches would go on reporting under its old name: drop them; the new
          // name gets fresh ones from its IN_MOVED_TO.
          unwatch_tree(path);
        } else if (!(e.mask & IN_DELETE)) {
          continue;  // attribute changes of a directory
        }
      }
      dirty.push_back(std::move(path));
    }
    std::lock_guard lock(mutex_);
    if (!events.empty()) status_.last_event_ms = wall_ms();
    for (const auto& path : dirty) debounce_.touch(path, now);
    pending_ = debounce_.pending();
    if (lost) {
      root_lost_ = true;
      status_.state = "error";
      status_.message =
          fmt::format("{} was moved or deleted; nothing is removed while it is missing", root_.string());
    }
  }

  /// Adds watches for dir (relative) and every directory below it.
  void watch_tree(const std::string& rel) {
    bool limit = false;
    auto add = [&](const std::filesystem::path& abs, const std::string& r) {
      int err = 0;
      int wd = inotify_->add_directory(abs, err);
      if (wd >= 0) {
        wd_paths_[wd] = r;
      } else if (err == ENOSPC) {
        limit = true;
      }
    };
    auto base = rel.empty() ? root_ : root_ / rel;
    if (excluded(base)) return;
    add(base, rel);
    std::error_code ec;
    std::filesystem::recursive_directory_iterator it(base, std::filesystem::directory_options::skip_permission_denied,
                                                     ec);
    for (; !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
      if (it->is_symlink(ec) || !it->is_directory(ec)) continue;
      if (excluded(it->path())) {
        it.disable_recursion_pending();
        continue;
      }
      add(it->path(), it->path().lexically_relative(root_).generic_string());
    }
    if (limit) {
      std::lock_guard lock(mutex_);
      status_.message = "the inotify watch limit is reached (raise fs.inotify.max_user_watches); changes in some "
                        "directories are only seen by reconcile passes";
      spdlog::warn("watch {}: {}", root_.string(), status_.message);
    }
  }

  /// Removes the watches of rel and below.
  void unwatch_tree(const std::string& rel) {
    for (auto it = wd_paths_.begin(); it != wd_paths_.end();) {
      if (in_scope(it->second, {rel})) {
        inotify_->remove(it->first);
        it = wd_paths_.erase(it);
      } else {
        ++it;
      }
    }
  }

  bool excluded(const std::filesystem::path& p) const {
    for (const auto& x : options_.exclude) {
      std::error_code ec;
      if (std::filesystem::equivalent(p, x, ec)) return true;
    }
    return false;
  }

  // ---- scanning and applying ----

  /// Regular files under the given relative prefixes ("" = the whole tree). complete is cleared
  /// when a directory could not be read to its end (its unseen files must not count as deleted).
  tree_scan scan(const std::vector<std::string>& scope, bool& complete) const {
    tree_scan out;
    complete = true;
    for (const auto& prefix : scope) {
      if (stopping_) {
        complete = false;
        break;
      }
      auto base = prefix.empty() ? root_ : root_ / prefix;
      if (auto st = stat_regular_file(base)) {
        out[prefix] = {st->size, st->mtime_ns};
        continue;
      }
      std::error_code ec;
      if (!std::filesystem::is_directory(base, ec) || excluded(base)) continue;
      std::filesystem::recursive_directory_iterator it(base, std::filesystem::directory_options::skip_permission_denied,
                                                       ec);
      for (; !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
        if (it->is_directory(ec) && !it->is_symlink(ec) && excluded(it->path())) {
          it.disable_recursion_pending();
          continue;
        }
        if (auto st = stat_regular_file(it->path())) {
          out[it->path().lexically_relative(root_).generic_string()] = {st->size, st->mtime_ns};
        }
      }
      if (ec) {
        spdlog::warn("watch {}: cannot read {}: {}", root_.string(), base.string(), ec.message());
        complete = false;
      }
    }
    return out;
  }

  void reconcile() {
    set_state("reconciling");
    // Watches first, then the scan: a change made during the scan is then either seen by it or
    // reported as an event afterwards.
    for (const auto& [wd, _] : wd_paths_) inotify_->remove(wd);
    wd_paths_.clear();
    watch_tree("");
    {
      std::lock_guard lock(mutex_);
      ++status_.reconciles;
      in_flight_ += 1;
    }
    apply({""});
    if (!stopping_ && !root_lost_) {
      std::lock_guard lock(mutex_);
      if (status_.state == "reconciling") status_.state = "watching";
    }
    notify();
  }

  void apply(const std::vector<std::string>& scope) {
    bool complete = true;
    auto found = scan(scope, complete);
    if (stopping_ || !std::filesystem::is_directory(root_)) {
      // Stopping (the next start reconciles) or the root vanished (unmounted): an empty scan then
      // says nothing about the files, so nothing is applied.
      if (!stopping_) {
        root_lost_ = true;
        set_error(fmt::format("{} is missing; nothing is removed while it is", root_.string()));
      }
      std::lock_guard lock(mutex_);
      in_flight_ = in_flight_ >= scope.size() ? in_flight_ - scope.size() : 0;
      return;
    }
    tree_state snapshot;
    {
      std::lock_guard lock(mutex_);
      for (const auto& [path, rec] : files_) {
        if (in_scope(path, scope)) snapshot.emplace(path, rec);
      }
    }
    auto plan = plan_changes(snapshot, found, scope, [this](const std::string& rel) -> std::optional<std::string> {
      try {
        return search_service::content_hash(read_file(root_ / rel, "file", options_.max_file_bytes));
      } catch (const std::exception&) {
        return std::nullopt;
      }
    });
    if (!complete) plan.remove.clear();
    {
      std::lock_guard lock(mutex_);
      in_flight_ = in_flight_ >= scope.size() ? in_flight_ - scope.size() : 0;
      in_flight_ += plan.add.size() + plan.update.size();
    }
    bool changed = !plan.empty();
    // Moves before removals (a moved item must not be removed as its old path's last copy), and
    // both before additions, which may then reuse the ids they free.
    for (const auto& mv : plan.move) guarded(mv.second, [&] { move(mv.first, mv.second, found.at(mv.second)); });
    for (const auto& path : plan.remove) guarded(path, [&] { remove(path); });
    for (const auto& path : plan.touch) {
      std::lock_guard lock(mutex_);
      if (auto it = files_.find(path); it != files_.end()) it->second.stat = found.at(path);
    }
    {
      thread_pool pool(std::max<std::size_t>(1, options_.workers), input_thread_nice());
      std::vector<std::future<void>> jobs;
      auto submit = [&](const std::string& path, bool update) {
        jobs.push_back(pool.submit([this, path, update, st = found.at(path)] {
          if (!stopping_) guarded(path, [&] { add_or_update(path, st, update); });
          std::lock_guard lock(mutex_);
          if (in_flight_ > 0) --in_flight_;
        }));
      };
      for (const auto& path : plan.update) submit(path, true);
      for (const auto& path : plan.add) submit(path, false);
      for (auto& j : jobs) j.get();
    }
    if (changed) save_state();
    notify();
  }

  /// Runs f for one path; a failure is logged and recorded on the path, never ends the thread.
  void guarded(const std::string& path, const std::function<void()>& f) {
    try {
      f();
    } catch (const std::exception& e) {
      spdlog::warn("watch {}: {}: {}", root_.string(), path, e.what());
      std::lock_guard lock(mutex_);
      if (auto it = files_.find(path); it != files_.end()) it->second.error = e.what();
    }
  }

  std::string abs(const std::string& rel) const { return (root_ / rel).string(); }

  /// Other paths of this root that are the same item. Call with mutex_ held.
  std::vector<std::string> others_of(const std::string& id, const std::string& except) const {
    std::vector<std::string> out;
    if (auto it = by_id_.find(id); it != by_id_.end()) {
      for (const auto& p : it->second) {
        if (p != except) out.push_back(p);
      }
    }
    return out;
  }

  void set_record(const std::string& path, file_record rec) {
    erase_record(path);
    if (!rec.id.empty()) by_id_[rec.id].insert(path);
    files_[path] = std::move(rec);
  }

  std::optional<file_record> erase_record(const std::string& path) {
    auto it = files_.find(path);
    if (it == files_.end()) return std::nullopt;
    file_record rec = std::move(it->second);
    files_.erase(it);
    if (!rec.id.empty()) {
      auto& set = by_id_[rec.id];
      set.erase(path);
      if (set.empty()) by_id_.erase(rec.id);
    }
    return rec;
  }

  void move(const std::string& from, const std::string& to, file_stat st) {
    file_record rec;
    {
      std::lock_guard lock(mutex_);
      auto old = erase_record(from);
      if (!old) return;
      rec = std::move(*old);
      rec.stat = st;
      set_record(to, rec);
      ++status_.moved;
    }
    if (rec.id.empty()) return;
    // The item follows its file only when it names that file: a copy added by another route keeps
    // the source it was given.
    if (auto item = service_.get(rec.id); item && item->source == abs(from)) service_.update_source(rec.id, abs(to));
  }

  /// Forgets path; its item is removed when it was the watcher's and no other path is that item.
  void remove(const std::string& path) { detach(path, true); }

  void detach(const std::string& path, bool count) {
    std::optional<file_record> rec;
    std::vector<std::string> others;
    {
      std::lock_guard lock(mutex_);
      rec = erase_record(path);
      if (!rec || rec->id.empty()) return;
      others = others_of(rec->id, path);
      if (!others.empty() && rec->owned) files_[others.front()].owned = true;  // ownership passes on
    }
    if (others.empty()) {
      if (rec->owned && service_.remove(rec->id) && count) {
        std::lock_guard lock(mutex_);
        ++status_.removed;
      }
      return;
    }
    if (auto item = service_.get(rec->id); item && item->source == abs(path)) {
      service_.update_source(rec->id, abs(others.front()));
    }
  }

  void add_or_update(const std::string& path, file_stat st, bool update) {
    const std::string source = abs(path);
    file_record rec;
    rec.stat = st;
    std::string bytes;
    try {
      bytes = read_file(root_ / path, "file", options_.max_file_bytes);
    } catch (const error& e) {
      if (e.code() == errc::not_found) {  // gone again before it could be read: the next batch sees that
        if (update) detach(path, true);
        return;
      }
      if (update) detach(path, true);
      rec.error = e.what();
      std::lock_guard lock(mutex_);
      set_record(path, std::move(rec));
      return;
    }
    rec.hash = search_service::content_hash(bytes);

    item_input in;
    in.source = source;
    write_mode mode = write_mode::skip_existing;
    bool replaces = false;  // this file's own item is re-analysed in place (same id, metadata kept)
    if (update) {
      std::optional<file_record> old;
      bool sole = false;
      {
        std::lock_guard lock(mutex_);
        if (auto it = files_.find(path); it != files_.end()) old = it->second;
        sole = old && !old->id.empty() && others_of(old->id, path).empty();
      }
      if (old && old->owned && sole) {
        replaces = true;
        in.id = old->id;
      } else {
        detach(path, false);
      }
    }
    if (!replaces) {
      // The path under the root is the id, as `acg2vec ingest` names items, unless another item
      // holds it (a renamed file keeps its first id) or it cannot be an id: then the content hash.
      std::optional<std::string> candidate = path;
      try {
        store::validate_new_item_id(*candidate);
      } catch (const error&) {
        candidate.reset();
      }
      if (candidate) {
        if (auto existing = service_.get(*candidate)) {
          if (existing->source == source) {
            // Ingested from this very file before (by `acg2vec ingest`, or by a watcher whose
            // record was lost): the watcher adopts it.
            if (existing->content_hash == rec.hash) {
              rec.id = existing->id;
              rec.owned = true;
              std::lock_guard lock(mutex_);
              set_record(path, std::move(rec));
              return;
            }
            replaces = true;
          } else {
            candidate.reset();
          }
        }
      }
      in.id = candidate;
    }
    const std::string replaced_id = in.id.value_or("");
    if (replaces) {
      mode = write_mode::upsert;
      if (auto existing = service_.get(*in.id)) {
        in.metadata = existing->metadata;
        in.numeric_id = existing->numeric_id;
      }
    }
    {
      std::lock_guard lock(mutex_);
      ++status_.reads;
    }
    ingest_result r;
    try {
      r = ingest_bytes(service_, bytes, std::move(in), mode);
    } catch (const error& e) {
      if (e.code() == errc::unavailable) throw;  // the service's trouble (disk full): not recorded, seen again
      r.status = ingest_status::failed;
      r.error = e.what();
    }
    switch (r.status) {
      case ingest_status::stored:
        rec.id = r.id;
        rec.owned = true;
        break;
      case ingest_status::existing:
      case ingest_status::duplicate:
        rec.id = r.id;  // another item already is this content: the file maps to it, not owned
        break;
      case ingest_status::not_image:
        break;
      case ingest_status::failed:
        rec.error = r.error;
        spdlog::warn("watch {}: {}: {}", root_.string(), path, r.error);
        break;
    }
    if (replaces && r.status != ingest_status::stored) {
      // It was this file's item and the file is no longer an image acg2vec can read.
      service_.remove(replaced_id);
    }
    std::lock_guard lock(mutex_);
    if (r.status == ingest_status::stored) ++(replaces ? status_.updated : status_.ingested);
    set_record(path, std::move(rec));
  }

  // ---- the record on disk ----

  void load_state() {
    std::ifstream in(state_file_);
    if (!in) return;
    try {
      auto j = json::parse(in);
      if (j.value("version", 0) != state_version || j.value("root", "") != root_.string()) return;
      std::lock_guard lock(mutex_);
      for (const auto& [path, r] : j.at("files").items()) {
        file_record rec;
        rec.stat.size = r.at("size").get<std::uint64_t>();
        rec.stat.mtime_ns = r.at("mtime_ns").get<std::int64_t>();
        rec.hash = r.value("hash", "");
        rec.id = r.value("id", "");
        rec.owned = r.value("owned", false);
        rec.error = r.value("error", "");
        set_record(path, std::move(rec));
      }
    } catch (const std::exception& e) {
      // The record is a cache of what the store already knows: starting without it only costs a
      // re-read of the tree (items ingested from their files are adopted again).
      spdlog::warn("watch {}: ignoring unreadable state {}: {}", root_.string(), state_file_.string(), e.what());
      std::lock_guard lock(mutex_);
      files_.clear();
      by_id_.clear();
    }
  }

  void save_state() {
    std::string text;
    {
      std::lock_guard lock(mutex_);
      json files = json::object();
      for (const auto& [path, rec] : files_) {
        json r{{"size", rec.stat.size}, {"mtime_ns", rec.stat.mtime_ns}, {"hash", rec.hash}};
        if (!rec.id.empty()) r["id"] = rec.id;
        if (rec.owned) r["owned"] = true;
        if (!rec.error.empty()) r["error"] = rec.error;
        files[path] = std::move(r);
      }
      text = json{{"version", state_version}, {"root", root_.string()}, {"files", files}}.dump(
          -1, ' ', false, json::error_handler_t::replace);
    }
    // Written aside and renamed: a crash leaves the old record or the new one, and either is
    // reconciled against the tree and the store at the next start.
    auto tmp = state_file_;
    tmp += ".tmp";
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      out << text;
      out.flush();
      if (!out) {
        spdlog::warn("watch {}: cannot write {}", root_.string(), tmp.string());
        return;
      }
    }
    std::error_code ec;
    std::filesystem::rename(tmp, state_file_, ec);
    if (ec) spdlog::warn("watch {}: cannot replace {}: {}", root_.string(), state_file_.string(), ec.message());
  }

  // ---- status ----

  void set_state(const std::string& state) {
    {
      std::lock_guard lock(mutex_);
      status_.state = state;
      if (state != "error") status_.message.clear();
    }
    notify();
  }

  void set_error(const std::string& message) {
    {
      std::lock_guard lock(mutex_);
      status_.state = "error";
      status_.message = message;
    }
    notify();
  }

  void notify() {
    if (options_.on_change) options_.on_change();
  }

  search_service& service_;
  std::filesystem::path state_dir_, root_, state_file_, lock_file_;
  watch_options options_;
  file_lock lock_;
  std::optional<inotify_watch> inotify_;
  wake_event wake_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> root_lost_{false};
  std::atomic<bool> full_rescan_{false};
  std::vector<fs_event> injected_;  ///< inject()'s events, guarded by mutex_
  std::atomic<bool> finished_{false};
  std::unordered_map<int, std::string> wd_paths_;  // watch descriptor → directory relative to the root

  mutable std::mutex mutex_;  // guards everything below
  debouncer debounce_;
  tree_state files_;
  std::unordered_map<std::string, std::set<std::string>> by_id_;  // item id → its paths
  root_status status_;
  std::size_t pending_ = 0, in_flight_ = 0;
};

folder_watcher::folder_watcher(search_service& service, std::filesystem::path state_dir,
                               std::vector<std::filesystem::path> roots, watch_options options) {
  std::set<std::filesystem::path> seen;
  for (auto& r : roots) {
    std::error_code ec;
    auto root = std::filesystem::weakly_canonical(r, ec);
    if (ec) root = std::filesystem::absolute(r);
    if (!seen.insert(root).second) continue;
    for (const auto& other : seen) {
      if (other != root && (in_scope(root.generic_string(), {other.generic_string()}) ||
                            in_scope(other.generic_string(), {root.generic_string()}))) {
        fail(errc::bad_parameter, "watched folders may not nest: {} and {}", other.string(), root.string());
      }
    }
    roots_.push_back(std::make_unique<root_watch>(service, state_dir, root, options));
  }
}

folder_watcher::~folder_watcher() { stop(); }

void folder_watcher::start() {
  for (auto& r : roots_) r->start();
}

void folder_watcher::stop() {
  for (auto& r : roots_) r->stop();
}

void folder_watcher::inject_event(std::size_t root, std::uint32_t mask) {
  if (root >= roots_.size()) fail(errc::bad_parameter, "no watched root {}", root);
  roots_[root]->inject(mask);
}

bool folder_watcher::finished() const {
  return std::all_of(roots_.begin(), roots_.end(), [](const auto& r) { return r->finished(); });
}

std::vector<root_status> folder_watcher::status() const {
  std::vector<root_status> out;
  for (const auto& r : roots_) out.push_back(r->status());
  return out;
}

json folder_watcher::status_json() const {
  json out = json::array();
  for (const auto& s : status()) out.push_back(to_json(s));
  return out;
}

}  // namespace acg2vec::search