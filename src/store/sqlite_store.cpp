#include "store/sqlite_store.h"

#include "store/sqlite_db.h"

#include "core/clock.h"
#include "core/error.h"

#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include <chrono>
#include <cstring>
#include <set>
#include <unordered_map>

namespace acg2vec::store {
namespace {

// Schema migrations, applied in order; migration N leaves PRAGMA user_version = N.
// To change the schema, append a migration; never edit one that has shipped.
struct migration {
  int version;
  const char* sql;
};

constexpr migration migrations[] = {
    {1, R"sql(
CREATE TABLE items (
  id           TEXT PRIMARY KEY NOT NULL,
  numeric_id   INTEGER NOT NULL DEFAULT 0,
  source       TEXT NOT NULL DEFAULT '',
  content_hash TEXT NOT NULL DEFAULT '',
  width        INTEGER NOT NULL DEFAULT 0,
  height       INTEGER NOT NULL DEFAULT 0,
  metadata     TEXT NOT NULL DEFAULT 'null',
  created_at   INTEGER NOT NULL,
  updated_at   INTEGER NOT NULL
);
CREATE INDEX items_by_hash ON items(content_hash) WHERE content_hash <> '';
CREATE INDEX items_by_created ON items(created_at);
CREATE TABLE tags (
  item_id TEXT NOT NULL,
  tagger  TEXT NOT NULL,
  tag     TEXT NOT NULL,
  score   REAL NOT NULL,
  PRIMARY KEY (item_id, tagger, tag)
) WITHOUT ROWID;
CREATE INDEX tags_by_tagger_tag ON tags(tagger, tag, score);
CREATE INDEX tags_by_tag ON tags(tag, score);
CREATE TABLE scores (
  item_id TEXT NOT NULL,
  scorer  TEXT NOT NULL,
  name    TEXT NOT NULL,
  value   REAL NOT NULL,
  PRIMARY KEY (item_id, scorer, name)
) WITHOUT ROWID;
CREATE INDEX scores_by_name ON scores(scorer, name, value);
CREATE TABLE vectors (
  item_id TEXT NOT NULL,
  space   TEXT NOT NULL,
  dim     INTEGER NOT NULL,
  data    BLOB NOT NULL,
  PRIMARY KEY (item_id, space)
) WITHOUT ROWID;
CREATE INDEX vectors_by_space ON vectors(space);
CREATE TABLE meta (
  key   TEXT PRIMARY KEY NOT NULL,
  value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO meta(key, value) VALUES ('generation', 0);
)sql"},
};

constexpr int latest_version = migrations[std::size(migrations) - 1].version;

std::uint64_t bump_generation(sqlite_connection& c) {
  statement(c, "UPDATE meta SET value = value + 1 WHERE key = 'generation'").run();
  statement s(c, "SELECT value FROM meta WHERE key = 'generation'");
  if (!s.step()) fail(errc::internal, "database has no generation counter");
  return static_cast<std::uint64_t>(s.int64(0));
}

std::optional<item> load_item(sqlite_connection& c, std::string_view id, bool with_vectors) {
  item it;
  {
    statement s(c,
                "SELECT id, numeric_id, source, content_hash, width, height, metadata, created_at, "
                "updated_at FROM items WHERE id = ?");
    s.bind(1, id);
    if (!s.step()) return std::nullopt;
    it.id = s.text(0);
    it.numeric_id = s.int64(1) != 0;
    it.source = s.text(2);
    it.content_hash = s.text(3);
    it.width = static_cast<int>(s.int64(4));
    it.height = static_cast<int>(s.int64(5));
    try {
      it.metadata = nlohmann::json::parse(s.text(6));
    } catch (const nlohmann::json::exception& e) {
      fail(errc::internal, "item '{}' has unreadable metadata in the database: {}", it.id, e.what());
    }
    it.created_at = s.int64(7);
    it.updated_at = s.int64(8);
  }
  {
    statement s(c, "SELECT tagger, tag, score FROM tags WHERE item_id = ? ORDER BY tagger, score DESC, tag");
    s.bind(1, id);
    while (s.step()) it.tags[s.text(0)].emplace_back(s.text(1), static_cast<float>(s.real(2)));
  }
  {
    statement s(c, "SELECT scorer, name, value FROM scores WHERE item_id = ?");
    s.bind(1, id);
    while (s.step()) it.scores[s.text(0)][s.text(1)] = static_cast<float>(s.real(2));
  }
  if (with_vectors) {
    statement s(c, "SELECT space, dim, data FROM vectors WHERE item_id = ?");
    s.bind(1, id);
    while (s.step()) {
      const auto bytes = s.blob(2);
      const auto dim = static_cast<std::size_t>(s.int64(1));
      if (bytes.size() != dim * sizeof(float))
        fail(errc::internal, "item '{}': vector '{}' in the database has the wrong size", it.id,
             s.text(0));
      std::vector<float> v(dim);
      if (dim > 0) std::memcpy(v.data(), bytes.data(), bytes.size());
      it.vectors.emplace(s.text(0), std::move(v));
    }
  }
  return it;
}

}  // namespace


// Borrowed reader connection, returned to the pool on destruction.
class sqlite_store::reader_lease {
 public:
  reader_lease(const sqlite_store& store, std::unique_ptr<sqlite_connection> c)
      : store_(store), c_(std::move(c)) {}
  ~reader_lease() {
    if (c_) store_.release_reader(std::move(c_));
  }
  reader_lease(reader_lease&& other) noexcept : store_(other.store_), c_(std::move(other.c_)) {}
  reader_lease(const reader_lease&) = delete;
  reader_lease& operator=(const reader_lease&) = delete;
  reader_lease& operator=(reader_lease&&) = delete;
  sqlite_connection& operator*() const { return *c_; }

