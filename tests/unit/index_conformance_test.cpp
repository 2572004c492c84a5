// One conformance suite for every vector_index backend: FAISS flat / HNSW / IVF-PQ, brute force,
// and the Milvus REST v2 client run against tests/milvus_double (a local double of Milvus's
// REST protocol, not Milvus). Expected results come from the brute-force index, whose ordering
// is checked by hand in index_test.cpp.

#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <thread>
#include <unordered_set>

#include "core/error.h"
#include "index/brute_index.h"
#include "index/faiss_index.h"
#include "index/milvus_index.h"
#include "index/vector_spaces.h"
#include "store/sqlite_store.h"

namespace acg2vec::index {
namespace {

namespace fs = std::filesystem;

errc code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const error& e) {
    return e.code();
  }
  ADD_FAILURE() << "no acg2vec::error thrown";
  return errc::internal;
}

// The Milvus double, started once for the test run and killed with it.
class milvus_double_process {
 public:
  explicit milvus_double_process(const std::string& token = "") {
    const fs::path script = fs::path(ACG2VEC_TEST_DATA) / ".." / "milvus_double" / "milvus_double.py";
    const fs::path dir = fs::path(ACG2VEC_TEST_WORK) / "milvus_double";
    fs::create_directories(dir);
    // Per process: ctest runs test cases as parallel processes, each with its own double.
    const fs::path port_file = dir / ("port-" + std::to_string(::getpid()) + token);
    fs::remove(port_file);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      std::vector<std::string> args{"/usr/bin/python3", script.string(), "--port-file", port_file.string()};
      if (!token.empty()) {
        args.push_back("--token");
        args.push_back(token);
      }
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      std::_Exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!fs::exists(port_file)) {
      if (std::chrono::steady_clock::now() > deadline) throw std::runtime_error("the milvus double did not start");
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::ifstream(port_file) >> port_;
  }
  ~milvus_double_process() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  int port() const noexcept { return port_; }
  /// Test hook of the double: the next n requests answer HTTP status.
  void fail_next(int n, int status) {
    httplib::Client c("127.0.0.1", port_);
    c.Post("/double/fail", nlohmann::json{{"next", n}, {"status", status}}.dump(), "application/json");
  }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
};

milvus_double_process& milvus_double() {
  static milvus_double_process process;
  return process;
}

milvus_options double_options(const std::string& prefix) {
  milvus_options o;
  o.port = milvus_double().port();
  o.collection_prefix = prefix;
  o.insert_batch = 64;  // several requests per batch in these tests
  return o;
}

struct backend {
  std::string name;
  bool exact = true;
  std::function<std::unique_ptr<vector_index>(int dim, metric m, const std::string& test)> make;
};

std::vector<backend> backends() {
  const auto faiss_kind = [](index_kind kind) {
    return [kind](int dim, metric m, const std::string&) -> std::unique_ptr<vector_index> {
      faiss_options o;
      o.kind = kind;
      o.ivf_min_train = 4096;  // the smallest faiss_index accepts: IVF-PQ is trained at 4096 vectors
      return std::make_unique<faiss_index>(dim, m, o);
    };
  };
  return {
      {"faiss_flat", true, faiss_kind(index_kind::flat)},
      {"faiss_hnsw", false, faiss_kind(index_kind::hnsw)},
      {"faiss_ivf_pq", false, faiss_kind(index_kind::ivf_pq)},
      {"brute", true,
       [](int dim, metric m, const std::string&) -> std::unique_ptr<vector_index> {
         return std::make_unique<brute_index>(dim, m);
       }},
      {"milvus_double", true,
       [](int dim, metric m, const std::string& test) -> std::unique_ptr<vector_index> {
         auto index = std::make_unique<milvus_index>(double_options("t_" + test + "_"), "space", dim, m);
         index->drop();  // a fresh collection for every test
         return std::make_unique<milvus_index>(double_options("t_" + test + "_"), "space", dim, m);
       }},
  };
}

struct dataset {
  int dim = 16;
  std::vector<std::string> ids;
  std::vector<float> data;
  std::span<const float> row(std::size_t i) const { return {data.data() + i * 16, 16}; }
};

dataset make_dataset(std::size_t n, unsigned seed) {
  dataset ds;
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> centres(8 * 16);
  for (auto& x : centres) x = normal(rng);
  std::uniform_int_distribution<std::size_t> pick(0, 7);
  ds.data.resize(n * 16);
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = pick(rng);
    for (std::size_t j = 0; j < 16; ++j) ds.data[i * 16 + j] = centres[c * 16 + j] + 0.35f * normal(rng);
    ds.ids.push_back("v" + std::to_string(i));
  }
  return ds;
}

