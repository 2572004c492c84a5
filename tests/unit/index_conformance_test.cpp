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

#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <thread>
#include <unordered_set>

#include "support/fixtures.h"
#include "core/error.h"
#include "index/brute_index.h"
#include "index/faiss_index.h"
#include "index/milvus_index.h"
#include "search/vector_spaces.h"
#include "store/sqlite_store.h"

namespace acg2vec::index {
namespace {

using test_support::code_of;

namespace fs = std::filesystem;

// The Milvus double, started once for the test run and killed with it.
class milvus_double_process {
 public:
  explicit milvus_double_process(const std::string& token = "", int load_ms = 150, bool int64_as_string = false) {
    const fs::path script = fs::path(ACG2VEC_TEST_DATA) / ".." / "milvus_double" / "milvus_double.py";
    const fs::path dir = fs::path(ACG2VEC_TEST_WORK) / "milvus_double";
    fs::create_directories(dir);
    // Per process: ctest runs test cases as parallel processes, each with its own double.
    const fs::path port_file = dir / ("port-" + std::to_string(::getpid()) + token + "-" + std::to_string(load_ms) +
                                      (int64_as_string ? "-s" : ""));
    fs::remove(port_file);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      // Bounded reads miss writes younger than 2 s here, so a client that forgot to ask for
      // Strong consistency fails the read-your-writes checks below.
      std::vector<std::string> args{"/usr/bin/python3", script.string(), "--port-file", port_file.string(),
                                    "--staleness-ms", "2000", "--load-ms", std::to_string(load_ms)};
      if (int64_as_string) args.push_back("--int64-as-string");
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
  /// Test hook of the double: the next `times` requests to path ("*": any) answer HTTP status
  /// with Milvus code c, or with a plain-text body when text is not empty.
  void fault(const std::string& path, int c, int status = 200, int times = 1, const std::string& text = "") {
    nlohmann::json body{{"path", path}, {"code", c}, {"status", status}, {"times", times}};
    if (!text.empty()) body["text"] = text;
    hook("/double/fault", body);
  }
  /// Every collection released, as after a Milvus restart.
  void restart() { hook("/double/restart", {}); }
  /// Requests the double has answered for a path since the last reset_stats().
  int requests(const std::string& path) {
    return hook("/double/stats", {}).at("data").at("requests").value(path, 0);
  }
  void reset_stats() { hook("/double/stats/reset", {}); }
  /// A raw REST v2 call, for setting up server-side states the client would not create.
  nlohmann::json call(const std::string& path, const nlohmann::json& body, const std::string& token = "") {
    httplib::Client c("127.0.0.1", port_);
    httplib::Headers headers;
    if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
    auto res = c.Post("/v2/vectordb/" + path, headers, body.dump(), "application/json");
    if (!res) throw std::runtime_error("the milvus double did not answer");
    return nlohmann::json::parse(res->body);
  }

 private:
  nlohmann::json hook(const std::string& path, const nlohmann::json& body) {
    httplib::Client c("127.0.0.1", port_);
    auto res = c.Post(path, body.dump(), "application/json");
    if (!res) throw std::runtime_error("the milvus double did not answer " + path);
    return nlohmann::json::parse(res->body);
  }
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
  o.retry_backoff = std::chrono::milliseconds(5);
  return o;
}

// ACG2VEC_TEST_MILVUS=milvus://host:port[?...] adds a real Milvus to the backends. Its HNSW search
// is approximate, so it is held to the recall bar of the approximate FAISS indexes.
std::optional<milvus_options> real_milvus() {
  const char* uri = std::getenv("ACG2VEC_TEST_MILVUS");
  if (uri == nullptr || *uri == 0) return std::nullopt;
  return parse_milvus_uri(uri);
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
  std::vector<backend> out{
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
  if (const auto real = real_milvus()) {
    out.push_back({"milvus_server", false,
                   [real](int dim, metric m, const std::string& test) -> std::unique_ptr<vector_index> {
                     auto o = *real;
                     o.collection_prefix = "acg2vec_test_" + test + "_";
                     milvus_index(o, "space", dim, m).drop();
                     return std::make_unique<milvus_index>(o, "space", dim, m);
                   }});
  }
  return out;
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
    if (dynamic_cast<milvus_index*>(&index) != nullptr) {
      index.add_many(ds.ids, ds.data);  // batched upserts: one request per 64 rows
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
  // Milvus's dimension bounds are checked before any request.
  EXPECT_EQ(code_of([&] { milvus_index one(o, "one", 1, metric::l2); }), errc::bad_parameter);
  EXPECT_EQ(code_of([&] { milvus_index huge(o, "huge", 32769, metric::l2); }), errc::bad_parameter);
}

TEST(MilvusIndex, CollectionNamesFromSpaceNamesAreValidAndReversible) {
  // The default packs' spaces: '-' is not allowed in Milvus collection names.
  EXPECT_EQ(milvus_collection_name("acg2vec_", "nsfw-mobilenet-v2-embedding"),
            "acg2vec_nsfw_2dmobilenet_2dv2_2dembedding");
  EXPECT_EQ(milvus_collection_name("acg2vec_", "signature"), "acg2vec_signature");
  EXPECT_EQ(milvus_collection_name("", "9lives"), "_39lives");  // a name cannot start with a digit
  const std::vector<std::string> spaces{"nsfw-inception-v3-embedding", "a_b", "a-b", "a__b", "a_2db", "_", "-",
                                        "x.y", "漢字", "9", "A9_z"};
  std::set<std::string> names;
  for (const auto& prefix : {std::string("acg2vec_"), std::string()}) {
    names.clear();
    for (const auto& space : spaces) {
      const auto name = milvus_collection_name(prefix, space);
      ASSERT_FALSE(name.empty());
      EXPECT_TRUE(name[0] == '_' || std::isalpha(static_cast<unsigned char>(name[0]))) << name;
      for (const char c : name) EXPECT_TRUE(c == '_' || std::isalnum(static_cast<unsigned char>(c))) << name;
      EXPECT_EQ(milvus_space_name(prefix, name), space) << name;
      EXPECT_TRUE(names.insert(name).second) << "collision: " << name;
    }
  }
  EXPECT_EQ(milvus_space_name("acg2vec_", "acg2vec_bad_zz"), std::nullopt);
  EXPECT_EQ(milvus_space_name("acg2vec_", "other_x"), std::nullopt);
  EXPECT_EQ(code_of([] { (void)milvus_collection_name("acg2vec_", std::string(250, 'x')); }), errc::bad_parameter);
  EXPECT_EQ(code_of([] { (void)milvus_collection_name("bad-prefix", "x"); }), errc::bad_parameter);

  // The double enforces Milvus's name rule (validateCollectionNameOrAlias): the mapped name is
  // accepted, and the description records the space.
  const auto o = double_options("names_");
  milvus_index(o, "nsfw-mobilenet-v2-embedding", 4, metric::inner_product).drop();
  milvus_index index(o, "nsfw-mobilenet-v2-embedding", 4, metric::inner_product);
  index.add("a", std::vector<float>{1, 0, 0, 0});
  EXPECT_EQ(index.collection(), "names_nsfw_2dmobilenet_2dv2_2dembedding");
  const auto described = milvus_double().call("collections/describe", {{"collectionName", index.collection()}});
  EXPECT_EQ(described.at("data").at("description"), "acg2vec vector space: nsfw-mobilenet-v2-embedding");
  EXPECT_EQ(milvus_double().call("collections/create", {{"collectionName", "names_nsfw-mobilenet"}}).at("code"), 1100);
}

TEST(MilvusIndex, CollectionRecordedForAnotherSpaceIsAConflict) {
  const auto o = double_options("claim_");
  milvus_index(o, "x", 3, metric::l2).drop();
  // A collection under the same name that records another space (made by hand, or by a client
  // with another mapping): refused, not silently shared.
  auto body = nlohmann::json::parse(R"({"collectionName": "claim_x", "description": "acg2vec vector space: y",
    "schema": {"fields": [{"fieldName": "id", "dataType": "VarChar", "isPrimary": true,
                           "elementTypeParams": {"max_length": "512"}},
                          {"fieldName": "vector", "dataType": "FloatVector", "elementTypeParams": {"dim": "3"}}]}})");
  ASSERT_EQ(milvus_double().call("collections/create", body).at("code"), 0);
  try {
    milvus_index index(o, "x", 3, metric::l2);
    FAIL() << "opened a collection recorded for another space";
  } catch (const error& e) {
    EXPECT_EQ(e.code(), errc::conflict);
    EXPECT_NE(std::string(e.what()).find("another space"), std::string::npos) << e.what();
  }
}

TEST(MilvusIndex, VerifiesTheWholeSchema) {
  const auto o = double_options("schema_");
  const auto make = [&](const std::string& space, const std::string& id_type, const std::string& max_length,
                        const std::string& vector_type) {
    milvus_index(o, space, 4, metric::l2).drop();
    nlohmann::json id{{"fieldName", "id"}, {"dataType", id_type}, {"isPrimary", true}};
    if (!max_length.empty()) id["elementTypeParams"] = {{"max_length", max_length}};
    nlohmann::json body{{"collectionName", "schema_" + space},
                        {"schema", {{"fields", nlohmann::json::array({id, {{"fieldName", "vector"},
                                                                           {"dataType", vector_type},
                                                                           {"elementTypeParams", {{"dim", "4"}}}}})}}}};
    ASSERT_EQ(milvus_double().call("collections/create", body).at("code"), 0) << space;
  };
  // Each of these passed the old dimension-and-metric check and then failed every upsert or filter.
  make("int64id", "Int64", "", "FloatVector");
  EXPECT_EQ(code_of([&] { milvus_index i(o, "int64id", 4, metric::l2); }), errc::conflict);
  make("shortid", "VarChar", "16", "FloatVector");
  EXPECT_EQ(code_of([&] { milvus_index i(o, "shortid", 4, metric::l2); }), errc::conflict);
  make("half", "VarChar", "512", "Float16Vector");
  EXPECT_EQ(code_of([&] { milvus_index i(o, "half", 4, metric::l2); }), errc::conflict);
  // Another index type than the address asks for.
  make("ivf", "VarChar", "512", "FloatVector");
  ASSERT_EQ(milvus_double()
                .call("indexes/create", {{"collectionName", "schema_ivf"},
                                         {"indexParams", {{{"fieldName", "vector"}, {"indexName", "vector"},
                                                           {"metricType", "L2"}, {"indexType", "IVF_FLAT"},
                                                           {"params", {{"nlist", 8}}}}}}})
                .at("code"),
            0);
  EXPECT_EQ(code_of([&] { milvus_index i(o, "ivf", 4, metric::l2); }), errc::conflict);
  auto ivf = o;
  ivf.index_type = "IVF_FLAT";
  ivf.index_params = {{"nlist", 8}};
  milvus_index fine(ivf, "ivf", 4, metric::l2);  // what it holds is what is asked for
  fine.add("a", std::vector<float>{1, 2, 3, 4});
  EXPECT_TRUE(fine.contains("a"));
}

TEST(MilvusIndex, RepairsAHalfCreatedCollection) {
  const auto o = double_options("half_");
  milvus_index(o, "space", 3, metric::inner_product).drop();
  // What Milvus 2.4.0-2.4.13 left when index creation failed inside collections/create: the
  // collection, no index, not loaded.
  auto body = nlohmann::json::parse(R"({"collectionName": "half_space",
    "schema": {"fields": [{"fieldName": "id", "dataType": "VarChar", "isPrimary": true,
                           "elementTypeParams": {"max_length": "512"}},
                          {"fieldName": "vector", "dataType": "FloatVector", "elementTypeParams": {"dim": "3"}}]}})");
  ASSERT_EQ(milvus_double().call("collections/create", body).at("code"), 0);
  {
    milvus_index index(o, "space", 3, metric::inner_product);
    index.add("a", std::vector<float>{1, 0, 0});
    EXPECT_EQ(index.search(std::vector<float>{1, 0, 0}, 1).at(0).id, "a");
  }
  const auto state = milvus_double().call("collections/get_load_state", {{"collectionName", "half_space"}});
  EXPECT_EQ(state.at("data").at("loadState"), "LoadStateLoaded");

  // The index step fails during open (the server's message of those versions): open reports it,
  // and the next open finishes the job.
  milvus_index(o, "space", 3, metric::inner_product).drop();
  milvus_double().fault("indexes/create", 65535);
  try {
    milvus_index index(o, "space", 3, metric::inner_product);
    FAIL() << "open succeeded although the index could not be created";
  } catch (const error& e) {
    EXPECT_NE(std::string(e.what()).find("65535"), std::string::npos) << e.what();
  }
  milvus_index repaired(o, "space", 3, metric::inner_product);
  repaired.add("b", std::vector<float>{0, 1, 0});
  EXPECT_EQ(repaired.size(), 1u);
}

TEST(MilvusIndex, ReloadsAfterAMilvusRestart) {
  const auto o = double_options("restart_");
  milvus_index(o, "space", 3, metric::l2).drop();
  milvus_index index(o, "space", 3, metric::l2);
  index.add("a", std::vector<float>{1, 1, 1});
  milvus_double().restart();  // every collection released: search and query answer 101
  EXPECT_EQ(index.search(std::vector<float>{1, 1, 1}, 1).at(0).id, "a");
  milvus_double().restart();
  EXPECT_EQ(index.size(), 1u);
  milvus_double().restart();
  EXPECT_TRUE(index.contains("a"));
  milvus_double().restart();
  milvus_index reopened(o, "space", 3, metric::l2);  // open loads it too
  EXPECT_EQ(milvus_double()
                .call("collections/get_load_state", {{"collectionName", "restart_space"}})
                .at("data")
                .at("loadState"),
            "LoadStateLoaded");
  // Loading is bounded: a server that does not finish in time is reported, not waited on forever.
  milvus_double_process slow_server("", 60000);
  auto impatient = o;
  impatient.port = slow_server.port();
  impatient.load_timeout = std::chrono::milliseconds(300);
  try {
    milvus_index slow(impatient, "space", 3, metric::l2);
    FAIL() << "a 60 s load finished within 300 ms";
  } catch (const error& e) {
    EXPECT_EQ(e.code(), errc::unavailable);
    EXPECT_NE(std::string(e.what()).find("did not finish loading"), std::string::npos) << e.what();
  }
}

TEST(MilvusIndex, RetriesEachRetriableCodeOnceAndSucceeds) {
  auto o = double_options("retry_");
  milvus_index(o, "space", 2, metric::l2).drop();
  milvus_index index(o, "space", 2, metric::l2);
  index.add("a", std::vector<float>{1, 1});
  struct injected {
    int code;
    int status;
    std::string text;
  };
  // merr's retriable codes the issue names, the REST limiter as newer servers send it (HTTP 429),
  // the timeout middleware's plain-text 408, and a gateway's 503.
  const std::vector<injected> cases{{1, 200, ""},   {2, 200, ""},    {103, 200, ""}, {106, 200, ""},
                                    {1807, 200, ""}, {1807, 429, ""}, {0, 408, "timeout"}, {0, 503, "no upstream"}};
  for (const auto& c : cases) {
    milvus_double().reset_stats();
    milvus_double().fault("entities/query", c.code, c.status, 1, c.text);
    EXPECT_EQ(index.size(), 1u) << c.code << " / HTTP " << c.status;
    EXPECT_EQ(milvus_double().requests("entities/query"), 2) << c.code << " / HTTP " << c.status;
  }
  // Upserts are retried too (idempotent), and out of attempts is `unavailable`.
  milvus_double().fault("entities/upsert", 2, 200, 1);
  index.add("b", std::vector<float>{2, 2});
  o.retries = 2;
  milvus_index few(o, "space", 2, metric::l2);
  milvus_double().reset_stats();
  milvus_double().fault("entities/query", 0, 503, 3);
  try {
    (void)few.size();
    FAIL() << "no error after three failed attempts";
  } catch (const error& e) {
    EXPECT_EQ(e.code(), errc::unavailable);
    EXPECT_NE(std::string(e.what()).find("HTTP 503"), std::string::npos) << e.what();
  }
  EXPECT_EQ(milvus_double().requests("entities/query"), 3);
  EXPECT_EQ(few.size(), 2u);
}

TEST(MilvusIndex, FatalCodesFailAtOnceWithTheirMessage) {
  const auto o = double_options("fatal_");
  milvus_index(o, "space", 2, metric::l2).drop();
  milvus_index index(o, "space", 2, metric::l2);
  index.add("a", std::vector<float>{1, 1});
  // 9: quota exceeded, 503: channel not available (a Milvus code, not an HTTP status), 1100 and
  // 65535: the request itself. None is retriable in merr, so exactly one request goes out.
  for (const auto& [c, expected] : std::vector<std::pair<int, errc>>{
           {9, errc::unavailable}, {503, errc::unavailable}, {1100, errc::internal}, {65535, errc::internal}}) {
    milvus_double().reset_stats();
    milvus_double().fault("entities/upsert", c);
    try {
      index.add("b", std::vector<float>{2, 2});
      FAIL() << "code " << c << " was not reported";
    } catch (const error& e) {
      EXPECT_EQ(e.code(), expected) << c;
      EXPECT_NE(std::string(e.what()).find("code " + std::to_string(c)), std::string::npos) << e.what();
    }
    EXPECT_EQ(milvus_double().requests("entities/upsert"), 1) << "code " << c << " was retried";
  }
  EXPECT_FALSE(index.contains("b"));
}

TEST(MilvusIndex, BadTokenIsAClearCredentialsError) {
  milvus_double_process secured("root:Milvus");
  milvus_options o;
  o.port = secured.port();
  o.retry_backoff = std::chrono::milliseconds(5);
  for (const std::string token : {"", "root:wrong"}) {
    o.token = token;
    try {
      milvus_index index(o, "space", 2, metric::l2);
      FAIL() << "opened with token '" << token << "'";
    } catch (const error& e) {
      EXPECT_EQ(e.code(), errc::unavailable);
      const std::string what = e.what();
      EXPECT_NE(what.find("rejected the credentials"), std::string::npos) << what;
      EXPECT_NE(what.find("HTTP 401"), std::string::npos) << what;
      EXPECT_NE(what.find("token="), std::string::npos) << what;
    }
  }
  EXPECT_EQ(secured.call("collections/has", {{"collectionName", "x"}}, "root:Milvus").at("code"), 0);
  o.token = "root:Milvus";
  milvus_index index(o, "space", 2, metric::l2);
  index.add("a", std::vector<float>{1, 2});
  EXPECT_TRUE(index.contains("a"));

  milvus_options nowhere;
  nowhere.port = 1;  // nothing listens on port 1 for an unprivileged test
  nowhere.retries = 1;
  nowhere.retry_backoff = std::chrono::milliseconds(5);
  nowhere.connect_timeout = std::chrono::milliseconds(200);
  EXPECT_EQ(code_of([&] { milvus_index unreachable(nowhere, "space", 2, metric::l2); }), errc::unavailable);
}

TEST(MilvusIndex, CountSentAsAStringIsAccepted) {
  // A server that ignores Accept-Type-Allow-Int64 sends count(*) (an Int64) as a JSON string.
  milvus_double_process strings("", 150, true);
  milvus_options o;
  o.port = strings.port();
  milvus_index index(o, "space", 2, metric::l2);
  index.add_many({"a", "b", "c"}, std::vector<float>{1, 1, 2, 2, 3, 3});
  const auto raw = strings.call("entities/query", {{"collectionName", index.collection()},
                                                   {"filter", ""},
                                                   {"outputFields", {"count(*)"}},
                                                   {"consistencyLevel", "Strong"}});
  EXPECT_TRUE(raw.at("data").at(0).at("count(*)").is_string()) << raw.dump();
  EXPECT_EQ(index.size(), 3u);
}

TEST(MilvusIndex, EfIsKeptAtLeastTheLimit) {
  auto o = double_options("ef_");
  o.search_params = {{"ef", 8}};
  milvus_index(o, "space", 2, metric::l2).drop();
  milvus_index index(o, "space", 2, metric::l2);
  std::vector<std::string> ids;
  std::vector<float> data;
  for (int i = 0; i < 50; ++i) {
    ids.push_back("p" + std::to_string(i));
    data.push_back(static_cast<float>(i));
    data.push_back(1.0f);
  }
  index.add_many(ids, data);
  EXPECT_EQ(index.search_params_for(5).at("ef"), 8);
  EXPECT_EQ(index.search_params_for(20).at("ef"), 20);
  // The double refuses ef below the limit as HNSW does; k = 20 and the filter's over-fetch pass.
  EXPECT_EQ(index.search(std::vector<float>{0, 1}, 20).size(), 20u);
  const id_filter odd = [](std::string_view id) { return (id.back() - '0') % 2 == 1; };
  EXPECT_EQ(index.search(std::vector<float>{0, 1}, 10, &odd).size(), 10u);
}

TEST(MilvusIndex, DatabasesAreSeparate) {
  ASSERT_EQ(milvus_double().call("databases/create", {{"dbName", "acg"}}).at("code"), 0);
  auto in_default = double_options("db_");
  auto in_acg = in_default;
  in_acg.db_name = "acg";
  milvus_index(in_default, "space", 2, metric::l2).drop();
  milvus_index(in_acg, "space", 2, metric::l2).drop();
  milvus_index a(in_default, "space", 2, metric::l2);
  milvus_index b(in_acg, "space", 2, metric::l2);
  a.add("x", std::vector<float>{1, 1});
  EXPECT_EQ(a.size(), 1u);
  EXPECT_EQ(b.size(), 0u);
  auto missing = in_default;
  missing.db_name = "nope";
  try {
    milvus_index c(missing, "space", 2, metric::l2);
    FAIL() << "opened a collection in a database that does not exist";
  } catch (const error& e) {
    EXPECT_EQ(e.code(), errc::bad_parameter);
    EXPECT_NE(std::string(e.what()).find("database 'nope'"), std::string::npos) << e.what();
  }
}

TEST(MilvusIndex, OlderServersWithoutRestV2AreNamed) {
  // A server without /v2/vectordb (Milvus before 2.4, or not Milvus) answers 404 there.
  httplib::Server old;
  old.Post(".*", [](const httplib::Request&, httplib::Response& res) {
    res.status = 404;
    res.set_content("404 page not found", "text/plain");
  });
  const int port = old.bind_to_any_port("127.0.0.1");
  std::thread serving([&] { old.listen_after_bind(); });
  while (!old.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  milvus_options o;
  o.port = port;
  try {
    milvus_index index(o, "space", 2, metric::l2);
    ADD_FAILURE() << "opened a collection on a server without REST v2";
  } catch (const error& e) {
    EXPECT_EQ(e.code(), errc::unavailable);
    EXPECT_NE(std::string(e.what()).find("older than 2.4.0"), std::string::npos) << e.what();
  }
  old.stop();
  serving.join();
}

TEST(MilvusIndex, ParsesAddresses) {
  const auto o = parse_milvus_uri(
      "milvus://db.example:19531?token=root:Milvus&db=acg&prefix=p_&timeout_ms=500&index=hnsw&M=32"
      "&efConstruction=100&ef=64&load_timeout_ms=9000&retries=5");
  EXPECT_EQ(o.host, "db.example");
  EXPECT_EQ(o.port, 19531);
  EXPECT_EQ(o.token, "root:Milvus");
  EXPECT_EQ(o.db_name, "acg");
  EXPECT_EQ(o.collection_prefix, "p_");
  EXPECT_EQ(o.timeout.count(), 500);
  EXPECT_EQ(o.load_timeout.count(), 9000);
  EXPECT_EQ(o.retries, 5);
  EXPECT_EQ(o.index_type, "HNSW");
  EXPECT_EQ(o.index_params, (nlohmann::json{{"M", 32}, {"efConstruction", 100}}));
  EXPECT_EQ(o.search_params, (nlohmann::json{{"ef", 64}}));
  const auto ivf = parse_milvus_uri("milvus://h?index=IVF_FLAT&nlist=256&nprobe=16");
  EXPECT_EQ(ivf.index_type, "IVF_FLAT");
  EXPECT_EQ(ivf.index_params, (nlohmann::json{{"nlist", 256}}));
  EXPECT_EQ(ivf.search_params, (nlohmann::json{{"nprobe", 16}}));
  EXPECT_EQ(parse_milvus_uri("milvus://h").port, 19530);
  EXPECT_EQ(parse_milvus_uri("milvus://h").index_params, (nlohmann::json{{"M", 16}, {"efConstruction", 200}}));
  EXPECT_TRUE(parse_milvus_uri("milvus://h?index=FLAT").index_params.empty());
  for (const char* bad : {"http://h:1", "milvus://:1", "milvus://h:x", "milvus://h:1?what=1", "milvus://h?index=DISKANN",
                          "milvus://h?M=1", "milvus://h?M=abc", "milvus://h?index=IVF_FLAT&ef=10",
                          "milvus://h?nprobe=4", "milvus://h?prefix=bad-prefix", "milvus://h?ef=0",
                          "milvus://h?retries=-1"})
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
    search::vector_spaces spaces(dir, db, index_address{factory, std::nullopt}, {config});
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
    search::vector_spaces spaces(dir, db, index_address{factory, std::nullopt}, {config});
    milvus_index check(options, "sig", 3, metric::inner_product);
    EXPECT_TRUE(check.contains("s9"));
    EXPECT_FALSE(check.contains("s1"));
  }
  // An emptied collection is refilled from the store.
  milvus_index(options, "sig", 3, metric::inner_product).drop();
  search::vector_spaces spaces(dir, db, index_address{factory, std::nullopt}, {config});
  EXPECT_EQ(spaces.size("sig"), 5u);
  EXPECT_TRUE(spaces.contains("sig", "s1"));
  EXPECT_FALSE(spaces.contains("sig", "s9"));
}

}  // namespace
}  // namespace acg2vec::index
