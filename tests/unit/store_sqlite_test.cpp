#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <limits>
#include <random>
#include <thread>

#include "core/error.h"
#include "index/vector_spaces.h"
#include "store/sqlite_store.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

namespace acg2vec::store {
namespace {

namespace fs = std::filesystem;

fs::path fresh_dir(const std::string& name) {
  const fs::path dir = fs::path(ACG2VEC_TEST_WORK) / "store" / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

item make_item(const std::string& id, std::int64_t created = 0) {
  item it;
  it.id = id;
  it.source = "/pics/" + id + ".png";
  it.content_hash = "hash-" + id;
  it.width = 640;
  it.height = 480;
  it.metadata = {{"title", "picture " + id}, {"page", 1}};
  it.created_at = created;
  return it;
}

errc code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const error& e) {
    return e.code();
  }
  ADD_FAILURE() << "no acg2vec::error thrown";
  return errc::internal;
}

int user_version(const fs::path& file) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, nullptr);
  int v = -1;
  if (sqlite3_step(s) == SQLITE_ROW) v = sqlite3_column_int(s, 0);
  sqlite3_finalize(s);
  sqlite3_close(db);
  return v;
}

TEST(StoreSqlite, InsertGetRoundTripsEveryField) {
  const auto dir = fresh_dir("roundtrip");
  sqlite_store db(dir / "items.db");
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

TEST(StoreSqlite, StringIdsStayStrings) {
  const auto dir = fresh_dir("string_ids");
  sqlite_store db(dir / "items.db");
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

TEST(StoreSqlite, InsertOfExistingIdIsConflictAndChangesNothing) {
  const auto dir = fresh_dir("conflict");
  sqlite_store db(dir / "items.db");
  db.insert(make_item("a"));
  const auto g = db.generation();
  item again = make_item("a");
  again.source = "changed";
  EXPECT_EQ(code_of([&] { db.insert(again); }), errc::conflict);
  EXPECT_EQ(db.get("a")->source, "/pics/a.png");
  EXPECT_EQ(db.generation(), g);
}

TEST(StoreSqlite, UpsertReplacesAndKeepsCreationTime) {
  const auto dir = fresh_dir("upsert");
  sqlite_store db(dir / "items.db");
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

TEST(StoreSqlite, RemoveDeletesEverything) {
  const auto dir = fresh_dir("remove");
  sqlite_store db(dir / "items.db");
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

TEST(StoreSqlite, VectorsRoundTripBitExact) {
  const auto dir = fresh_dir("vectors");
  std::vector<float> v(1024);
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  for (auto& x : v) x = normal(rng);
  v[0] = -0.0f;
  v[1] = std::numeric_limits<float>::denorm_min();
  v[2] = std::numeric_limits<float>::max();
  {
    sqlite_store db(dir / "items.db");
    item it = make_item("a");
    it.vectors["illust2vec"] = v;
    it.vectors["signature"] = {0.5f, 0.25f};
    db.insert(it);
  }
  sqlite_store db(dir / "items.db");
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

TEST(StoreSqlite, TagQueries) {
  const auto dir = fresh_dir("tags");
  sqlite_store db(dir / "items.db");
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

TEST(StoreSqlite, ListIsNewestFirstWithPaging) {
  const auto dir = fresh_dir("list");
  sqlite_store db(dir / "items.db");
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

TEST(StoreSqlite, BatchInsertIsAtomic) {
  const auto dir = fresh_dir("batch");
  sqlite_store db(dir / "items.db");
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

TEST(StoreSqlite, PersistsAcrossReopenWithGeneration) {
  const auto dir = fresh_dir("reopen");
  std::uint64_t g = 0;
  {
    sqlite_store db(dir / "items.db");
    db.insert(make_item("a"));
    db.insert(make_item("b"));
    db.remove("b");
    g = db.generation();
  }
  sqlite_store db(dir / "items.db");
  EXPECT_EQ(db.generation(), g);
  EXPECT_EQ(db.count(), 1u);
  EXPECT_TRUE(db.get("a"));
  EXPECT_EQ(user_version(dir / "items.db"), sqlite_store::schema_version());
}

TEST(StoreSqlite, MigrationsSetUserVersionAndRejectNewerSchemas) {
  const auto dir = fresh_dir("migrations");
  const auto file = dir / "items.db";
  { sqlite_store db(file); }
  EXPECT_EQ(user_version(file), 1);
  EXPECT_GE(sqlite_store::schema_version(), 1);
  {
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open(file.c_str(), &raw), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(raw, "PRAGMA user_version = 99", nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(raw);
  }
  EXPECT_EQ(code_of([&] { sqlite_store db(file); }), errc::unavailable);
}

TEST(StoreSqlite, CorruptFileIsReported) {
  const auto dir = fresh_dir("corrupt");
  const auto file = dir / "items.db";
  {
    std::FILE* f = std::fopen(file.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    const std::string junk(8192, 'x');
    std::fwrite(junk.data(), 1, junk.size(), f);
    std::fclose(f);
  }
  try {
    sqlite_store db(file);
    FAIL() << "opened a junk file";
  } catch (const error& e) {
    EXPECT_NE(std::string(e.what()).find("not a database"), std::string::npos) << e.what();
  }
}

TEST(StoreSqlite, FullDatabaseIsUnavailableDiskFullAndRollsBack) {
  const auto dir = fresh_dir("full");
  sqlite_store db(dir / "items.db", {.max_pages = 64});
  std::size_t stored = 0;
  try {
    for (int n = 0; n < 1000; ++n) {
      item it = make_item("big" + std::to_string(n));
      it.vectors["v"] = std::vector<float>(4096, 1.0f);  // 16 KiB each
      db.insert(it);
      ++stored;
    }
    FAIL() << "64 pages never filled up";
  } catch (const error& e) {
    EXPECT_EQ(e.code(), errc::unavailable);
    EXPECT_NE(std::string(e.what()).find("disk full"), std::string::npos) << e.what();
  }
  EXPECT_GT(stored, 0u);
  EXPECT_EQ(db.count(), stored);
  EXPECT_FALSE(db.contains("big" + std::to_string(stored)));
  EXPECT_TRUE(db.remove("big0"));  // the store stays usable
}

TEST(StoreSqlite, BadIdsAndFieldsAreRejected) {
  const auto dir = fresh_dir("bad");
  sqlite_store db(dir / "items.db");
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

TEST(StoreSqlite, ConcurrentReadersAndWriter) {
  const auto dir = fresh_dir("concurrent");
  sqlite_store db(dir / "items.db");
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

// A writer process is killed with SIGKILL at random moments, ten times over. Every item whose
// insert returned before the kill must be present and complete after reopening, nothing may be
// half-written, and the vector index rebuilt on start must find every stored item.
TEST(StoreSqlite, SurvivesSigkillDuringWrites) {
  const auto dir = fresh_dir("sigkill");
  const auto file = dir / "items.db";
  const index::space_config space{.name = "emb", .dim = 8, .space_metric = index::metric::inner_product};
  std::set<std::string> acknowledged;
  std::mt19937 rng(99);
  int next_id = 0;
  for (int round = 0; round < 10; ++round) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    const int first = next_id;
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      ::close(fds[0]);
      try {
        sqlite_store db(file);
        index::vector_spaces spaces(dir, db, {space});
        for (int n = first;; ++n) {
          item it = make_item("k" + std::to_string(n));
          it.tags["t"] = {{"a", 0.5f}, {"b", 0.25f}};
          it.scores["s"]["x"] = 1.0f;
          it.vectors["emb"] = std::vector<float>(8, static_cast<float>(n % 7 + 1));
          db.insert(it);
          spaces.add("emb", it.id, it.vectors["emb"]);
          const std::string line = it.id + "\n";
          if (::write(fds[1], line.data(), line.size()) != static_cast<ssize_t>(line.size())) ::_exit(3);
          if (n % 40 == 0) spaces.save_all(db.generation());
        }
      } catch (...) {
        ::_exit(2);
      }
    }
    ::close(fds[1]);
    std::this_thread::sleep_for(std::chrono::milliseconds(150 + rng() % 400));
    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "writer exited by itself with status " << WEXITSTATUS(status);
    std::string received;
    char buffer[4096];
    for (ssize_t r; (r = ::read(fds[0], buffer, sizeof buffer)) > 0;) received.append(buffer, static_cast<std::size_t>(r));
    ::close(fds[0]);
    for (std::size_t start = 0, end; (end = received.find('\n', start)) != std::string::npos; start = end + 1)
      acknowledged.insert(received.substr(start, end - start));
    next_id = first + 100000;  // ids of an unacknowledged, possibly committed insert are never reused

    sqlite_store db(file);
    for (const auto& it : db.list(0, 0, true)) {
      EXPECT_EQ(it.tags.at("t").size(), 2u) << it.id;
      EXPECT_EQ(it.scores.at("s").size(), 1u) << it.id;
      EXPECT_EQ(it.vectors.at("emb").size(), 8u) << it.id;
      EXPECT_EQ(it.metadata.at("title"), "picture " + it.id);
    }
    index::vector_spaces spaces(dir, db, {space});
    EXPECT_EQ(spaces.size("emb"), db.count());
    for (const auto& id : acknowledged) {
      EXPECT_TRUE(db.contains(id)) << "acknowledged insert of " << id << " was lost";
      EXPECT_TRUE(spaces.contains("emb", id)) << id << " is not in the index";
    }
  }
  std::cout << acknowledged.size() << " acknowledged inserts survived 10 kills\n";
  EXPECT_GT(acknowledged.size(), 10u);
}

}  // namespace
}  // namespace acg2vec::store
