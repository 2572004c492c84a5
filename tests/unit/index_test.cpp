#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <unordered_set>

#include "support/fixtures.h"
#include "core/error.h"
#include "index/brute_index.h"
#include "index/faiss_index.h"
#include "index/open_index.h"
#include "search/vector_spaces.h"
#include "store/sqlite_store.h"

namespace acg2vec::index {
namespace {

using test_support::code_of;
using test_support::fresh_dir;

namespace fs = std::filesystem;

// Gaussian clusters: real embeddings are clustered, and uniform noise would make every
// neighbour almost equally far (a meaningless recall test).
struct dataset {
  int dim = 0;
  std::vector<std::string> ids;
  std::vector<float> data;
  std::vector<float> queries;
  std::span<const float> row(std::size_t i) const {
    return {data.data() + i * static_cast<std::size_t>(dim), static_cast<std::size_t>(dim)};
  }
  std::span<const float> query(std::size_t i) const {
    return {queries.data() + i * static_cast<std::size_t>(dim), static_cast<std::size_t>(dim)};
  }
  std::size_t size() const { return ids.size(); }
  std::size_t query_count() const { return queries.size() / static_cast<std::size_t>(dim); }
};

dataset make_dataset(std::size_t n, int dim, std::size_t clusters, std::size_t queries, unsigned seed) {
  dataset ds;
  ds.dim = dim;
  const auto d = static_cast<std::size_t>(dim);
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> centres(clusters * d);
  for (auto& x : centres) x = normal(rng);
  std::uniform_int_distribution<std::size_t> pick(0, clusters - 1);
  ds.data.resize(n * d);
  ds.ids.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t c = pick(rng);
    for (std::size_t j = 0; j < d; ++j) ds.data[i * d + j] = centres[c * d + j] + 0.35f * normal(rng);
    ds.ids[i] = "item-" + std::to_string(i);
  }
  ds.queries.resize(queries * d);
  for (std::size_t q = 0; q < queries; ++q) {
    const std::size_t c = pick(rng);
    for (std::size_t j = 0; j < d; ++j) ds.queries[q * d + j] = centres[c * d + j] + 0.35f * normal(rng);
  }
  return ds;
}

template <class Index>
void fill(Index& index, const dataset& ds) {
  for (std::size_t i = 0; i < ds.size(); ++i) index.add(ds.ids[i], ds.row(i));
}

double cpu_seconds() { return static_cast<double>(std::clock()) / CLOCKS_PER_SEC; }

double recall_at(const vector_index& tested, const brute_index& oracle, const dataset& ds, std::size_t k) {
  std::size_t found = 0;
  double oracle_time = 0;
  double tested_time = 0;
  std::size_t wanted = 0;
  for (std::size_t q = 0; q < ds.query_count(); ++q) {
    const double t0 = cpu_seconds();
    const auto truth = oracle.search(ds.query(q), k);
    const double t1 = cpu_seconds();
    const auto got = tested.search(ds.query(q), k);
    oracle_time += t1 - t0;
    tested_time += cpu_seconds() - t1;
    EXPECT_EQ(got.size(), k);
    std::unordered_set<std::string> got_ids;
    for (const auto& h : got) got_ids.insert(h.id);
    for (const auto& h : truth) found += got_ids.count(h.id);
    wanted += truth.size();
  }
  std::cout << "exact scan " << oracle_time << " s, tested index " << tested_time << " s CPU\n";
  return static_cast<double>(found) / static_cast<double>(wanted);
}

TEST(IndexBrute, ExactL2OrderingComputedByHand) {
  brute_index index(2, metric::l2);
  index.add("a", std::vector<float>{0, 0});
  index.add("b", std::vector<float>{1, 0});
  index.add("c", std::vector<float>{0, 2});
  const auto hits = index.search(std::vector<float>{0.9f, 0.0f}, 3);
  ASSERT_EQ(hits.size(), 3u);
  EXPECT_EQ(hits[0].id, "b");
  EXPECT_NEAR(hits[0].distance, 0.1f, 1e-6);
  EXPECT_NEAR(hits[0].score, 1.0f / 1.1f, 1e-6);
  EXPECT_EQ(hits[1].id, "a");
  EXPECT_NEAR(hits[1].distance, 0.9f, 1e-6);
  EXPECT_EQ(hits[2].id, "c");
  EXPECT_NEAR(hits[2].distance, std::sqrt(0.81f + 4.0f), 1e-6);
  EXPECT_TRUE(index.remove("b"));
  EXPECT_FALSE(index.remove("b"));
  EXPECT_EQ(index.search(std::vector<float>{0.9f, 0.0f}, 1)[0].id, "a");
  EXPECT_EQ(index.size(), 2u);
}

TEST(IndexBrute, InnerProductNormalises) {
  brute_index index(2, metric::inner_product);
  index.add("x", std::vector<float>{10, 0});
  index.add("diag", std::vector<float>{1, 1});
  const auto hits = index.search(std::vector<float>{3, 0}, 2);
  ASSERT_EQ(hits.size(), 2u);
  EXPECT_EQ(hits[0].id, "x");
  EXPECT_NEAR(hits[0].score, 1.0f, 1e-6);
  EXPECT_NEAR(hits[0].distance, 0.0f, 1e-3);
  EXPECT_NEAR(hits[1].score, std::sqrt(0.5f), 1e-6);
  EXPECT_EQ(code_of([&] { index.add("zero", std::vector<float>{0, 0}); }), errc::bad_parameter);
  EXPECT_EQ(code_of([&] { index.add("short", std::vector<float>{1}); }), errc::bad_parameter);
}

// Flat FAISS and the scan must agree on every id and rank; scores to float rounding (1e-5),
// since FAISS sums in a different order (SIMD).
TEST(IndexFaiss, FlatEqualsBruteForce) {
  const auto ds = make_dataset(5000, 32, 50, 40, 11);
  for (const metric m : {metric::inner_product, metric::l2}) {
    SCOPED_TRACE(std::string(to_string(m)));
    brute_index brute(ds.dim, m);
    faiss_index flat(ds.dim, m, {.kind = index_kind::flat});
    fill(brute, ds);
    fill(flat, ds);
    EXPECT_EQ(flat.current_kind(), index_kind::flat);
    const id_filter even = [](std::string_view id) { return (id.back() - '0') % 2 == 0; };
    for (std::size_t q = 0; q < ds.query_count(); ++q) {
      for (const id_filter* filter : {static_cast<const id_filter*>(nullptr), &even}) {
        const auto want = brute.search(ds.query(q), 20, filter);
        const auto got = flat.search(ds.query(q), 20, filter);
        ASSERT_EQ(got.size(), want.size());
        for (std::size_t i = 0; i < want.size(); ++i) {
          EXPECT_EQ(got[i].id, want[i].id) << "query " << q << " rank " << i;
          EXPECT_NEAR(got[i].score, want[i].score, 1e-5);
          EXPECT_NEAR(got[i].distance, want[i].distance, 1e-3);
          if (filter != nullptr) {
            EXPECT_TRUE(even(got[i].id));
          }
        }
      }
    }
  }
}

// Recall test of the approximate kinds: 100,000 vectors of 64 dimensions in 500 Gaussian clusters,
// 100 queries, recall@10 against the exact scan must be at least 0.95.
class IndexRecall : public ::testing::Test {
 protected:
  static constexpr std::size_t n = 100000;
  static constexpr int dim = 64;
  static constexpr std::size_t k = 10;
  static constexpr double required_recall = 0.95;