class IndexConformance : public ::testing::TestWithParam<backend> {
 protected:
  std::unique_ptr<vector_index> make(int dim, metric m) {
    std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    test = test.substr(0, test.find('/'));
    return GetParam().make(dim, m, test + "_" + std::to_string(counter_++));
  }
  void fill(vector_index& index, const dataset& ds) {
    if (auto* milvus = dynamic_cast<milvus_index*>(&index)) {
      milvus->add_batch(ds.ids, ds.data);  // batched upserts: one request per 64 rows
      return;
    }
    for (std::size_t i = 0; i < ds.ids.size(); ++i) index.add(ds.ids[i], ds.row(i));
  }
  int counter_ = 0;
};

TEST_P(IndexConformance, NearestNeighboursMatchExactSearch) {
  for (const metric m : {metric::inner_product, metric::l2}) {
    // IVF-PQ stays exact below ivf_min_train (4096) vectors: it gets a set large enough to run
    // the real structure, checked through current_kind() below.
    const std::size_t n = GetParam().name == "faiss_ivf_pq" ? 5000 : 600;
    const auto ds = make_dataset(n, 11);
    auto index = make(16, m);
    brute_index oracle(16, m);
    fill(*index, ds);
    for (std::size_t i = 0; i < ds.ids.size(); ++i) oracle.add(ds.ids[i], ds.row(i));
    EXPECT_EQ(index->size(), n);
    if (const auto* f = dynamic_cast<const faiss_index*>(index.get())) {
      const auto wanted = GetParam().name == "faiss_hnsw"     ? index_kind::hnsw
                          : GetParam().name == "faiss_ivf_pq" ? index_kind::ivf_pq
                                                              : index_kind::flat;
      EXPECT_EQ(f->current_kind(), wanted);
    }
    EXPECT_EQ(index->dim(), 16);
    EXPECT_EQ(index->space_metric(), m);
    const auto queries = make_dataset(20, 99);
    std::size_t found = 0;
    for (std::size_t q = 0; q < 20; ++q) {
      const auto truth = oracle.search(queries.row(q), 10);
      const auto got = index->search(queries.row(q), 10);
      ASSERT_EQ(got.size(), 10u);
      std::unordered_set<std::string> ids;
      for (const auto& h : got) ids.insert(h.id);
      for (const auto& h : truth) found += ids.count(h.id);
      if (GetParam().exact) {
        for (std::size_t r = 0; r < 10; ++r) {
          EXPECT_EQ(got[r].id, truth[r].id) << "query " << q << " rank " << r;
          // float32 sums in different orders: 1e-4 relative is the tolerance for exact backends.
          EXPECT_NEAR(got[r].score, truth[r].score, 1e-4 * std::max(1.0f, std::abs(truth[r].score)));
          EXPECT_NEAR(got[r].distance, truth[r].distance, 1e-3);
        }
      }
      for (std::size_t r = 1; r < got.size(); ++r) EXPECT_GE(got[r - 1].score, got[r].score);
    }
    // Approximate backends: recall@10 at least 90 % on this clustered set.
    EXPECT_GE(static_cast<double>(found) / 200.0, GetParam().exact ? 1.0 : 0.9) << to_string(m);
  }
}

TEST_P(IndexConformance, AddReplacesAndRemoveForgets) {
  auto index = make(3, metric::l2);
  index->add("a", std::vector<float>{0, 0, 0});
  index->add("b", std::vector<float>{5, 5, 5});
  index->add("a", std::vector<float>{10, 10, 10});  // replaces a's vector
  EXPECT_EQ(index->size(), 2u);
  auto hits = index->search(std::vector<float>{10, 10, 10}, 1);
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0].id, "a");
  EXPECT_NEAR(hits[0].distance, 0.0f, 1e-5);
  EXPECT_TRUE(index->contains("a"));
  EXPECT_TRUE(index->remove("a"));
  EXPECT_FALSE(index->remove("a"));
  EXPECT_FALSE(index->contains("a"));
  EXPECT_EQ(index->size(), 1u);
  hits = index->search(std::vector<float>{10, 10, 10}, 5);
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0].id, "b");
  // Ids with quotes and backslashes survive the trip (Milvus filter expressions quote them).
  const std::string odd = "q\"uo\\te 漢";
  index->add(odd, std::vector<float>{1, 1, 1});
  EXPECT_TRUE(index->contains(odd));
  EXPECT_TRUE(index->remove(odd));
  EXPECT_EQ(index->size(), 1u);
}

