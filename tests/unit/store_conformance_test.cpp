// One conformance suite for every item_store backend: SQLite, Redis standalone and a 3-master
// Redis Cluster (real redis-server processes started by the test). The same expectations hold
// for all of them; backend-specific tests live in store_sqlite_test.cpp / store_redis_test.cpp.

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <random>
#include <thread>

#include "support/fixtures.h"
#include "core/error.h"
#include "redis_servers.h"
#include "store/open_store.h"
#include "store/redis_store.h"
#include "store/sqlite_store.h"

namespace acg2vec::store {
namespace {

using test_support::code_of;
using test_support::make_item;

namespace fs = std::filesystem;

// Servers shared by all tests of a run (each test gets its own key prefix or file).
testing::redis_server& standalone_server() {
  static testing::redis_server server(fs::path(ACG2VEC_TEST_WORK) / "redis" / "conformance-standalone");
  return server;
}
testing::redis_cluster& cluster_servers() {
  static testing::redis_cluster cluster(fs::path(ACG2VEC_TEST_WORK) / "redis" / "conformance-cluster");
  return cluster;
}

class StoreConformance : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    name_ = std::string(info->name());
    std::replace(name_.begin(), name_.end(), '/', '_');
    if (GetParam() == "sqlite") {
      dir_ = fs::path(ACG2VEC_TEST_WORK) / "store-conformance" / name_;
      fs::remove_all(dir_);
      fs::create_directories(dir_);
      uri_ = "sqlite:" + (dir_ / "items.db").string();
    } else {
      if (!testing::redis_installed()) GTEST_SKIP() << "redis-server is not installed";
      const std::string base = GetParam() == "redis" ? standalone_server().uri() : cluster_servers().uri();
      uri_ = base + "?prefix=t_" + name_;
      auto fresh = open_store(uri_, {});
      static_cast<redis_store&>(*fresh).clear();
      if (GetParam() == "redis_cluster") {
        ASSERT_TRUE(static_cast<redis_store&>(*fresh).cluster_mode());
      }
    }
  }
  /// A new store object on the same data (a reopen for SQLite, a new connection for Redis).
  std::unique_ptr<item_store> open() { return open_store(uri_, dir_); }

  std::string name_;
  fs::path dir_;
  std::string uri_;
};

TEST_P(StoreConformance, InsertGetRoundTripsEveryField) {
  auto owned = open();
  auto& db = *owned;
  item it = make_item("42");
  it.numeric_id = true;
  it.tags["deepdanbooru"] = {{"1girl", 0.99f}, {"solo", 0.75f}};
  it.tags["other"] = {{"cat", 0.5f}};
  it.scores["pix2score"] = {{"bookmark", 0.25f}, {"sanity", 2.0f}};
  it.created_at = 1000;
  const auto g0 = db.generation();
  const auto g1 = db.insert(it);
  EXPECT_GT(g1, g0);
  EXPECT_EQ(db.generation(), g1);

  const auto got = db.get("42");
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->id, "42");
  EXPECT_TRUE(got->numeric_id);
  EXPECT_EQ(item_id_to_json(*got), nlohmann::json(42));
  EXPECT_EQ(got->source, it.source);
  EXPECT_EQ(got->content_hash, it.content_hash);
  EXPECT_EQ(got->width, 640);
  EXPECT_EQ(got->height, 480);
  EXPECT_EQ(got->metadata, it.metadata);
  EXPECT_EQ(got->created_at, 1000);
  EXPECT_GT(got->updated_at, 0);
  ASSERT_EQ(got->tags.size(), 2u);
  EXPECT_EQ(got->tags.at("deepdanbooru"), it.tags.at("deepdanbooru"));
  EXPECT_EQ(got->scores, it.scores);
  EXPECT_EQ(db.count(), 1u);
  EXPECT_TRUE(db.contains("42"));
  EXPECT_FALSE(db.contains("43"));
  EXPECT_FALSE(db.get("43").has_value());
  EXPECT_EQ(db.find_by_hash("hash-42"), std::optional<std::string>("42"));
  EXPECT_FALSE(db.find_by_hash("nope").has_value());
}