  static void SetUpTestSuite() {
    const double t0 = cpu_seconds();
    data_ = new dataset(make_dataset(n, dim, 500, 100, 2024));
    const double t1 = cpu_seconds();
    oracle_ = new brute_index(dim, metric::inner_product);
    fill(*oracle_, *data_);
    std::cout << "dataset " << t1 - t0 << " s, oracle fill " << cpu_seconds() - t1 << " s CPU\n";
  }
  static void TearDownTestSuite() {
    delete oracle_;
    delete data_;
    oracle_ = nullptr;
    data_ = nullptr;
  }
  static dataset* data_;
  static brute_index* oracle_;
};
dataset* IndexRecall::data_ = nullptr;
brute_index* IndexRecall::oracle_ = nullptr;

TEST_F(IndexRecall, HnswRecallAt10AtLeast95Percent) {
  faiss_index hnsw(dim, metric::inner_product, {.kind = index_kind::hnsw});
  const double t0 = cpu_seconds();
  hnsw.assign(data_->ids, data_->data);
  std::cout << "HNSW build " << cpu_seconds() - t0 << " s CPU\n";
  ASSERT_EQ(hnsw.current_kind(), index_kind::hnsw);
  ASSERT_EQ(hnsw.size(), n);
  const double recall = recall_at(hnsw, *oracle_, *data_, k);
  RecordProperty("recall_at_10", std::to_string(recall));
  std::cout << "HNSW recall@10 = " << recall << "\n";
  EXPECT_GE(recall, required_recall);
  // Asking for more than efSearch still returns that many.
  EXPECT_EQ(hnsw.search(data_->query(0), 500).size(), 500u);
}

TEST_F(IndexRecall, IvfPqRecallAt10AtLeast95Percent) {
  faiss_index ivf(dim, metric::inner_product, {.kind = index_kind::ivf_pq});
  const double t0 = cpu_seconds();
  ivf.assign(data_->ids, data_->data);
  std::cout << "IVF-PQ build " << cpu_seconds() - t0 << " s CPU\n";
  ASSERT_EQ(ivf.current_kind(), index_kind::ivf_pq);
  const double recall = recall_at(ivf, *oracle_, *data_, k);
  RecordProperty("recall_at_10", std::to_string(recall));
  std::cout << "IVF-PQ recall@10 = " << recall << "\n";
  EXPECT_GE(recall, required_recall);
}

TEST(IndexFaiss, AutomaticSwitchesKindWhileGrowing) {
  const auto ds = make_dataset(1500, 16, 20, 5, 3);
  faiss_index index(ds.dim, metric::l2, {.kind = index_kind::automatic, .auto_hnsw_threshold = 1000});
  for (std::size_t i = 0; i < ds.size(); ++i) {
    index.add(ds.ids[i], ds.row(i));
    EXPECT_EQ(index.current_kind(), i + 1 >= 1000 ? index_kind::hnsw : index_kind::flat);
  }
  EXPECT_EQ(index.size(), ds.size());
  const auto hits = index.search(ds.row(1234), 1);
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0].id, "item-1234");
  EXPECT_NEAR(hits[0].distance, 0.0f, 1e-3);
}

