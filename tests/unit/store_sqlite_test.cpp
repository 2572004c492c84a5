#include <gtest/gtest.h>
#include <sqlite3.h>

#include <filesystem>

#include "core/error.h"
#include "store/sqlite_store.h"

namespace acg2vec::store {
namespace {

namespace fs = std::filesystem;

fs::path fresh_dir(const std::string& name) {
  const fs::path dir = fs::path(ACG2VEC_TEST_WORK) / "store" / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// Everything every backend must do is in store_conformance_test.cpp; this file keeps what is
// SQLite's own: schema migrations, file corruption, the reopened file's schema version.

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

}  // namespace
}  // namespace acg2vec::store