TEST_P(StoreConformance, StringIdsStayStrings) {
  auto owned = open();
  auto& db = *owned;
  db.insert(make_item("illust/äöü 漢字"));
  db.insert(make_item("7"));  // a string that looks like a number, given as a string
  EXPECT_EQ(item_id_to_json(*db.get("illust/äöü 漢字")), nlohmann::json("illust/äöü 漢字"));
  EXPECT_EQ(item_id_to_json(*db.get("7")), nlohmann::json("7"));
  const auto [text, numeric] = item_id_from_json(nlohmann::json(-12345678901234LL));
  EXPECT_EQ(text, "-12345678901234");
  EXPECT_TRUE(numeric);
  EXPECT_EQ(code_of([] { (void)item_id_from_json(nlohmann::json(1.5)); }), errc::bad_parameter);
  EXPECT_EQ(code_of([] { (void)item_id_from_json(nlohmann::json("")); }), errc::bad_parameter);
}

TEST_P(StoreConformance, InsertOfExistingIdIsConflictAndChangesNothing) {
  auto owned = open();
  auto& db = *owned;
  db.insert(make_item("a"));
  const auto g = db.generation();
  item again = make_item("a");
  again.source = "changed";
  EXPECT_EQ(code_of([&] { db.insert(again); }), errc::conflict);
  EXPECT_EQ(db.get("a")->source, "/pics/a.png");
  EXPECT_EQ(db.generation(), g);
}

TEST_P(StoreConformance, UpsertReplacesAndKeepsCreationTime) {
  auto owned = open();
  auto& db = *owned;
  item it = make_item("a", 500);
  it.tags["t"] = {{"old", 1.0f}};
  it.vectors["v"] = {1, 2, 3};
  db.upsert(it);  // upsert of a new id inserts
  item next = make_item("a");
  next.source = "new";
  next.tags["t"] = {{"new", 0.5f}};
  db.upsert(next);
  const auto got = db.get("a");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->source, "new");
  EXPECT_EQ(got->created_at, 500);
  ASSERT_EQ(got->tags.at("t").size(), 1u);
  EXPECT_EQ(got->tags.at("t")[0].first, "new");
  EXPECT_TRUE(got->vectors.empty()) << "replaced item must not keep the old vectors";
  EXPECT_EQ(db.count(), 1u);
}

TEST_P(StoreConformance, RemoveDeletesEverything) {
  auto owned = open();
  auto& db = *owned;
  item it = make_item("a");
  it.tags["t"] = {{"x", 1.0f}};
  it.vectors["v"] = {1, 2};
  db.insert(it);
  db.insert(make_item("b"));
  const auto g = db.generation();
  EXPECT_TRUE(db.remove("a"));
  EXPECT_GT(db.generation(), g);
  EXPECT_FALSE(db.remove("a"));
  EXPECT_FALSE(db.get("a"));
  EXPECT_EQ(db.count(), 1u);
  EXPECT_TRUE(db.search_tags({.all_of = {"x"}}).empty());
  std::size_t vectors = 0;
  db.for_each_vector("v", [&](const std::string&, std::span<const float>) { ++vectors; });
  EXPECT_EQ(vectors, 0u);
  // Re-inserting a deleted id is a plain insert.
  db.insert(make_item("a"));
  EXPECT_EQ(db.count(), 2u);
}