// Every kind: removed ids never come back, replaced vectors are found at their new place,
// and dead positions are compacted away.
TEST(IndexFaiss, RemoveThenSearchNeverReturnsRemovedIds) {
  const auto ds = make_dataset(4500, 24, 40, 30, 5);
  for (const index_kind kind : {index_kind::flat, index_kind::hnsw, index_kind::ivf_pq}) {
    SCOPED_TRACE(std::string(to_string(kind)));
    faiss_index index(ds.dim, metric::inner_product, {.kind = kind, .ivf_min_train = 4096});
    fill(index, ds);
    ASSERT_EQ(index.current_kind(), kind);
    std::set<std::string> removed;
    std::mt19937 rng(9);
    for (std::size_t i = 0; i < ds.size(); ++i) {
      if (rng() % 2 == 0) {
        EXPECT_TRUE(index.remove(ds.ids[i]));
        removed.insert(ds.ids[i]);
      }
    }
    EXPECT_FALSE(index.remove(*removed.begin()));
    EXPECT_EQ(index.size(), ds.size() - removed.size());
    EXPECT_LT(index.positions(), ds.size()) << "dead positions were never compacted";
    for (std::size_t q = 0; q < ds.query_count(); ++q) {
      const auto hits = index.search(ds.query(q), 50);
      EXPECT_EQ(hits.size(), 50u);
      for (const auto& h : hits) EXPECT_EQ(removed.count(h.id), 0u) << h.id;
    }
    // Searching for a removed vector itself must not find it.
    const std::string& gone = *removed.begin();
    const std::size_t gone_row = std::stoul(gone.substr(5));
    for (const auto& h : index.search(ds.row(gone_row), 10)) EXPECT_NE(h.id, gone);
    // Replace: a kept id moved onto a removed one's vector is found there.
    const std::string kept = [&] {
      for (const auto& id : ds.ids)
        if (!removed.count(id)) return id;
      return std::string();
    }();
    index.add(kept, ds.row(gone_row));
    const auto hits = index.search(ds.row(gone_row), 1);
    ASSERT_EQ(hits.size(), 1u);
    EXPECT_EQ(hits[0].id, kept);
    EXPECT_NEAR(hits[0].score, 1.0f, 1e-4);
    EXPECT_EQ(index.size(), ds.size() - removed.size());
  }
}

