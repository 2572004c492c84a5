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

#include "support/fixtures.h"
#include "core/error.h"
#include "search/vector_spaces.h"
#include "store/sqlite_store.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

namespace acg2vec::store {
namespace {

using test_support::code_of;
using test_support::fresh_dir;
using test_support::make_item;

namespace fs = std::filesystem;

// Everything every backend must do is in store_conformance_test.cpp; this file keeps what is
// SQLite's own: schema migrations, file corruption, the reopened file's schema version.

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

TEST(StoreSqlite, PersistsAcrossReopenWithGeneration) {
  const auto dir = fresh_dir("store", "reopen");
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
  const auto dir = fresh_dir("store", "migrations");
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
  const auto dir = fresh_dir("store", "corrupt");
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
  const auto dir = fresh_dir("store", "full");
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

// A writer process is killed with SIGKILL at random moments, ten times over. Every item whose
// insert returned before the kill must be present and complete after reopening, nothing may be
// half-written, and the vector index rebuilt on start must find every stored item.
TEST(StoreSqlite, SurvivesSigkillDuringWrites) {
  const auto dir = fresh_dir("store", "sigkill");
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
        search::vector_spaces spaces(dir, db, {space});
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
    search::vector_spaces spaces(dir, db, {space});
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
