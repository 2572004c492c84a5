// The store queries behind browsing (GET /v1/items filters and order, GET /v1/tags) on every
// backend: SQLite, Redis standalone and a Redis Cluster. Expected answers are written out by hand
// from the definitions in store/item_store.h for the small collection below.

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "redis_servers.h"
#include "store/open_store.h"
#include "store/redis_store.h"

namespace acg2vec::store {
namespace {

namespace fs = std::filesystem;

testing::redis_server& standalone() {
  static testing::redis_server server(fs::path(ACG2VEC_TEST_WORK) / "redis" / "browse-standalone");
  return server;
}
testing::redis_cluster& cluster() {
  static testing::redis_cluster c(fs::path(ACG2VEC_TEST_WORK) / "redis" / "browse-cluster");
  return c;
}

class StoreBrowse : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::replace(name.begin(), name.end(), '/', '_');
    if (GetParam() == "sqlite") {
      const auto dir = fs::path(ACG2VEC_TEST_WORK) / "store-browse" / name;
      fs::remove_all(dir);
      fs::create_directories(dir);
      db_ = open_store("sqlite:" + (dir / "items.db").string(), dir);
    } else {
      if (!testing::redis_installed()) GTEST_SKIP() << "redis-server is not installed";
      const std::string base = GetParam() == "redis" ? standalone().uri() : cluster().uri();
      db_ = open_store(base + "?prefix=b_" + name, {});
      static_cast<redis_store&>(*db_).clear();
    }
    // id, created, tags per tagger, one score ("q", "v") or none.
    add("a", 1, {{"dd", {{"1girl", .9f}, {"solo", .8f}, {"long_hair", .6f}, {"rating:general", .8f}, {"rating:explicit", .1f}}}}, .9f);
    add("b", 2, {{"dd", {{"1girl", .9f}, {"cat", .4f}, {"long_hair", .3f}, {"rating:general", .2f}, {"rating:explicit", .7f}}}}, .1f);
    add("c", 3, {{"dd", {{"cat", .95f}, {"solo", .6f}, {"rating:general", .6f}}}}, .5f);
    add("d", 4, {{"wd", {{"1girl", .99f}, {"long_hair", .9f}}}}, -1);
    add("e", 5, {{"dd", {{"1boy", .7f}, {"cat", .2f}}}, {"wd", {{"cat", .8f}}}}, .5f);
  }

  void add(const std::string& id, std::int64_t created,
           std::map<std::string, std::vector<std::pair<std::string, float>>> tags, float v) {
    item it;
    it.id = id;
    it.content_hash = "h-" + id;
    it.created_at = created;
    it.tags = std::move(tags);
    if (v >= 0) it.scores["q"]["v"] = v;
    it.scores["other"]["w"] = 1.0f;  // another output that never matters
    db_->insert(it);
  }

  std::unique_ptr<item_store> db_;
};

using ids = std::vector<std::string>;
using counts = std::vector<std::pair<std::string, std::size_t>>;

counts flat(const std::vector<tag_count>& v) {
  counts out;
  for (const auto& t : v) out.emplace_back(t.tag, t.items);
  return out;
}

TEST_P(StoreBrowse, TagCountsCountItemsOncePerTagMostFirst) {
  auto& db = *db_;
  // e has cat from two taggers: one item. Ties by name, bytewise.
  const counts all{{"1girl", 3}, {"cat", 3}, {"long_hair", 3}, {"rating:general", 3},
                   {"rating:explicit", 2}, {"solo", 2}, {"1boy", 1}};
  EXPECT_EQ(flat(db.tag_counts("", 0, 0.0f, std::nullopt)), all);
  EXPECT_EQ(flat(db.tag_counts("", 2, 0.0f, std::nullopt)), (counts{{"1girl", 3}, {"cat", 3}}));
  EXPECT_EQ(flat(db.tag_counts("1", 10, 0.0f, std::nullopt)), (counts{{"1girl", 3}, {"1boy", 1}}));
  EXPECT_EQ(flat(db.tag_counts("rating:", 10, 0.0f, std::nullopt)), (counts{{"rating:general", 3}, {"rating:explicit", 2}}));
  EXPECT_TRUE(db.tag_counts("zz", 10, 0.0f, std::nullopt).empty());
  // A score floor counts what the tag filter with that min_score finds.
  EXPECT_EQ(flat(db.tag_counts("", 0, 0.5f, std::nullopt)),
            (counts{{"1girl", 3}, {"cat", 2}, {"long_hair", 2}, {"rating:general", 2}, {"solo", 2},
                    {"1boy", 1}, {"rating:explicit", 1}}));
  EXPECT_EQ(flat(db.tag_counts("c", 10, 0.5f, std::nullopt)), (counts{{"cat", 2}}));
  EXPECT_EQ(flat(db.tag_counts("", 0, 0.0f, std::string("wd"))), (counts{{"1girl", 1}, {"cat", 1}, {"long_hair", 1}}));
  // The count is the size of the all-of filter's answer, tag by tag.
  for (const auto& t : db.tag_counts("", 0, 0.5f, std::nullopt)) {
    EXPECT_EQ(db.search_tags({.all_of = {t.tag}, .min_score = 0.5f}).size(), t.items) << t.tag;
  }
  // The generic scan (the definition) and the backend's own query agree.
  for (const char* prefix : {"", "1", "c", "rating:", "zz"}) {
    for (float floor : {0.0f, 0.5f}) {
      EXPECT_EQ(flat(db.item_store::tag_counts(prefix, 0, floor, std::nullopt)),
                flat(db.tag_counts(prefix, 0, floor, std::nullopt)))
          << prefix << " " << floor;
    }
  }
}