TEST_P(IndexConformance, FilterRestrictsCandidates) {
  const auto ds = make_dataset(400, 5);
  auto index = make(16, metric::inner_product);
  fill(*index, ds);
  // Only every 50th id passes: the filter is selective, results must still fill up.
  const id_filter only = [](std::string_view id) { return std::stoi(std::string(id.substr(1))) % 50 == 0; };
  const auto hits = index->search(ds.row(3), 5, &only);
  ASSERT_EQ(hits.size(), 5u);
  for (const auto& h : hits) EXPECT_TRUE(only(h.id)) << h.id;
  brute_index oracle(16, metric::inner_product);
  for (std::size_t i = 0; i < ds.ids.size(); ++i) oracle.add(ds.ids[i], ds.row(i));
  const auto truth = oracle.search(ds.row(3), 5, &only);
  if (GetParam().exact) {
    for (std::size_t r = 0; r < 5; ++r) EXPECT_EQ(hits[r].id, truth[r].id);
  }
  const id_filter none = [](std::string_view) { return false; };
  EXPECT_TRUE(index->search(ds.row(3), 5, &none).empty());
}

TEST_P(IndexConformance, BadVectorsAreRejected) {
  auto index = make(3, metric::inner_product);
  EXPECT_EQ(code_of([&] { index->add("x", std::vector<float>{1, 2}); }), errc::bad_parameter);
  EXPECT_EQ(code_of([&] { index->add("x", std::vector<float>{0, 0, 0}); }), errc::bad_parameter);
  EXPECT_EQ(code_of([&] { index->add("x", std::vector<float>{1, std::nanf(""), 0}); }), errc::bad_parameter);
  EXPECT_EQ(code_of([&] { (void)index->search(std::vector<float>{1, 2}, 3); }), errc::bad_parameter);
  EXPECT_EQ(index->size(), 0u);
  EXPECT_TRUE(index->search(std::vector<float>{1, 2, 3}, 3).empty());
}

TEST_P(IndexConformance, ConcurrentSearchesAgree) {
  const auto ds = make_dataset(300, 21);
  auto index = make(16, metric::l2);
  fill(*index, ds);
  const auto expected = index->search(ds.row(7), 5);
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int n = 0; n < 10; ++n) {
        const auto got = index->search(ds.row(7), 5);
        if (got.size() != expected.size()) ++mismatches;
        for (std::size_t r = 0; r < got.size() && r < expected.size(); ++r)
          if (got[r].id != expected[r].id) ++mismatches;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(mismatches.load(), 0);
}

INSTANTIATE_TEST_SUITE_P(Backends, IndexConformance, ::testing::ValuesIn(backends()),
                         [](const auto& info) { return info.param.name; });

// Milvus-only: what the server keeps, the protocol details and the failure handling.
TEST(MilvusIndex, CollectionPersistsOnTheServerAndChecksItsShape) {
  const auto o = double_options("persist_");
  {
    milvus_index index(o, "space", 4, metric::inner_product);
    index.drop();
  }
  {
    milvus_index index(o, "space", 4, metric::inner_product);
    index.add("a", std::vector<float>{1, 0, 0, 0});
    index.add("b", std::vector<float>{0, 1, 0, 0});
  }
  milvus_index again(o, "space", 4, metric::inner_product);
  EXPECT_EQ(again.size(), 2u);
  EXPECT_EQ(again.search(std::vector<float>{0, 2, 0, 0}, 1).at(0).id, "b");
  EXPECT_EQ(code_of([&] { milvus_index wrong(o, "space", 8, metric::inner_product); }), errc::conflict);
  EXPECT_EQ(code_of([&] { milvus_index wrong(o, "space", 4, metric::l2); }), errc::conflict);
  // A filter expression evaluated by the server.
  const auto hits = again.search_expr(std::vector<float>{0, 2, 0, 0}, 2, "id != \"b\"");
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0].id, "a");
  EXPECT_NEAR(hits[0].score, 0.0f, 1e-6);
}

TEST(MilvusIndex, RetriesTransientFailuresThenReportsUnavailable) {
  auto o = double_options("retry_");
  o.retries = 2;
  milvus_index index(o, "space", 2, metric::l2);
  index.add("a", std::vector<float>{1, 1});
  milvus_double().fail_next(2, 503);  // two failures: the third attempt succeeds
  EXPECT_EQ(index.size(), 1u);
  milvus_double().fail_next(3, 503);  // three failures: out of attempts
  try {
    (void)index.size();
    FAIL() << "no error after three failed attempts";
  } catch (const error& e) {
    EXPECT_EQ(e.code(), errc::unavailable);
    EXPECT_NE(std::string(e.what()).find("HTTP 503"), std::string::npos) << e.what();
  }
  EXPECT_EQ(index.size(), 1u);
}