TEST_P(StoreConformance, VectorsRoundTripBitExact) {
  std::vector<float> v(1024);
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  for (auto& x : v) x = normal(rng);
  v[0] = -0.0f;
  v[1] = std::numeric_limits<float>::denorm_min();
  v[2] = std::numeric_limits<float>::max();
  {
    auto owned = open();
    auto& db = *owned;
    item it = make_item("a");
    it.vectors["illust2vec"] = v;
    it.vectors["signature"] = {0.5f, 0.25f};
    db.insert(it);
  }
  auto owned = open();
  auto& db = *owned;
  const auto got = db.get("a");
  ASSERT_TRUE(got);
  ASSERT_EQ(got->vectors.at("illust2vec").size(), v.size());
  EXPECT_EQ(std::memcmp(got->vectors.at("illust2vec").data(), v.data(), v.size() * sizeof(float)), 0);
  std::size_t seen = 0;
  db.for_each_vector("illust2vec", [&](const std::string& id, std::span<const float> s) {
    ++seen;
    EXPECT_EQ(id, "a");
    ASSERT_EQ(s.size(), v.size());
    EXPECT_EQ(std::memcmp(s.data(), v.data(), v.size() * sizeof(float)), 0);
  });
  EXPECT_EQ(seen, 1u);
  const auto counts = db.vector_counts();
  EXPECT_EQ(counts.at("illust2vec").count, 1u);
  EXPECT_EQ(counts.at("illust2vec").dim, 1024);
  EXPECT_EQ(counts.at("signature").dim, 2);
}

TEST_P(StoreConformance, TagQueries) {
  auto owned = open();
  auto& db = *owned;
  auto tagged = [&](const std::string& id, std::int64_t t,
                    std::vector<std::pair<std::string, float>> tags, float bookmark) {
    item it = make_item(id, t);
    it.tags["dd"] = std::move(tags);
    it.scores["pix2score"]["bookmark"] = bookmark;
    db.insert(it);
  };
  tagged("a", 1, {{"1girl", 0.9f}, {"solo", 0.8f}, {"rating:safe", 0.9f}, {"rating:explicit", 0.1f}}, 0.9f);
  tagged("b", 2, {{"1girl", 0.9f}, {"cat", 0.4f}, {"rating:safe", 0.2f}, {"rating:explicit", 0.7f}}, 0.1f);
  tagged("c", 3, {{"cat", 0.95f}, {"solo", 0.6f}, {"rating:safe", 0.6f}}, 0.5f);
  {
    item other = make_item("d", 4);
    other.tags["wd"] = {{"1girl", 0.99f}};
    db.insert(other);
  }
  using ids = std::vector<std::string>;
  EXPECT_EQ(db.search_tags({.all_of = {"1girl"}}), (ids{"d", "b", "a"}));  // newest first
  EXPECT_EQ(db.search_tags({.all_of = {"1girl", "solo"}}), (ids{"a"}));
  EXPECT_EQ(db.search_tags({.any_of = {"cat", "solo"}}), (ids{"c", "b", "a"}));
  EXPECT_EQ(db.search_tags({.all_of = {"1girl"}, .none_of = {"cat"}}), (ids{"d", "a"}));
  EXPECT_EQ(db.search_tags({.any_of = {"cat"}, .min_score = 0.5f}), (ids{"c"}));
  EXPECT_EQ(db.search_tags({.none_of = {"cat"}, .min_score = 0.5f}), (ids{"d", "b", "a"}));
  EXPECT_EQ(db.search_tags({.all_of = {"1girl"}, .tagger = "dd"}), (ids{"b", "a"}));
  EXPECT_EQ(db.search_tags({.rating = "safe"}), (ids{"c", "a"}));
  EXPECT_EQ(db.search_tags({.rating = "explicit"}), (ids{"b"}));
  EXPECT_EQ(db.search_tags({.score_minimums = {{"pix2score", "bookmark", 0.5f}}}), (ids{"c", "a"}));
  EXPECT_EQ(db.search_tags({.all_of = {"1girl"}, .offset = 1, .limit = 1}), (ids{"b"}));
  EXPECT_TRUE(db.search_tags({.all_of = {"no-such-tag"}}).empty());
  EXPECT_EQ(db.search_tags({}).size(), 4u);
}

