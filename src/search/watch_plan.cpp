// The pure parts of watch folders (planning, debouncing) and the one-file ingest step that
// `acg2vec ingest` and the watcher share.
#include <fstream>
#include <set>
#include <sstream>

#include "core/error.h"
#include "image/decode.h"
#include "search/watch.h"

namespace acg2vec::search {

ingest_result ingest_bytes(search_service& service, std::string_view bytes, item_input input, write_mode mode) {
  ingest_result r;
  r.hash = search_service::content_hash(bytes);
  if (image::sniff_image_format(bytes).empty()) {
    r.status = ingest_status::not_image;
    return r;
  }
  try {
    auto out = service.add_image(bytes, std::move(input), mode);
    if (out.stored) {
      r.status = ingest_status::stored;
      r.id = out.id;
    } else if (!out.duplicate_of.empty()) {
      r.status = ingest_status::duplicate;
      r.id = out.duplicate_of;
    } else {
      r.status = ingest_status::existing;
      r.id = out.id;
    }
  } catch (const error& e) {
    // The service's own trouble (still loading, disk full, a bug) is not the file's fault.
    if (e.code() == errc::unavailable || e.code() == errc::internal) throw;
    // The bytes looked like an image (sniffed above), so a decode error is a broken or unsupported
    // image file: counted and named as failed, not passed over as "not an image".
    r.status = ingest_status::failed;
    r.error = e.what();
  }
  return r;
}

bool in_scope(const std::string& path, const std::vector<std::string>& prefixes) {
  for (const auto& p : prefixes) {
    if (p.empty() || path == p) return true;
    if (path.size() > p.size() && path.compare(0, p.size(), p) == 0 && path[p.size()] == '/') return true;
  }
  return false;
}

namespace {

std::string file_name(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

change_plan plan_changes(const tree_state& state, const tree_scan& scan, const std::vector<std::string>& scope,
                         const hash_fn& hash_of) {
  change_plan plan;
  std::vector<std::string> gone;
  for (const auto& [path, rec] : state) {
    if (in_scope(path, scope) && !scan.contains(path)) gone.push_back(path);
  }
  std::vector<std::string> fresh;
  for (const auto& [path, st] : scan) {
    if (!in_scope(path, scope)) continue;
    auto it = state.find(path);
    if (it == state.end()) {
      fresh.push_back(path);
    } else if (!(it->second.stat == st)) {
      // A changed size or mtime is only a hint: an editor that saves the same bytes, or `touch`,
      // must not re-analyse the image.
      auto h = hash_of(path);
      if (h && *h == it->second.hash) {
        plan.touch.push_back(path);
      } else {
        plan.update.push_back(path);
      }
    }
  }
  // A rename keeps the size (and the content): only new files whose size matches a vanished one
  // are hashed to look for their old path.
  std::multimap<std::string, std::string> gone_by_hash;  // hash → vanished path
  std::set<std::uint64_t> gone_sizes;
  for (const auto& path : gone) {
    const auto& rec = state.at(path);
    if (rec.hash.empty()) continue;
    gone_by_hash.emplace(rec.hash, path);
    gone_sizes.insert(rec.stat.size);
  }
  std::set<std::string> moved_from;
  for (const auto& path : fresh) {
    std::optional<std::string> h;
    if (gone_sizes.contains(scan.at(path).size)) h = hash_of(path);
    if (!h) {
      plan.add.push_back(path);
      continue;
    }
    auto [lo, hi] = gone_by_hash.equal_range(*h);
    auto pick = hi;
    for (auto it = lo; it != hi; ++it) {
      if (pick == hi) pick = it;
      if (file_name(it->second) == file_name(path)) {
        pick = it;
        break;
      }
    }
    if (pick == hi) {
      plan.add.push_back(path);
      continue;
    }
    plan.move.emplace_back(pick->second, path);
    moved_from.insert(pick->second);
    gone_by_hash.erase(pick);
  }
  for (const auto& path : gone) {
    if (!moved_from.contains(path)) plan.remove.push_back(path);
  }
  return plan;
}

void debouncer::touch(const std::string& path, clock::time_point now) {
  auto [it, inserted] = paths_.try_emplace(path, times{now, now});
  if (!inserted) it->second.last = now;
  last_event_ = std::max(last_event_, now);
}

std::vector<std::string> debouncer::take_due(clock::time_point now) {
  std::vector<std::string> due;
  if (paths_.empty()) return due;
  if (now - last_event_ >= settle_) {
    for (auto& [path, _] : paths_) due.push_back(path);
    paths_.clear();
    return due;
  }
  auto oldest = clock::time_point::max();
  for (const auto& [_, t] : paths_) oldest = std::min(oldest, t.first);
  if (now - oldest < max_wait_) return due;
  for (auto it = paths_.begin(); it != paths_.end();) {
    if (now - it->second.last >= settle_) {
      due.push_back(it->first);
      it = paths_.erase(it);
    } else {
      ++it;
    }
  }
  return due;
}

std::optional<debouncer::clock::time_point> debouncer::next_check(clock::time_point now) const {
  if (paths_.empty()) return std::nullopt;
  auto quiet = last_event_ + settle_;
  auto oldest = clock::time_point::max();
  auto first_quiet = clock::time_point::max();
  for (const auto& [_, t] : paths_) {
    oldest = std::min(oldest, t.first);
    first_quiet = std::min(first_quiet, t.last + settle_);
  }
  auto busy = std::max(oldest + max_wait_, first_quiet);
  return std::max(now, std::min(quiet, busy));
}

}  // namespace acg2vec::search