TEST(MilvusIndex, TokenIsSentAndUnreachableServerIsUnavailable) {
  milvus_double_process secured("s3cret");
  milvus_options o;
  o.port = secured.port();
  EXPECT_EQ(code_of([&] { milvus_index index(o, "space", 2, metric::l2); }), errc::unavailable);
  o.token = "s3cret";
  milvus_index index(o, "space", 2, metric::l2);
  index.add("a", std::vector<float>{1, 2});
  EXPECT_TRUE(index.contains("a"));

  milvus_options nowhere;
  nowhere.port = 1;  // nothing listens on port 1 for an unprivileged test
  nowhere.retries = 1;
  nowhere.connect_timeout = std::chrono::milliseconds(200);
  EXPECT_EQ(code_of([&] { milvus_index unreachable(nowhere, "space", 2, metric::l2); }), errc::unavailable);
}

TEST(MilvusIndex, ParsesAddresses) {
  const auto o = parse_milvus_uri("milvus://db.example:19531?token=root:Milvus&db=acg&prefix=p_&timeout_ms=500");
  EXPECT_EQ(o.host, "db.example");
  EXPECT_EQ(o.port, 19531);
  EXPECT_EQ(o.token, "root:Milvus");
  EXPECT_EQ(o.db_name, "acg");
  EXPECT_EQ(o.collection_prefix, "p_");
  EXPECT_EQ(o.timeout.count(), 500);
  EXPECT_EQ(parse_milvus_uri("milvus://h").port, 19530);
  for (const char* bad : {"http://h:1", "milvus://:1", "milvus://h:x", "milvus://h:1?what=1"})
    EXPECT_EQ(code_of([&] { (void)parse_milvus_uri(bad); }), errc::bad_parameter) << bad;
  EXPECT_EQ(milvus_quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
}

// vector_spaces with every space on Milvus (what --index milvus://... does): the collection is
// filled from the store when its size disagrees, kept in step by add/remove, and left alone
// when it already matches.
TEST(VectorSpacesOnMilvus, FollowsTheStoreAndRefillsWhenOutOfStep) {
  const fs::path dir = fs::path(ACG2VEC_TEST_WORK) / "spaces-milvus";
  fs::remove_all(dir);
  fs::create_directories(dir);
  store::sqlite_store db(dir / "items.db");
  for (int n = 0; n < 5; ++n) {
    store::item it;
    it.id = "s" + std::to_string(n);
    it.vectors["sig"] = {1.0f, static_cast<float>(n), 0.5f};
    db.insert(it);
  }
  const auto options = double_options("spaces_");
  const remote_index_factory factory = [&](const space_config& c) -> std::unique_ptr<vector_index> {
    return std::make_unique<milvus_index>(options, c.name, c.dim, c.space_metric);
  };
  milvus_index(options, "sig", 3, metric::inner_product).drop();
  const space_config config{"sig", 3, metric::inner_product, {}};
  {
    vector_spaces spaces(dir, db, factory, {config});
    EXPECT_EQ(spaces.size("sig"), 5u);  // filled from the store
    spaces.remove("sig", "s1");
    spaces.add("sig", "s9", std::vector<float>{0.0f, 1.0f, 0.0f});
    EXPECT_EQ(spaces.search("sig", std::vector<float>{0.0f, 1.0f, 0.0f}, 1).at(0).id, "s9");
    spaces.save_all(db.generation());
  }
  EXPECT_FALSE(fs::exists(dir / "index" / "sig.faiss")) << "nothing is saved locally for a remote space";
  // 5 rows in Milvus and 5 vectors in the store: the counts agree, so the collection is kept as is
  // (s9 stays, s1 stays removed).
  {
    vector_spaces spaces(dir, db, factory, {config});
    milvus_index check(options, "sig", 3, metric::inner_product);
    EXPECT_TRUE(check.contains("s9"));
    EXPECT_FALSE(check.contains("s1"));
  }
  // An emptied collection is refilled from the store.
  milvus_index(options, "sig", 3, metric::inner_product).drop();
  vector_spaces spaces(dir, db, factory, {config});
  EXPECT_EQ(spaces.size("sig"), 5u);
  EXPECT_TRUE(spaces.contains("sig", "s1"));
  EXPECT_FALSE(spaces.contains("sig", "s9"));
}

}  // namespace
}  // namespace acg2vec::index
