// Watch folders: the planning (what to add/update/move/remove) and debouncing, as pure functions.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "search/watch.h"

namespace acg2vec::search {
namespace {

using namespace std::chrono_literals;

search::file_record rec(std::uint64_t size, std::int64_t mtime, std::string hash, std::string id = "") {
  search::file_record r;
  r.stat = {size, mtime};
  r.hash = std::move(hash);
  r.id = std::move(id);
  r.owned = !r.id.empty();
  return r;
}

/// A hash function over a fixed table that also counts how often each path was read.
struct fake_hashes {
  std::map<std::string, std::string> table;
  std::map<std::string, int> reads;
  search::hash_fn fn() {
    return [this](const std::string& p) -> std::optional<std::string> {
      ++reads[p];
      auto it = table.find(p);
      if (it == table.end()) return std::nullopt;
      return it->second;
    };
  }
};

TEST(WatchScope, PrefixesMatchWholePathSegments) {
  EXPECT_TRUE(search::in_scope("a/b.png", {""}));
  EXPECT_TRUE(search::in_scope("a/b.png", {"a"}));
  EXPECT_TRUE(search::in_scope("a", {"a"}));
  EXPECT_FALSE(search::in_scope("ab/c.png", {"a"}));
  EXPECT_FALSE(search::in_scope("a.png", {"a"}));
  EXPECT_TRUE(search::in_scope("x/y/z.png", {"q", "x/y"}));
  EXPECT_FALSE(search::in_scope("x/yz.png", {"x/y"}));
  EXPECT_FALSE(search::in_scope("anything", {}));
}

TEST(WatchPlan, UnchangedFilesAreNotRead) {
  search::tree_state state{{"a.png", rec(10, 1, "h1", "a.png")}, {"b.png", rec(20, 2, "h2", "b.png")}};
  search::tree_scan scan{{"a.png", {10, 1}}, {"b.png", {20, 2}}};
  fake_hashes h;
  auto plan = search::plan_changes(state, scan, {""}, h.fn());
  EXPECT_TRUE(plan.empty());
  EXPECT_TRUE(h.reads.empty());
}

TEST(WatchPlan, NewChangedTouchedAndDeleted) {
  search::tree_state state{{"same.png", rec(10, 1, "h1")}, {"edited.png", rec(20, 2, "h2")}, {"touched.png", rec(30, 3, "h3")},
                   {"gone.png", rec(40, 4, "h4")}};
  search::tree_scan scan{{"same.png", {10, 1}}, {"edited.png", {21, 5}}, {"touched.png", {30, 9}}, {"new.png", {50, 6}}};
  fake_hashes h;
  h.table = {{"edited.png", "h2b"}, {"touched.png", "h3"}, {"new.png", "h5"}};
  auto plan = search::plan_changes(state, scan, {""}, h.fn());
  EXPECT_EQ(plan.add, std::vector<std::string>{"new.png"});
  EXPECT_EQ(plan.update, std::vector<std::string>{"edited.png"});
  EXPECT_EQ(plan.touch, std::vector<std::string>{"touched.png"});
  EXPECT_EQ(plan.remove, std::vector<std::string>{"gone.png"});
  EXPECT_TRUE(plan.move.empty());
  // A new file is only hashed here when a vanished file of its size could be its old path.
  EXPECT_EQ(h.reads.count("new.png"), 0u);
}

TEST(WatchPlan, SameSizeDifferentMtimeAndContentIsAnUpdate) {
  search::tree_state state{{"a.png", rec(10, 1, "old")}};
  search::tree_scan scan{{"a.png", {10, 2}}};
  fake_hashes h;
  h.table = {{"a.png", "new"}};
  auto plan = search::plan_changes(state, scan, {""}, h.fn());
  EXPECT_EQ(plan.update, std::vector<std::string>{"a.png"});
}

TEST(WatchPlan, UnreadableChangedFileIsAnUpdate) {
  // The apply step then records why it failed, instead of the plan silently keeping stale data.
  search::tree_state state{{"a.png", rec(10, 1, "old")}};
  search::tree_scan scan{{"a.png", {11, 2}}};
  fake_hashes h;
  auto plan = search::plan_changes(state, scan, {""}, h.fn());
  EXPECT_EQ(plan.update, std::vector<std::string>{"a.png"});
}

TEST(WatchPlan, RenameIsAMoveByContent) {
  search::tree_state state{{"a.png", rec(10, 1, "h1", "a.png")}};
  search::tree_scan scan{{"renamed.png", {10, 1}}};
  fake_hashes h;
  h.table = {{"renamed.png", "h1"}};
  auto plan = search::plan_changes(state, scan, {""}, h.fn());
  ASSERT_EQ(plan.move.size(), 1u);
  EXPECT_EQ(plan.move[0], std::make_pair(std::string("a.png"), std::string("renamed.png")));
  EXPECT_TRUE(plan.add.empty());
  EXPECT_TRUE(plan.remove.empty());
}

TEST(WatchPlan, SameSizeOtherContentIsNotAMove) {
  search::tree_state state{{"a.png", rec(10, 1, "h1")}};
  search::tree_scan scan{{"b.png", {10, 1}}};
  fake_hashes h;
  h.table = {{"b.png", "other"}};
  auto plan = search::plan_changes(state, scan, {""}, h.fn());
  EXPECT_EQ(plan.add, std::vector<std::string>{"b.png"});
  EXPECT_EQ(plan.remove, std::vector<std::string>{"a.png"});
  EXPECT_TRUE(plan.move.empty());
}

TEST(WatchPlan, DirectoryRenameMovesEveryFileAndPrefersTheSameName) {
  // Two identical files (copies) and one other: each keeps its own record by name.
  search::tree_state state{{"old/x.png", rec(10, 1, "hx", "old/x.png")},
                   {"old/copy-of-x.png", rec(10, 1, "hx", "old/x.png")},
                   {"old/deep/y.png", rec(20, 2, "hy", "old/deep/y.png")},
                   {"other/z.png", rec(30, 3, "hz", "other/z.png")}};
  search::tree_scan scan{{"new/x.png", {10, 1}}, {"new/copy-of-x.png", {10, 1}}, {"new/deep/y.png", {20, 2}}};
  fake_hashes h;
  h.table = {{"new/x.png", "hx"}, {"new/copy-of-x.png", "hx"}, {"new/deep/y.png", "hy"}};
  // Only the two directories of the rename are in scope: other/z.png is not looked at.
  auto plan = search::plan_changes(state, scan, {"old", "new"}, h.fn());
  std::set<std::pair<std::string, std::string>> moves(plan.move.begin(), plan.move.end());
  std::set<std::pair<std::string, std::string>> expected{{"old/x.png", "new/x.png"},
                                                         {"old/copy-of-x.png", "new/copy-of-x.png"},
                                                         {"old/deep/y.png", "new/deep/y.png"}};
  EXPECT_EQ(moves, expected);
  EXPECT_TRUE(plan.add.empty());
  EXPECT_TRUE(plan.remove.empty());
}

TEST(WatchPlan, OutOfScopePathsAreLeftAlone) {
  search::tree_state state{{"a/1.png", rec(10, 1, "h1")}, {"b/2.png", rec(20, 2, "h2")}};
  search::tree_scan scan{};  // a scan of "a" only, which found nothing
  fake_hashes h;
  auto plan = search::plan_changes(state, scan, {"a"}, h.fn());
  EXPECT_EQ(plan.remove, std::vector<std::string>{"a/1.png"});
}

TEST(WatchPlan, MoveOutAndCopyInWithOneVanishedFile) {
  // One file vanished, two new files with its content: one is the move, the other a new copy.
  search::tree_state state{{"a.png", rec(10, 1, "h1", "a.png")}};
  search::tree_scan scan{{"b.png", {10, 1}}, {"c.png", {10, 1}}};
  fake_hashes h;
  h.table = {{"b.png", "h1"}, {"c.png", "h1"}};
  auto plan = search::plan_changes(state, scan, {""}, h.fn());
  ASSERT_EQ(plan.move.size(), 1u);
  EXPECT_EQ(plan.move[0].first, "a.png");
  EXPECT_EQ(plan.add.size(), 1u);
  EXPECT_TRUE(plan.remove.empty());
}

TEST(WatchPlan, ReconcileAfterDowntime) {
  // What a start-up pass sees after a stop: added, modified (same size, new mtime and content),
  // deleted, and a file moved into a new directory.
  search::tree_state state{{"keep.png", rec(1, 1, "k")}, {"mod.png", rec(2, 2, "m")}, {"del.png", rec(3, 3, "d")},
                   {"dir/mv.png", rec(4, 4, "v", "dir/mv.png")}};
  search::tree_scan scan{{"keep.png", {1, 1}}, {"mod.png", {2, 7}}, {"added.png", {5, 5}}, {"dir2/sub/mv.png", {4, 4}}};
  fake_hashes h;
  h.table = {{"mod.png", "m2"}, {"added.png", "a"}, {"dir2/sub/mv.png", "v"}};
  auto plan = search::plan_changes(state, scan, {""}, h.fn());
  EXPECT_EQ(plan.add, std::vector<std::string>{"added.png"});
  EXPECT_EQ(plan.update, std::vector<std::string>{"mod.png"});
  EXPECT_EQ(plan.remove, std::vector<std::string>{"del.png"});
  ASSERT_EQ(plan.move.size(), 1u);
  EXPECT_EQ(plan.move[0], std::make_pair(std::string("dir/mv.png"), std::string("dir2/sub/mv.png")));
}

TEST(WatchDebounce, BurstOnOneFileIsOneBatchAfterItSettles) {
  search::debouncer d(500ms, 10s);
  auto t0 = search::debouncer::clock::time_point{} + 1h;
  for (int i = 0; i < 20; ++i) {
    d.touch("a.png", t0 + i * 50ms);
    EXPECT_TRUE(d.take_due(t0 + i * 50ms + 10ms).empty()) << "still being written at step " << i;
  }
  auto last = t0 + 19 * 50ms;
  EXPECT_TRUE(d.take_due(last + 499ms).empty());
  EXPECT_EQ(d.next_check(last + 100ms), last + 500ms);
  EXPECT_EQ(d.take_due(last + 500ms), std::vector<std::string>{"a.png"});
  EXPECT_EQ(d.pending(), 0u);
  EXPECT_TRUE(d.take_due(last + 2s).empty());
  EXPECT_FALSE(d.next_check(last + 2s).has_value());
}

TEST(WatchDebounce, BothHalvesOfARenameLandInOneBatch) {
  search::debouncer d(500ms, 10s);
  auto t0 = search::debouncer::clock::time_point{} + 1h;
  d.touch("old", t0);
  d.touch("new", t0 + 300ms);  // "old" alone is quiet for 500 ms before "new" is: still one batch
  EXPECT_TRUE(d.take_due(t0 + 600ms).empty());
  EXPECT_EQ(d.take_due(t0 + 800ms), (std::vector<std::string>{"new", "old"}));
}

TEST(WatchDebounce, ABusyTreeStillAppliesQuietPathsAfterMaxWait) {
  search::debouncer d(500ms, 5s);
  auto t0 = search::debouncer::clock::time_point{} + 1h;
  d.touch("done.png", t0);
  // Another file is written to without a pause for longer than max_wait.
  for (auto t = t0; t < t0 + 8s; t += 100ms) {
    d.touch("log.txt", t);
    auto due = d.take_due(t);
    if (t < t0 + 5s) {
      EXPECT_TRUE(due.empty());
    } else if (!due.empty()) {
      EXPECT_EQ(due, std::vector<std::string>{"done.png"});
      EXPECT_EQ(d.pending(), 1u);
      return;
    }
  }
  FAIL() << "the quiet path was never applied";
}

}  // namespace
}  // namespace acg2vec::search