TEST(IndexFaiss, SelectiveFilterFallsBackToExactSearch) {
  const auto ds = make_dataset(20000, 16, 50, 3, 8);
  faiss_index index(ds.dim, metric::inner_product, {.kind = index_kind::hnsw});
  index.assign(ds.ids, ds.data);
  const std::set<std::string> allowed{"item-17", "item-9999", "item-19998"};
  const id_filter only = [&](std::string_view id) { return allowed.count(std::string(id)) > 0; };
  brute_index brute(ds.dim, metric::inner_product);
  fill(brute, ds);
  for (std::size_t q = 0; q < ds.query_count(); ++q) {
    const auto got = index.search(ds.query(q), 10, &only);
    const auto want = brute.search(ds.query(q), 10, &only);
    ASSERT_EQ(got.size(), 3u);
    for (std::size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i].id, want[i].id);
  }
}

TEST(IndexFaiss, BadInputIsRejected) {
  faiss_index index(4, metric::inner_product);
  EXPECT_EQ(code_of([&] { index.add("a", std::vector<float>{1, 2, 3}); }), errc::bad_parameter);
  EXPECT_EQ(code_of([&] { index.add("a", std::vector<float>{0, 0, 0, 0}); }), errc::bad_parameter);
  EXPECT_EQ(code_of([&] { index.add("a", std::vector<float>{1, NAN, 0, 0}); }), errc::bad_parameter);
  EXPECT_EQ(code_of([&] { index.add("", std::vector<float>{1, 0, 0, 0}); }), errc::bad_parameter);
  EXPECT_TRUE(index.search(std::vector<float>{1, 0, 0, 0}, 5).empty());
  index.add("a", std::vector<float>{1, 0, 0, 0});
  EXPECT_EQ(code_of([&] { (void)index.search(std::vector<float>{1, 0}, 5); }), errc::bad_parameter);
  EXPECT_EQ(index.search(std::vector<float>{1, 0, 0, 0}, 100).size(), 1u);
  EXPECT_TRUE(index.search(std::vector<float>{1, 0, 0, 0}, 0).empty());
  EXPECT_EQ(code_of([] { faiss_index bad(0, metric::l2); }), errc::bad_parameter);
}

TEST(IndexFaiss, SaveAndLoadRoundTripEveryKind) {
  const auto dir = fresh_dir("index", "save_load");
  const auto ds = make_dataset(5000, 16, 30, 10, 21);
  for (const index_kind kind : {index_kind::flat, index_kind::hnsw, index_kind::ivf_pq}) {
    SCOPED_TRACE(std::string(to_string(kind)));
    faiss_index index(ds.dim, metric::l2, {.kind = kind, .ivf_min_train = 4096});
    index.assign(ds.ids, ds.data);
    index.remove("item-3");
    const auto file = dir / (std::string(to_string(kind)) + ".faiss");
    index.save(file, 77);
    std::uint64_t generation = 0;
    const auto loaded = faiss_index::load(file, {.kind = kind}, &generation);
    EXPECT_EQ(generation, 77u);
    EXPECT_EQ(loaded->current_kind(), kind);
    EXPECT_EQ(loaded->size(), index.size());
    EXPECT_FALSE(loaded->contains("item-3"));
    for (std::size_t q = 0; q < ds.query_count(); ++q) {
      const auto a = index.search(ds.query(q), 10);
      const auto b = loaded->search(ds.query(q), 10);
      ASSERT_EQ(a.size(), b.size());
      for (std::size_t i = 0; i < a.size(); ++i) {
        EXPECT_EQ(a[i].id, b[i].id);
        EXPECT_EQ(a[i].distance, b[i].distance);
      }
    }
  }
}