 private:
  const sqlite_store& store_;
  std::unique_ptr<sqlite_connection> c_;
};

sqlite_store::sqlite_store(const std::filesystem::path& file, sqlite_options options)
    : file_(file), options_(options) {
  if (options_.max_readers == 0) options_.max_readers = 1;
  writer_ = std::make_unique<sqlite_connection>(file_, true, options_);
  auto& c = *writer_;
  {
    write_transaction tx(c);
    const int current = std::stoi(c.query_text("PRAGMA user_version"));
    if (current > latest_version)
      fail(errc::unavailable,
           "database {} has schema version {}, newer than this build understands ({})",
           file_.string(), current, latest_version);
    for (const auto& m : migrations) {
      if (m.version <= current) continue;
      spdlog::info("database {}: applying schema migration {}", file_.string(), m.version);
      c.exec(m.sql);
      c.exec(fmt::format("PRAGMA user_version = {}", m.version).c_str());
    }
    tx.commit();
  }
  statement s(c, "SELECT value FROM meta WHERE key = 'generation'");
  if (!s.step()) fail(errc::internal, "database {} has no generation counter", file_.string());
  generation_ = static_cast<std::uint64_t>(s.int64(0));
}

sqlite_store::~sqlite_store() = default;

int sqlite_store::schema_version() noexcept { return latest_version; }

sqlite_store::reader_lease sqlite_store::acquire_reader() const {
  std::unique_lock lock(readers_mutex_);
  readers_cv_.wait(lock, [&] { return !idle_readers_.empty() || open_readers_ < options_.max_readers; });
  if (!idle_readers_.empty()) {
    auto c = std::move(idle_readers_.back());
    idle_readers_.pop_back();
    return reader_lease(*this, std::move(c));
  }
  ++open_readers_;
  lock.unlock();
  try {
    return reader_lease(*this, std::make_unique<sqlite_connection>(file_, false, options_));
  } catch (...) {
    std::lock_guard relock(readers_mutex_);
    --open_readers_;
    readers_cv_.notify_one();
    throw;
  }
}

void sqlite_store::release_reader(std::unique_ptr<sqlite_connection> c) const {
  {
    std::lock_guard lock(readers_mutex_);
    idle_readers_.push_back(std::move(c));
  }
  readers_cv_.notify_one();
}

std::uint64_t sqlite_store::insert(const item& it) { return write({&it, 1}, write_mode::insert); }
std::uint64_t sqlite_store::upsert(const item& it) { return write({&it, 1}, write_mode::upsert); }
std::uint64_t sqlite_store::insert_batch(std::span<const item> items) {
  return write(items, write_mode::insert);
}
std::uint64_t sqlite_store::upsert_batch(std::span<const item> items) {
  return write(items, write_mode::upsert);
}

std::uint64_t sqlite_store::write(std::span<const item> items, write_mode mode) {
  // Everything that can be checked without the database is checked before the transaction.
  const std::vector<std::string> metadata_text = prepare_write_batch(items, mode == write_mode::insert);
  if (items.empty()) return generation();

  std::lock_guard lock(write_mutex_);
  auto& c = *writer_;
  write_transaction tx(c);
  write_rows(c, items, mode, metadata_text);
  const std::uint64_t g = bump_generation(c);
  tx.commit();
  generation_ = g;
  return g;
}

void sqlite_store::write_rows(sqlite_connection& c, std::span<const item> items, write_mode mode,
                              const std::vector<std::string>& metadata_text) {
  const std::int64_t now = unix_time_ms();
  for (std::size_t n = 0; n < items.size(); ++n) {
    const item& it = items[n];
    std::optional<std::int64_t> existing_created;
    {
      statement s(c, "SELECT created_at FROM items WHERE id = ?");
      s.bind(1, it.id);
      if (s.step()) existing_created = s.int64(0);
    }
    if (existing_created && mode == write_mode::insert)
      fail(errc::conflict, "item '{}' already exists", it.id);
    const std::int64_t created = it.created_at != 0 ? it.created_at : existing_created.value_or(now);
    const std::int64_t updated = it.updated_at != 0 ? it.updated_at : now;
    if (existing_created) {
      statement s(c,
                  "UPDATE items SET numeric_id = ?, source = ?, content_hash = ?, width = ?, height = ?, "
                  "metadata = ?, created_at = ?, updated_at = ? WHERE id = ?");
      s.bind(1, std::int64_t{it.numeric_id}).bind(2, it.source).bind(3, it.content_hash);
      s.bind(4, std::int64_t{it.width}).bind(5, std::int64_t{it.height}).bind(6, metadata_text[n]);
      s.bind(7, created).bind(8, updated).bind(9, it.id);
      s.run();
      for (const char* sql : {"DELETE FROM tags WHERE item_id = ?", "DELETE FROM scores WHERE item_id = ?",
                              "DELETE FROM vectors WHERE item_id = ?"}) {
        statement d(c, sql);
        d.bind(1, it.id).run();
      }
    } else {
      statement s(c,
                  "INSERT INTO items(id, numeric_id, source, content_hash, width, height, metadata, "
                  "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
      s.bind(1, it.id).bind(2, std::int64_t{it.numeric_id}).bind(3, it.source).bind(4, it.content_hash);
      s.bind(5, std::int64_t{it.width}).bind(6, std::int64_t{it.height}).bind(7, metadata_text[n]);
      s.bind(8, created).bind(9, updated);
      s.run();
    }
    for (const auto& [tagger, tags] : it.tags) {
      for (const auto& [tag, score] : tags) {
        // A tag listed twice by one tagger keeps its last score.
        statement s(c, "INSERT OR REPLACE INTO tags(item_id, tagger, tag, score) VALUES (?, ?, ?, ?)");
        s.bind(1, it.id).bind(2, tagger).bind(3, tag).bind(4, static_cast<double>(score)).run();
      }
    }
    for (const auto& [scorer, values] : it.scores) {
      for (const auto& [name, value] : values) {
        statement s(c, "INSERT INTO scores(item_id, scorer, name, value) VALUES (?, ?, ?, ?)");
        s.bind(1, it.id).bind(2, scorer).bind(3, name).bind(4, static_cast<double>(value)).run();
      }
    }
    for (const auto& [space, v] : it.vectors) {
      // Raw host-order float32: bit-exact round trip, no parsing.
      statement s(c, "INSERT INTO vectors(item_id, space, dim, data) VALUES (?, ?, ?, ?)");
      s.bind(1, it.id).bind(2, space).bind(3, static_cast<std::int64_t>(v.size()));
      s.bind_blob(4, v.data(), v.size() * sizeof(float)).run();
    }
  }
}

std::uint64_t sqlite_store::upsert_and_remove(std::span<const item> upserts, std::span<const std::string> removals,
                                              const std::function<void()>& before_commit) {
  const std::vector<std::string> metadata_text = prepare_write_batch(upserts, false);
  for (const auto& id : removals) validate_item_id(id);
  std::lock_guard lock(write_mutex_);
  auto& c = *writer_;
  write_transaction tx(c);
  write_rows(c, upserts, write_mode::upsert, metadata_text);
  for (const auto& id : removals) {
    for (const char* sql : {"DELETE FROM items WHERE id = ?", "DELETE FROM tags WHERE item_id = ?",
                            "DELETE FROM scores WHERE item_id = ?", "DELETE FROM vectors WHERE item_id = ?"}) {
      statement d(c, sql);
      d.bind(1, id).run();
    }
  }
  if (before_commit) before_commit();
  const std::uint64_t g = bump_generation(c);
  tx.commit();
  generation_ = g;
  return g;
}

bool sqlite_store::remove(std::string_view id) {
  validate_item_id(id);
  std::lock_guard lock(write_mutex_);
  auto& c = *writer_;
  write_transaction tx(c);
  statement s(c, "DELETE FROM items WHERE id = ?");
  s.bind(1, id).run();
  if (sqlite3_changes(c.db()) == 0) return false;
  for (const char* sql : {"DELETE FROM tags WHERE item_id = ?", "DELETE FROM scores WHERE item_id = ?",
                          "DELETE FROM vectors WHERE item_id = ?"}) {
    statement d(c, sql);
    d.bind(1, id).run();
  }
  const std::uint64_t g = bump_generation(c);
  tx.commit();
  generation_ = g;
  return true;
}

std::optional<item> sqlite_store::get(std::string_view id) const {
  validate_item_id(id);
  auto lease = acquire_reader();
  read_transaction tx(*lease);
  return load_item(*lease, id, true);
}

bool sqlite_store::contains(std::string_view id) const {
  validate_item_id(id);
  auto lease = acquire_reader();
  statement s(*lease, "SELECT 1 FROM items WHERE id = ?");
  s.bind(1, id);
  return s.step();
}

std::optional<std::string> sqlite_store::find_by_hash(std::string_view hash) const {
  if (hash.empty()) return std::nullopt;
  auto lease = acquire_reader();
  statement s(*lease,
              "SELECT id FROM items WHERE content_hash = ? AND content_hash <> '' "
              "ORDER BY created_at, rowid LIMIT 1");
  s.bind(1, hash);
  if (!s.step()) return std::nullopt;
  return s.text(0);
}

std::size_t sqlite_store::count() const {
  auto lease = acquire_reader();
  statement s(*lease, "SELECT COUNT(*) FROM items");
  return s.step() ? static_cast<std::size_t>(s.int64(0)) : 0;
}

std::vector<item> sqlite_store::list(std::size_t offset, std::size_t limit, bool with_vectors) const {
  auto lease = acquire_reader();
  read_transaction tx(*lease);
  std::vector<std::string> ids;
  {
    statement s(*lease, "SELECT id FROM items ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?");
    s.bind(1, limit == 0 ? std::int64_t{-1} : static_cast<std::int64_t>(limit));
    s.bind(2, static_cast<std::int64_t>(offset));
    while (s.step()) ids.push_back(s.text(0));
  }
  std::vector<item> items;
  items.reserve(ids.size());
  for (const auto& id : ids) {
    if (auto it = load_item(*lease, id, with_vectors)) items.push_back(std::move(*it));
  }
  return items;
}

void sqlite_store::for_each_vector(
    std::string_view space,
    const std::function<void(const std::string& id, std::span<const float> v)>& f) const {
  auto lease = acquire_reader();
  read_transaction tx(*lease);
  statement s(*lease, "SELECT item_id, dim, data FROM vectors WHERE space = ?");
  s.bind(1, space);
  std::vector<float> buffer;  // BLOB memory carries no alignment guarantee for float
  while (s.step()) {
    const auto bytes = s.blob(2);
    const auto dim = static_cast<std::size_t>(s.int64(1));
    const std::string id = s.text(0);
    if (bytes.size() != dim * sizeof(float))
      fail(errc::internal, "item '{}': vector '{}' in the database has the wrong size", id, space);
    buffer.resize(dim);
    if (dim > 0) std::memcpy(buffer.data(), bytes.data(), bytes.size());
    f(id, std::span<const float>(buffer));
  }
}

std::vector<std::string> sqlite_store::search_tags(const tag_query& q) const {
  // Built per query (the shape depends on how many tags are given); every value is bound.
  std::string sql = "SELECT i.id FROM items i WHERE 1";
  struct param {
    bool is_text;
    std::string text;
    double number;
  };
  std::vector<param> params;
  const auto tag_filter = [&](const std::vector<std::string>& tags) {
    std::string s = "SELECT t.item_id FROM tags t WHERE t.score >= ? AND t.tag IN (";
    params.push_back({false, {}, static_cast<double>(q.min_score)});
    for (std::size_t k = 0; k < tags.size(); ++k) {
      s += k == 0 ? "?" : ", ?";
      params.push_back({true, tags[k], 0});
    }
    s += ")";
    if (q.tagger) {
      s += " AND t.tagger = ?";
      params.push_back({true, *q.tagger, 0});
    }
    return s;
  };
  for (const auto& tag : q.all_of) sql += " AND i.id IN (" + tag_filter({tag}) + ")";
  if (!q.any_of.empty()) sql += " AND i.id IN (" + tag_filter(q.any_of) + ")";
  if (!q.none_of.empty()) sql += " AND i.id NOT IN (" + tag_filter(q.none_of) + ")";
  if (q.rating) {
    // Both spellings of a rating tag (store::is_rating_tag): "rating:<r>" and, for the four WD names,
    // the bare name.
    std::string bare_names;
    for (auto r : bare_rating_tags) bare_names += (bare_names.empty() ? "'" : ", '") + std::string(r) + "'";
    sql += " AND EXISTS (SELECT 1 FROM tags r WHERE r.item_id = i.id AND r.tag IN (?, ?)"
           " AND r.score = (SELECT MAX(r2.score) FROM tags r2 WHERE r2.item_id = i.id"
           " AND r2.tagger = r.tagger AND (r2.tag LIKE 'rating:%' OR r2.tag IN (" + bare_names + ")))";
    params.push_back({true, "rating:" + *q.rating, 0});
    params.push_back({true, is_rating_tag(*q.rating) && !q.rating->starts_with("rating:") ? *q.rating
                                                                                             : "rating:" + *q.rating, 0});
    if (q.tagger) {
      sql += " AND r.tagger = ?";
      params.push_back({true, *q.tagger, 0});
    }
    sql += ")";
  }
  for (const auto& m : q.score_minimums) {
    sql +=
        " AND i.id IN (SELECT s.item_id FROM scores s WHERE s.scorer = ? AND s.name = ?"
        " AND s.value >= ?)";
    params.push_back({true, m.scorer, 0});
    params.push_back({true, m.name, 0});
    params.push_back({false, {}, static_cast<double>(m.minimum)});
  }
  for (const auto& m : q.score_maximums) {
    sql +=
        " AND i.id IN (SELECT s.item_id FROM scores s WHERE s.scorer = ? AND s.name = ?"
        " AND s.value <= ?)";
    params.push_back({true, m.scorer, 0});
    params.push_back({true, m.name, 0});
    params.push_back({false, {}, static_cast<double>(m.maximum)});
  }
  const char* direction = q.ascending ? "ASC" : "DESC";
  sql += " ORDER BY ";
  if (q.order_by_score) {
    // Items without the score sort after every item that has it, in either direction.
    sql += fmt::format(
        "(SELECT o.value FROM scores o WHERE o.item_id = i.id AND o.scorer = ? AND o.name = ?) {} NULLS LAST, ",
        direction);
    params.push_back({true, q.order_by_score->scorer, 0});
    params.push_back({true, q.order_by_score->name, 0});
  }
  sql += fmt::format("i.created_at {0}, i.rowid {0} LIMIT ? OFFSET ?", q.ascending && !q.order_by_score ? "ASC" : "DESC");

  auto lease = acquire_reader();
  statement s(*lease, sql, false);
  int index = 1;
  for (const auto& p : params) {
    if (p.is_text)
      s.bind(index++, std::string_view(p.text));
    else
      s.bind(index++, p.number);
  }
  s.bind(index++, q.limit == 0 ? std::int64_t{-1} : static_cast<std::int64_t>(q.limit));
  s.bind(index++, static_cast<std::int64_t>(q.offset));
  std::vector<std::string> ids;
  while (s.step()) ids.push_back(s.text(0));
  return ids;
}

std::vector<tag_count> sqlite_store::tag_counts(std::string_view prefix, std::size_t limit, float min_score,
                                                const std::optional<std::string>& tagger) const {
  // The prefix as a byte range [prefix, prefix with its last byte raised): text compares bytewise
  // (BINARY collation), and UTF-8 never has a 0xFF byte, so the raised byte cannot overflow.
  std::string sql = "SELECT tag, COUNT(DISTINCT item_id) AS n FROM tags WHERE score >= ?";
  std::string upper(prefix);
  if (!prefix.empty()) {
    upper.back() = static_cast<char>(static_cast<unsigned char>(upper.back()) + 1);
    sql += " AND tag >= ? AND tag < ?";
  }
  if (tagger) sql += " AND tagger = ?";
  sql += " GROUP BY tag ORDER BY n DESC, tag ASC LIMIT ?";
  auto lease = acquire_reader();
  statement s(*lease, sql, false);
  int index = 1;
  s.bind(index++, static_cast<double>(min_score));
  if (!prefix.empty()) {
    s.bind(index++, prefix);
    s.bind(index++, std::string_view(upper));
  }
  if (tagger) s.bind(index++, std::string_view(*tagger));
  s.bind(index++, limit == 0 ? std::int64_t{-1} : static_cast<std::int64_t>(limit));
  std::vector<tag_count> out;
  while (s.step()) out.push_back({s.text(0), static_cast<std::size_t>(s.int64(1))});
  return out;
}

std::map<std::string, space_count> sqlite_store::vector_counts() const {
  auto lease = acquire_reader();
  statement s(*lease, "SELECT space, COUNT(*), MAX(dim) FROM vectors GROUP BY space");
  std::map<std::string, space_count> counts;
  while (s.step()) counts[s.text(0)] = {static_cast<std::size_t>(s.int64(1)), static_cast<int>(s.int64(2))};
  return counts;
}

std::uint64_t sqlite_store::generation() const { return generation_.load(); }

}  // namespace acg2vec::store