TEST_P(StoreConformance, ListIsNewestFirstWithPaging) {
  auto owned = open();
  auto& db = *owned;
  for (int n = 0; n < 5; ++n) {
    item it = make_item("i" + std::to_string(n), 100 + n);
    it.vectors["v"] = {float(n)};
    db.insert(it);
  }
  const auto page = db.list(1, 2, false);
  ASSERT_EQ(page.size(), 2u);
  EXPECT_EQ(page[0].id, "i3");
  EXPECT_EQ(page[1].id, "i2");
  EXPECT_TRUE(page[0].vectors.empty());
  const auto all = db.list(0, 0, true);
  ASSERT_EQ(all.size(), 5u);
  EXPECT_EQ(all[0].vectors.at("v")[0], 4.0f);
}

TEST_P(StoreConformance, BatchInsertIsAtomic) {
  auto owned = open();
  auto& db = *owned;
  db.insert(make_item("existing"));
  const auto g = db.generation();
  std::vector<item> batch{make_item("n1"), make_item("n2"), make_item("existing"), make_item("n3")};
  batch[0].vectors["v"] = {1, 2};
  EXPECT_EQ(code_of([&] { db.insert_batch(batch); }), errc::conflict);
  EXPECT_EQ(db.count(), 1u);
  EXPECT_FALSE(db.contains("n1"));
  EXPECT_EQ(db.generation(), g);

  // A bad item fails validation before anything is written.
  std::vector<item> bad{make_item("n1"), make_item("")};
  EXPECT_EQ(code_of([&] { db.insert_batch(bad); }), errc::bad_parameter);
  EXPECT_EQ(db.count(), 1u);

  std::vector<item> twice{make_item("n1"), make_item("n1")};
  EXPECT_EQ(code_of([&] { db.insert_batch(twice); }), errc::conflict);

  batch.erase(batch.begin() + 2);
  const auto g2 = db.insert_batch(batch);
  EXPECT_GT(g2, g);
  EXPECT_EQ(db.count(), 4u);
  EXPECT_EQ(db.get("n1")->vectors.at("v"), (std::vector<float>{1, 2}));

  // upsert_batch replaces existing and inserts new in one go.
  std::vector<item> ups{make_item("n1"), make_item("n9")};
  ups[0].source = "replaced";
  db.upsert_batch(ups);
  EXPECT_EQ(db.count(), 5u);
  EXPECT_EQ(db.get("n1")->source, "replaced");
}

TEST_P(StoreConformance, PersistsAcrossReopenWithGeneration) {
  std::uint64_t g = 0;
  {
    auto owned = open();
    auto& db = *owned;
    db.insert(make_item("a"));
    db.insert(make_item("b"));
    db.remove("b");
    g = db.generation();
  }
  auto owned = open();
  auto& db = *owned;
  EXPECT_EQ(db.generation(), g);
  EXPECT_EQ(db.count(), 1u);
  EXPECT_TRUE(db.get("a"));
}

TEST_P(StoreConformance, BadIdsAndFieldsAreRejected) {
  auto owned = open();
  auto& db = *owned;
  EXPECT_EQ(code_of([&] { db.insert(make_item("")); }), errc::bad_parameter);
  EXPECT_EQ(code_of([&] { db.insert(make_item(std::string(257, 'x'))); }), errc::bad_parameter);
  db.insert(make_item(std::string(256, 'x')));
  EXPECT_EQ(code_of([&] { db.insert(make_item("bad\xff")); }), errc::bad_parameter);
  EXPECT_EQ(code_of([&] { db.insert(make_item("\xc0\xaf")); }), errc::bad_parameter);  // overlong '/'
  EXPECT_EQ(code_of([&] { db.insert(make_item("\xed\xa0\x80")); }), errc::bad_parameter);  // surrogate
  EXPECT_EQ(code_of([&] { db.insert(make_item("cut\xe6\xbc")); }), errc::bad_parameter);  // truncated
  EXPECT_EQ(code_of([&] { db.insert(make_item(std::string("a\0b", 3))); }), errc::bad_parameter);
  EXPECT_EQ(code_of([&] { (void)db.get(""); }), errc::bad_parameter);
  item nan = make_item("nan");
  nan.vectors["v"] = {1.0f, std::nanf("")};
  EXPECT_EQ(code_of([&] { db.insert(nan); }), errc::bad_parameter);
  item space = make_item("space");
  space.vectors["../etc"] = {1.0f};
  EXPECT_EQ(code_of([&] { db.insert(space); }), errc::bad_parameter);
  item meta = make_item("meta");
  meta.metadata = nlohmann::json::array({1, 2});
  EXPECT_EQ(code_of([&] { db.insert(meta); }), errc::bad_parameter);
  EXPECT_EQ(db.count(), 1u);
}

