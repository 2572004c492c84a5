// Duplicate resolve on the Redis store (standalone and Cluster): the journal entry a resolve leaves
// when it stops between its writes is finished, in full, by the next store object that touches the
// prefix, before that object reads anything. The process-level SIGKILL version is
// tests/integration/test_dedup_resolve_redis.py.

#include <gtest/gtest.h>

#include <filesystem>
#include <stdexcept>

#include "redis_servers.h"
#include "store/redis_store.h"

namespace acg2vec::store {
namespace {

namespace fs = std::filesystem;

fs::path work(const std::string& name) { return fs::path(ACG2VEC_TEST_WORK) / "redis-resolve" / name; }

item make_item(const std::string& id, float x) {
  item it;
  it.id = id;
  it.source = "/pics/" + id + ".png";
  it.content_hash = "hash-" + id;
  it.metadata = {{"title", id}};
  it.tags["dd"] = {{"1girl", 0.9f}, {id, 0.5f}};
  it.vectors["signature"] = {x, 0.25f, -1.5f};
  return it;
}

struct stop_here : std::runtime_error {
  stop_here() : std::runtime_error("stopped between the writes") {}
};

void check_resolve_is_finished_by_the_next_opening(const std::string& uri) {
  const std::vector<std::string> copies{"a.q70", "a.half"};
  {
    redis_store first(parse_redis_uri(uri));
    first.insert_batch(std::vector<item>{make_item("a", 1.0f), make_item("a.q70", 1.01f), make_item("a.half", 0.99f),
                                         make_item("b{x}", 7.0f)});
  }
  // The merged item as a resolve writes it: tags and metadata of the copies, provenance, a source with
  // non-ASCII bytes and vector values that must come back bit for bit.
  item kept = make_item("a", 1.0f);
  kept.source = std::string("/pics/\xc3\xa4 \xe7\xb5\xb5 a.png");
  kept.tags["dd"].push_back({"a.q70", 0.5f});
  kept.metadata["merged_from"] = nlohmann::json::array({{{"id", "a.q70"}}, {{"id", "a.half"}}});
  kept.vectors["signature"] = {1.0f / 3.0f, 1e-30f, -0.0f};
  {
    redis_store dying(parse_redis_uri(uri));
    EXPECT_THROW(dying.upsert_and_remove(std::vector<item>{kept}, copies, [] { throw stop_here(); }), stop_here);
    // Stopped there, the keys are a mix: the merged item is written and its copies are still stored.
    EXPECT_EQ(dying.get("a")->metadata.at("merged_from").size(), 2u);
    EXPECT_TRUE(dying.contains("a.q70"));
  }
  redis_store next(parse_redis_uri(uri));
  EXPECT_EQ(next.count(), 2u);  // the first read finished the entry
  EXPECT_FALSE(next.contains("a.q70"));
  EXPECT_FALSE(next.contains("a.half"));
  const auto a = next.get("a");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->source, kept.source);
  EXPECT_EQ(a->metadata, kept.metadata);
  EXPECT_EQ(a->vectors.at("signature"), kept.vectors.at("signature"));
  EXPECT_EQ(next.search_tags({.all_of = {"a.q70"}}), std::vector<std::string>{"a"});
  EXPECT_TRUE(next.contains("b{x}"));
  const auto g = next.generation();
  // Finished means gone from the journal: another opening changes nothing.
  redis_store later(parse_redis_uri(uri));
  EXPECT_EQ(later.count(), 2u);
  EXPECT_EQ(later.generation(), g);
  // An uninterrupted resolve needs no later opening.
  later.upsert_and_remove(std::vector<item>{make_item("b{x}", 8.0f)}, std::vector<std::string>{"a"});
  EXPECT_EQ(later.count(), 1u);
  EXPECT_EQ(later.get("b{x}")->vectors.at("signature")[0], 8.0f);
}

TEST(StoreRedisResolve, AnEntryLeftBehindIsFinishedByTheNextOpening) {
  if (!testing::redis_installed()) GTEST_SKIP() << "redis-server is not installed";
  testing::redis_server server(work("standalone"));
  check_resolve_is_finished_by_the_next_opening(server.uri());
}

TEST(StoreRedisResolve, AnEntryLeftBehindIsFinishedOnACluster) {
  if (!testing::redis_installed()) GTEST_SKIP() << "redis-server is not installed";
  testing::redis_cluster cluster(work("cluster"));
  check_resolve_is_finished_by_the_next_opening(cluster.uri());
}

}  // namespace
}  // namespace acg2vec::store