TEST_P(StoreBrowse, ScoreRangesAndOrders) {
  auto& db = *db_;
  EXPECT_EQ(db.search_tags({.score_maximums = {{"q", "v", .5f}}}), (ids{"e", "c", "b"}));
  EXPECT_EQ(db.search_tags({.score_minimums = {{"q", "v", .5f}}, .score_maximums = {{"q", "v", .5f}}}), (ids{"e", "c"}));
  EXPECT_EQ(db.search_tags({.score_minimums = {{"q", "v", .2f}}, .score_maximums = {{"q", "v", .6f}}}), (ids{"e", "c"}));
  EXPECT_TRUE(db.search_tags({.score_maximums = {{"q", "nope", 1.0f}}}).empty());
  // Highest first, ties newest first, items without the score last.
  EXPECT_EQ(db.search_tags({.order_by_score = score_key{"q", "v"}}), (ids{"a", "e", "c", "b", "d"}));
  EXPECT_EQ(db.search_tags({.order_by_score = score_key{"q", "v"}, .ascending = true}), (ids{"b", "e", "c", "a", "d"}));
  EXPECT_EQ(db.search_tags({.ascending = true}), (ids{"a", "b", "c", "d", "e"}));
  EXPECT_EQ(db.search_tags({.order_by_score = score_key{"q", "v"}, .offset = 1, .limit = 2}), (ids{"e", "c"}));
  // Filters and order together.
  EXPECT_EQ(db.search_tags({.all_of = {"1girl"}, .order_by_score = score_key{"q", "v"}}), (ids{"a", "b", "d"}));
  EXPECT_EQ(db.search_tags({.any_of = {"cat"}, .none_of = {"1boy"}, .order_by_score = score_key{"q", "v"}, .ascending = true}),
            (ids{"b", "c"}));
  EXPECT_EQ(db.search_tags({.all_of = {"long_hair"}, .min_score = .5f, .ascending = true}), (ids{"a", "d"}));
  EXPECT_EQ(db.search_tags({.rating = "general", .score_maximums = {{"q", "v", .6f}}}), (ids{"c"}));
  EXPECT_EQ(db.search_tags({.rating = "explicit", .order_by_score = score_key{"q", "v"}}), (ids{"b"}));
}

// WD-style taggers name their rating category's tags without the prefix; both spellings are ratings.
TEST_P(StoreBrowse, BareWdRatingTagsAreRatings) {
  auto& db = *db_;
  add("w1", 6, {{"wd", {{"1girl", .9f}, {"general", .7f}, {"sensitive", .2f}, {"explicit", .05f}}}}, -1);
  add("w2", 7, {{"wd", {{"1girl", .8f}, {"general", .1f}, {"questionable", .3f}, {"explicit", .6f}}}}, -1);
  // A plain tag that merely contains a rating word is not a rating.
  add("w3", 8, {{"wd", {{"explicit_content_warning", .9f}, {"sensitive", .4f}}}}, -1);
  EXPECT_EQ(db.search_tags({.rating = "general", .ascending = true}), (ids{"a", "c", "w1"}));
  EXPECT_EQ(db.search_tags({.rating = "explicit", .ascending = true}), (ids{"b", "w2"}));
  EXPECT_EQ(db.search_tags({.rating = "sensitive"}), (ids{"w3"}));
  EXPECT_TRUE(db.search_tags({.rating = "questionable"}).empty());
  EXPECT_EQ(db.search_tags({.tagger = "wd", .rating = "general"}), (ids{"w1"}));
  EXPECT_TRUE(is_rating_tag("rating:safe"));
  EXPECT_TRUE(is_rating_tag("sensitive"));
  EXPECT_FALSE(is_rating_tag("explicit_content_warning"));
  EXPECT_EQ(rating_of_tag("rating:explicit"), "explicit");
  EXPECT_EQ(rating_of_tag("questionable"), "questionable");
}

INSTANTIATE_TEST_SUITE_P(browse, StoreBrowse, ::testing::Values("sqlite", "redis", "redis_cluster"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace acg2vec::store