std::vector<char> read_bytes(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const fs::path& file, const std::vector<char>& bytes) {
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

TEST(IndexFaiss, DamagedFilesAreRejected) {
  const auto dir = fresh_dir("index", "damaged");
  const auto ds = make_dataset(300, 8, 5, 1, 4);
  faiss_index index(ds.dim, metric::l2, {.kind = index_kind::hnsw});
  index.assign(ds.ids, ds.data);
  const auto file = dir / "x.faiss";
  index.save(file, 1);
  const auto good = read_bytes(file);
  auto flipped = good;
  flipped[flipped.size() / 2] ^= 0x40;
  write_bytes(file, flipped);
  EXPECT_EQ(code_of([&] { (void)faiss_index::load(file, {}, nullptr); }), errc::internal);
  write_bytes(file, std::vector<char>(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(good.size() - 10)));
  EXPECT_EQ(code_of([&] { (void)faiss_index::load(file, {}, nullptr); }), errc::internal);
  write_bytes(file, std::vector<char>(good.begin(), good.begin() + 20));
  EXPECT_EQ(code_of([&] { (void)faiss_index::load(file, {}, nullptr); }), errc::internal);
  write_bytes(file, std::vector<char>(100, 'z'));
  EXPECT_EQ(code_of([&] { (void)faiss_index::load(file, {}, nullptr); }), errc::internal);
  EXPECT_EQ(code_of([&] { (void)faiss_index::load(dir / "absent.faiss", {}, nullptr); }), errc::not_found);
  write_bytes(file, good);
  EXPECT_EQ(faiss_index::load(file, {}, nullptr)->size(), ds.size());
}

store::item stored(const std::string& id, std::vector<float> v) {
  store::item it;
  it.id = id;
  it.vectors["emb"] = std::move(v);
  return it;
}

// The saved index is trusted only when its generation matches the store's. To tell "loaded"
// from "rebuilt", the saved index carries an id ("ghost") the store has never seen.
TEST(VectorSpaces, PersistenceAndRebuildWhenMissingStaleOrCorrupt) {
  const auto dir = fresh_dir("index", "spaces");
  store::sqlite_store db(dir / "items.db");
  const auto ds = make_dataset(400, 8, 10, 1, 6);
  std::vector<store::item> items;
  for (std::size_t i = 0; i < ds.size(); ++i)
    items.push_back(stored(ds.ids[i], std::vector<float>(ds.row(i).begin(), ds.row(i).end())));
  db.insert_batch(items);
  const space_config config{.name = "emb", .dim = 8, .space_metric = metric::inner_product};
  const auto ghost_vector = std::vector<float>(8, 1.0f);
  const auto file = dir / "index" / "emb.faiss";
  {
    search::vector_spaces spaces(dir, db, {config});  // no file yet: built from the store and saved
    EXPECT_EQ(spaces.size("emb"), ds.size());
    EXPECT_TRUE(fs::exists(file));
    EXPECT_EQ(spaces.search("emb", ds.row(42), 1)[0].id, "item-42");
    spaces.add("emb", "ghost", ghost_vector);
    spaces.save_all(db.generation());
  }
  {
    search::vector_spaces spaces(dir, db, {config});
    EXPECT_TRUE(spaces.contains("emb", "ghost")) << "a current index file must be loaded, not rebuilt";
    EXPECT_EQ(spaces.size("emb"), ds.size() + 1);
  }
  db.remove("item-1");  // the store moves on: the saved index is stale
  {
    search::vector_spaces spaces(dir, db, {config});
    EXPECT_FALSE(spaces.contains("emb", "ghost"));
    EXPECT_FALSE(spaces.contains("emb", "item-1"));
    EXPECT_EQ(spaces.size("emb"), ds.size() - 1);
    spaces.add("emb", "ghost", ghost_vector);
    spaces.save_all(db.generation());
  }
  {
    auto bytes = read_bytes(file);
    bytes[bytes.size() - 5] ^= 0x01;
    write_bytes(file, bytes);
    search::vector_spaces spaces(dir, db, {config});
    EXPECT_FALSE(spaces.contains("emb", "ghost")) << "a corrupt file must be rebuilt";
    EXPECT_EQ(spaces.size("emb"), ds.size() - 1);
    spaces.add("emb", "ghost", ghost_vector);
    spaces.save_all(db.generation());
  }
  {
    fs::remove(file);
    search::vector_spaces spaces(dir, db, {config});
    EXPECT_FALSE(spaces.contains("emb", "ghost"));
    EXPECT_EQ(spaces.size("emb"), ds.size() - 1);
    // A space redefined with another dimension is a conflict; unknown spaces are not_found.
    EXPECT_EQ(code_of([&] { spaces.define({.name = "emb", .dim = 9}); }), errc::conflict);
    EXPECT_EQ(code_of([&] { (void)spaces.search("nope", ghost_vector, 1); }), errc::not_found);
    EXPECT_EQ(code_of([&] { spaces.define({.name = "../x", .dim = 9}); }), errc::bad_parameter);
    // apply() follows the stored item: a vector moves, a missing vector removes.
    store::item moved = stored("item-5", ghost_vector);
    spaces.apply(moved);
    EXPECT_EQ(spaces.search("emb", ghost_vector, 1)[0].id, "item-5");
    moved.vectors.clear();
    spaces.apply(moved);
    EXPECT_FALSE(spaces.contains("emb", "item-5"));
    const auto info = spaces.info();
    ASSERT_EQ(info.size(), 1u);
    EXPECT_EQ(info[0].size, ds.size() - 2);
  }
}

// Searches run while another thread adds and removes. After remove() returns, no search that
// starts later may return that id.
TEST(VectorSpaces, ConcurrentSearchWhileAddingAndRemoving) {
  const auto dir = fresh_dir("index", "concurrent");
  store::sqlite_store db(dir / "items.db");
  const auto ds = make_dataset(4000, 16, 20, 20, 12);
  search::vector_spaces spaces(dir, db,
                       {{.name = "emb", .dim = 16, .space_metric = metric::inner_product,
                         .options = {.kind = index_kind::automatic, .auto_hnsw_threshold = 2500}}});
  for (std::size_t i = 0; i < 2000; ++i) spaces.add("emb", ds.ids[i], ds.row(i));

  std::mutex removed_mutex;
  std::vector<std::string> removed;  // append-only, in the order the removes returned
  std::atomic<bool> done{false};
  std::atomic<std::size_t> searches{0};
  std::atomic<std::size_t> stale{0};
  std::vector<std::thread> searchers;
  for (int t = 0; t < 3; ++t) {
    searchers.emplace_back([&, t] {
      std::size_t q = static_cast<std::size_t>(t);
      while (!done) {
        std::set<std::string> gone;
        {
          std::lock_guard lock(removed_mutex);
          gone.insert(removed.begin(), removed.end());
        }
        const id_filter odd = [](std::string_view id) { return (id.back() - '0') % 2 == 1; };
        const auto hits = spaces.search("emb", ds.query(q % ds.query_count()), 20, q % 3 == 0 ? &odd : nullptr);
        for (const auto& h : hits) stale += gone.count(h.id);
        ++searches;
        ++q;
      }
    });
  }
  // Adds cross the HNSW threshold (a rebuild under the lock) and removes hit every kind.
  for (std::size_t i = 2000; i < ds.size(); ++i) {
    spaces.add("emb", ds.ids[i], ds.row(i));
    if (i % 2 == 0) {
      const std::string& victim = ds.ids[i - 1200];
      ASSERT_TRUE(spaces.remove("emb", victim));
      std::lock_guard lock(removed_mutex);
      removed.push_back(victim);
    }
  }
  done = true;
  for (auto& t : searchers) t.join();
  EXPECT_EQ(stale.load(), 0u);
  EXPECT_GT(searches.load(), 0u);
  EXPECT_EQ(spaces.size("emb"), ds.size() - removed.size());
  for (const auto& id : removed) EXPECT_FALSE(spaces.contains("emb", id));
}

// --index: the FAISS parameters a user can name, and what is refused.
TEST(IndexAddress, FaissParametersAndRefusals) {
  EXPECT_FALSE(parse_index_address("").faiss);
  EXPECT_FALSE(parse_index_address("faiss").faiss);
  EXPECT_FALSE(parse_index_address("faiss").remote);
  EXPECT_TRUE(parse_index_address("milvus://127.0.0.1:1").remote);

  const auto hnsw = parse_index_address("faiss?kind=hnsw&m=16&ef_construction=80&ef_search=64").faiss;
  ASSERT_TRUE(hnsw);
  EXPECT_EQ(hnsw->kind, index_kind::hnsw);
  EXPECT_EQ(hnsw->hnsw_m, 16);
  EXPECT_EQ(hnsw->hnsw_ef_construction, 80);
  EXPECT_EQ(hnsw->hnsw_ef_search, 64);

  // m is PQ's bytes per code for ivfpq, as FAISS names it ("IVF1000,PQ96").
  const auto pq = parse_index_address("faiss?m=96&kind=ivfpq&nlist=1000&nprobe=2&refine=16&min_train=5000").faiss;
  ASSERT_TRUE(pq);
  EXPECT_EQ(pq->kind, index_kind::ivf_pq);
  EXPECT_EQ(pq->ivf_pq_m, 96u);
  EXPECT_EQ(pq->hnsw_m, faiss_options{}.hnsw_m);
  EXPECT_EQ(pq->ivf_nlist, 1000u);
  EXPECT_EQ(pq->ivf_nprobe, 2);
  EXPECT_FLOAT_EQ(pq->ivf_refine_factor, 16.0f);
  EXPECT_EQ(pq->ivf_min_train, 5000u);

  const auto automatic = parse_index_address("faiss?hnsw_threshold=1000").faiss;
  ASSERT_TRUE(automatic);
  EXPECT_EQ(automatic->kind, index_kind::automatic);
  EXPECT_EQ(automatic->auto_hnsw_threshold, 1000u);

  for (const char* bad : {"faiss?kind=annoy", "faiss?kind=flat&m=8", "faiss?kind=ivfpq&ef_search=4",
                          "faiss?kind=hnsw&nprobe=4", "faiss?kind=hnsw&m=1", "faiss?kind=hnsw&m=abc",
                          "faiss?kind=hnsw&ef_search=-3", "faiss?colour=blue", "annoy", "faiss2"}) {
    EXPECT_EQ(code_of([&] { (void)parse_index_address(bad); }), errc::bad_parameter) << bad;
  }
  // The saved form reads back to the same parameters; a damaged one is refused, not guessed.
  EXPECT_EQ(faiss_options_to_json(faiss_options_from_json(faiss_options_to_json(*pq))), faiss_options_to_json(*pq));
  EXPECT_EQ(code_of([&] { (void)faiss_options_from_json({{"kind", "hnsw"}, {"surprise", 1}}); }), errc::bad_parameter);
  EXPECT_EQ(code_of([&] { (void)faiss_options_from_json({{"hnsw_m", "many"}}); }), errc::bad_parameter);
}

// Parameters named once are saved with the index and used by later starts that name none;
// naming other ones rebuilds the spaces with them.
TEST(VectorSpaces, FaissParametersAreSavedWithTheIndex) {
  const auto dir = fresh_dir("index", "saved_params");
  store::sqlite_store db(dir / "items.db");
  const auto ds = make_dataset(300, 8, 10, 1, 9);
  std::vector<store::item> items;
  for (std::size_t i = 0; i < ds.size(); ++i)
    items.push_back(stored(ds.ids[i], std::vector<float>(ds.row(i).begin(), ds.row(i).end())));
  db.insert_batch(items);
  const space_config config{.name = "emb", .dim = 8, .space_metric = metric::inner_product};
  auto kind_of = [](const search::vector_spaces& spaces) { return spaces.info().at(0).kind; };
  {
    search::vector_spaces spaces(dir, db, index_address{});  // defaults: automatic, exact at 300 vectors
    spaces.define(config);
    EXPECT_EQ(kind_of(spaces), index_kind::flat);
    EXPECT_FALSE(fs::exists(dir / "index" / "faiss.json"));
  }
  {
    search::vector_spaces spaces(dir, db, parse_index_address("faiss?kind=hnsw&m=8&ef_search=32"));
    spaces.define(config);
    EXPECT_EQ(kind_of(spaces), index_kind::hnsw);
    EXPECT_EQ(spaces.search("emb", ds.row(7), 1).at(0).id, "item-7");
    spaces.save_all(db.generation());
  }
  const auto saved = nlohmann::json::parse(std::ifstream(dir / "index" / "faiss.json"));
  EXPECT_EQ(saved.at("kind"), "hnsw");
  EXPECT_EQ(saved.at("hnsw_m"), 8);
  EXPECT_EQ(saved.at("hnsw_ef_search"), 32);
  {
    search::vector_spaces spaces(dir, db, parse_index_address("faiss"));  // names none: the saved ones
    spaces.define(config);
    EXPECT_EQ(kind_of(spaces), index_kind::hnsw);
  }
  {
    search::vector_spaces spaces(dir, db, parse_index_address("faiss?kind=flat"));
    spaces.define(config);
    EXPECT_EQ(kind_of(spaces), index_kind::flat);
    EXPECT_EQ(spaces.size("emb"), ds.size());  // rebuilt from the store, nothing lost
  }
  EXPECT_EQ(nlohmann::json::parse(std::ifstream(dir / "index" / "faiss.json")).at("kind"), "flat");
}

}  // namespace
}  // namespace acg2vec::index
