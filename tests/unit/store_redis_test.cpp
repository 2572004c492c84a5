// What only the Redis backend has: server restarts with AOF persistence, outages, addresses and
// cluster slot moves. Shared behaviour is in store_conformance_test.cpp.

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "core/error.h"
#include "redis_servers.h"
#include "store/open_store.h"
#include "store/redis_store.h"

namespace acg2vec::store {
namespace {

namespace fs = std::filesystem;

item make_item(const std::string& id) {
  item it;
  it.id = id;
  it.source = "/pics/" + id + ".png";
  it.content_hash = "hash-" + id;
  it.metadata = {{"title", id}};
  it.tags["dd"] = {{"1girl", 0.9f}};
  it.vectors["v"] = {1.0f, 2.0f, 3.0f};
  return it;
}

fs::path work(const std::string& name) { return fs::path(ACG2VEC_TEST_WORK) / "redis" / name; }

template <class F>
bool eventually(F&& f, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    try {
      if (f()) return true;
    } catch (const error&) {
    }
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

TEST(StoreRedis, ParsesAddresses) {
  auto o = parse_redis_uri("redis://user:secret@h1:7000,h2:7001/3?prefix=p1&timeout_ms=250&connect_timeout_ms=100");
  ASSERT_EQ(o.nodes.size(), 2u);
  EXPECT_EQ(o.nodes[0], (std::pair<std::string, int>{"h1", 7000}));
  EXPECT_EQ(o.nodes[1], (std::pair<std::string, int>{"h2", 7001}));
  EXPECT_EQ(o.username, "user");
  EXPECT_EQ(o.password, "secret");
  EXPECT_EQ(o.db, 3);
  EXPECT_EQ(o.prefix, "p1");
  EXPECT_EQ(o.command_timeout.count(), 250);
  EXPECT_EQ(o.connect_timeout.count(), 100);
  o = parse_redis_uri("redis://:pw@localhost");
  EXPECT_EQ(o.password, "pw");
  EXPECT_TRUE(o.username.empty());
  EXPECT_EQ(o.nodes[0].second, 6379);
  for (const char* bad : {"rediss://h:1", "redis://", "redis://h:0", "redis://h:1/x", "redis://h:1?prefix=a:b",
                          "redis://h:1?nope=1", "redis://h:1?timeout_ms=-5"}) {
    try {
      parse_redis_uri(bad);
      ADD_FAILURE() << bad << " was accepted";
    } catch (const error& e) {
      EXPECT_EQ(e.code(), errc::bad_parameter) << bad;
    }
  }
  EXPECT_EQ(redact_store_uri("redis://u:secret@h:1/0"), "redis://***@h:1/0");
}

TEST(StoreRedis, UnreachableServerIsUnavailable) {
  const int port = testing::free_port();
  try {
    open_store("redis://127.0.0.1:" + std::to_string(port) + "?connect_timeout_ms=200", {});
    FAIL() << "connected to nothing";
  } catch (const error& e) {
    EXPECT_EQ(e.code(), errc::unavailable);
    EXPECT_NE(std::string(e.what()).find(std::to_string(port)), std::string::npos) << e.what();
  }
}

TEST(StoreRedis, AcknowledgedWritesSurviveAKilledServer) {
  if (!testing::redis_installed()) GTEST_SKIP() << "redis-server is not installed";
  testing::redis_server server(work("restart"));
  redis_store db(parse_redis_uri(server.uri() + "?max_backoff_ms=100"));
  std::vector<item> batch;
  for (int n = 0; n < 50; ++n) batch.push_back(make_item("i" + std::to_string(n)));
  db.insert_batch(batch);
  db.remove("i7");
  const auto g = db.upsert(make_item("last"));
  server.kill();  // SIGKILL right after the acknowledgement: only what is on disk survives
  server.start();
  // The same store object reconnects on its own.
  ASSERT_TRUE(eventually([&] { return db.count() == 50; }));
  EXPECT_EQ(db.generation(), g);
  EXPECT_FALSE(db.contains("i7"));
  EXPECT_EQ(db.get("i3")->vectors.at("v"), (std::vector<float>{1, 2, 3}));
  EXPECT_EQ(db.search_tags({.all_of = {"1girl"}}).size(), 50u);
  // A new store object sees the same.
  redis_store again(parse_redis_uri(server.uri()));
  EXPECT_EQ(again.count(), 50u);
  EXPECT_EQ(again.find_by_hash("hash-last"), std::optional<std::string>("last"));
}

TEST(StoreRedis, OutageFailsWithUnavailableAndTheSameObjectRecovers) {
  if (!testing::redis_installed()) GTEST_SKIP() << "redis-server is not installed";
  testing::redis_server server(work("outage"));
  redis_store db(parse_redis_uri(server.uri() + "?connect_timeout_ms=200&max_backoff_ms=200"));
  db.insert(make_item("before"));
  server.kill();
  for (const auto& call : std::vector<std::function<void()>>{
           [&] { (void)db.get("before"); }, [&] { db.insert(make_item("during")); }, [&] { (void)db.count(); },
           [&] { (void)db.search_tags({.all_of = {"1girl"}}); }, [&] { (void)db.generation(); }}) {
    try {
      call();
      ADD_FAILURE() << "a call succeeded with the server down";
    } catch (const error& e) {
      EXPECT_EQ(e.code(), errc::unavailable) << e.what();
      EXPECT_NE(std::string(e.what()).find("redis at 127.0.0.1:"), std::string::npos) << e.what();
    }
  }
  server.start();
  ASSERT_TRUE(eventually([&] { return db.contains("before"); }));
  db.insert(make_item("after"));
  EXPECT_EQ(db.count(), 2u);
  EXPECT_FALSE(db.contains("during"));
}

TEST(StoreRedis, DatabaseSelectionAndPasswordAreUsed) {
  if (!testing::redis_installed()) GTEST_SKIP() << "redis-server is not installed";
  testing::redis_server server(work("auth"));
  {
    redis_store db(parse_redis_uri(server.uri() + "/2"));
    db.insert(make_item("in-db-2"));
    redis_store other(parse_redis_uri(server.uri() + "/0"));
    EXPECT_EQ(other.count(), 0u);
    EXPECT_EQ(db.count(), 1u);
    redis_store same(parse_redis_uri(server.uri() + "/2"));
    EXPECT_TRUE(same.contains("in-db-2"));
  }
  // Turn on a password: connections without it are refused as unavailable, with it they work.
  timeval tv{1, 0};
  redisContext* c = redisConnectWithTimeout("127.0.0.1", server.port(), tv);
  ASSERT_TRUE(c != nullptr && c->err == 0);
  freeReplyObject(redisCommand(c, "CONFIG SET requirepass s3cret"));
  redisFree(c);
  try {
    redis_store db(parse_redis_uri(server.uri()));
    FAIL() << "connected without the password";
  } catch (const error& e) {
    EXPECT_EQ(e.code(), errc::unavailable) << e.what();
  }
  redis_store db(parse_redis_uri("redis://:s3cret@127.0.0.1:" + std::to_string(server.port()) + "/2"));
  EXPECT_TRUE(db.contains("in-db-2"));
}

TEST(StoreRedisCluster, ItemsSpreadOverNodesAndSurviveASlotMove) {
  if (!testing::redis_installed()) GTEST_SKIP() << "redis-server is not installed";
  testing::redis_cluster cluster(work("cluster-move"));
  redis_store db(parse_redis_uri(cluster.uri()));
  ASSERT_TRUE(db.cluster_mode());
  std::vector<item> batch;
  for (int n = 0; n < 200; ++n) batch.push_back(make_item("c" + std::to_string(n)));
  db.insert_batch(batch);
  int nodes_with_items = 0;
  for (int n = 0; n < 3; ++n) {
    timeval tv{1, 0};
    redisContext* c = redisConnectWithTimeout("127.0.0.1", cluster.node(n).port(), tv);
    auto* r = static_cast<redisReply*>(redisCommand(c, "DBSIZE"));
    if (r->integer > 10) ++nodes_with_items;
    freeReplyObject(r);
    redisFree(c);
  }
  EXPECT_EQ(nodes_with_items, 3) << "item keys should be spread over all masters";

  // Move 1000 slots (with their keys) from node 0 to node 1 behind the store's back: its slot
  // map is now stale and it must follow the MOVED redirections.
  const auto node_id = [&](int n) {
    timeval tv{1, 0};
    redisContext* c = redisConnectWithTimeout("127.0.0.1", cluster.node(n).port(), tv);
    auto* r = static_cast<redisReply*>(redisCommand(c, "CLUSTER MYID"));
    std::string id(r->str, r->len);
    freeReplyObject(r);
    redisFree(c);
    return id;
  };
  const pid_t pid = testing::spawn({"/usr/bin/redis-cli", "--cluster", "reshard",
                                    "127.0.0.1:" + std::to_string(cluster.node(0).port()), "--cluster-from",
                                    node_id(0), "--cluster-to", node_id(1), "--cluster-slots", "1000",
                                    "--cluster-yes"});
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(db.count(), 200u);
  for (int n = 0; n < 200; ++n) ASSERT_TRUE(db.contains("c" + std::to_string(n))) << n;
  for (int n = 200; n < 260; ++n) db.insert(make_item("c" + std::to_string(n)));
  EXPECT_EQ(db.count(), 260u);
  EXPECT_EQ(db.list(0, 0, true).size(), 260u);
}

// Not a test: timings for docs/scale-out.md. Run with
//   acg2vec_tests --gtest_also_run_disabled_tests --gtest_filter='*StoreThroughput*'
TEST(StoreRedis, DISABLED_StoreThroughput) {
  if (!testing::redis_installed()) GTEST_SKIP() << "redis-server is not installed";
  testing::redis_server server(work("bench"));
  const auto sqlite_file = work("bench-sqlite") / "items.db";
  fs::remove_all(sqlite_file.parent_path());
  fs::create_directories(sqlite_file.parent_path());
  std::vector<std::pair<std::string, std::unique_ptr<item_store>>> stores;
  stores.emplace_back("sqlite", open_store("sqlite:" + sqlite_file.string(), {}));
  stores.emplace_back("redis", open_store(server.uri(), {}));
  std::vector<item> items;
  for (int n = 0; n < 2000; ++n) {
    item it = make_item("b" + std::to_string(n));
    it.vectors["v"] = std::vector<float>(512, 0.5f);
    it.tags["dd"] = {{"1girl", 0.9f}, {n % 2 ? "solo" : "cat", 0.8f}};
    items.push_back(std::move(it));
  }
  for (auto& [name, db] : stores) {
    const auto t0 = std::chrono::steady_clock::now();
    for (std::size_t start = 0; start < items.size(); start += 100)
      db->insert_batch(std::span<const item>(items).subspan(start, 100));
    const auto t1 = std::chrono::steady_clock::now();
    for (int n = 0; n < 2000; ++n) (void)db->get("b" + std::to_string(n));
    const auto t2 = std::chrono::steady_clock::now();
    for (int n = 0; n < 20; ++n) (void)db->search_tags({.all_of = {"1girl", "solo"}, .limit = 20});
    const auto t3 = std::chrono::steady_clock::now();
    std::size_t vectors = 0;
    db->for_each_vector("v", [&](const std::string&, std::span<const float>) { ++vectors; });
    const auto t4 = std::chrono::steady_clock::now();
    const auto s = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
    std::printf("%s: insert_batch %.0f items/s, get %.3f ms, search_tags(2 tags, 1000 matches) %.1f ms, "
                "for_each_vector %.0f vectors/s\n",
                name.c_str(), 2000 / s(t0, t1), 1000 * s(t1, t2) / 2000, 1000 * s(t2, t3) / 20, vectors / s(t3, t4));
  }
}

}  // namespace
}  // namespace acg2vec::store