TEST_P(StoreConformance, ConcurrentReadersAndWriter) {
  auto owned = open();
  auto& db = *owned;
  std::atomic<bool> done{false};
  std::atomic<int> reads{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r) {
    readers.emplace_back([&] {
      while (!done) {
        for (const auto& it : db.list(0, 5, true)) {
          // An item is never seen half-written: every listed item has its tag and vector.
          EXPECT_EQ(it.tags.at("t").size(), 1u);
          EXPECT_EQ(it.vectors.at("v").size(), 3u);
        }
        ++reads;
      }
    });
  }
  for (int n = 0; n < 100; ++n) {
    item it = make_item("w" + std::to_string(n));
    it.tags["t"] = {{"x", 1.0f}};
    it.vectors["v"] = {1, 2, 3};
    db.insert(it);
    if (n % 3 == 0) db.remove("w" + std::to_string(n / 2));
  }
  done = true;
  for (auto& t : readers) t.join();
  EXPECT_GT(reads.load(), 0);
}

TEST_P(StoreConformance, IdsWithBracesAndTildesStayDistinct) {
  // Braces would change a Redis Cluster hash tag; the key encoding must stay injective.
  auto owned = open();
  auto& db = *owned;
  const std::vector<std::string> ids{"a{b}c", "{x}", "}{", "~7e", "~", "{", "7e", "a}b"};
  for (const auto& id : ids) {
    item it = make_item(id);
    it.vectors["v"] = {1.0f, static_cast<float>(id.size())};
    db.insert(it);
  }
  EXPECT_EQ(db.count(), ids.size());
  for (const auto& id : ids) {
    const auto got = db.get(id);
    ASSERT_TRUE(got) << id;
    EXPECT_EQ(got->id, id);
    EXPECT_EQ(got->vectors.at("v")[1], static_cast<float>(id.size()));
  }
  EXPECT_TRUE(db.remove("{x}"));
  EXPECT_TRUE(db.contains("a{b}c"));
  EXPECT_EQ(db.count(), ids.size() - 1);
}

TEST_P(StoreConformance, UpsertBatchWithRepeatedIdKeepsTheLast) {
  auto owned = open();
  auto& db = *owned;
  std::vector<item> batch{make_item("r", 10), make_item("s"), make_item("r")};
  batch[0].tags["t"] = {{"first", 1.0f}};
  batch[2].tags["t"] = {{"second", 1.0f}};
  batch[2].source = "last";
  db.upsert_batch(batch);
  EXPECT_EQ(db.count(), 2u);
  const auto got = db.get("r");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->source, "last");
  EXPECT_EQ(got->created_at, 10);
  using ids = std::vector<std::string>;
  EXPECT_EQ(db.search_tags({.all_of = {"second"}}), (ids{"r"}));
  EXPECT_TRUE(db.search_tags({.all_of = {"first"}}).empty());
  EXPECT_EQ(db.list(0, 0, false).size(), 2u);
}

TEST_P(StoreConformance, GenerationGrowsWithEveryWrite) {
  auto owned = open();
  auto& db = *owned;
  auto g = db.generation();
  for (int n = 0; n < 3; ++n) {
    const auto next = db.upsert(make_item("g" + std::to_string(n)));
    EXPECT_GT(next, g);
    EXPECT_EQ(db.generation(), next);
    g = next;
  }
  EXPECT_FALSE(db.remove("nope"));
  EXPECT_EQ(db.generation(), g) << "a remove that changed nothing is not a write";
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreConformance, ::testing::Values("sqlite", "redis", "redis_cluster"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace acg2vec::store
