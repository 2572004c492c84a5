// Duplicate groups (search/dedup.h): the keep rule, relation classification on real sprites, the
// merge of a resolve and its atomicity on SQLite, and the fine grid's packing.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>

#include "core/error.h"
#include "image/decode.h"
#include "image/encode.h"
#include "image/fine_signature.h"
#include "image/preprocess.h"
#include "image/signature.h"
#include "search/vector_spaces.h"
#include "models/registry.h"
#include "search/dedup.h"
#include "search/service.h"
#include "store/sqlite_store.h"

namespace acg2vec {
namespace {

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::filesystem::path renpy(const char* name) { return std::filesystem::path(ACG2VEC_TEST_DATA) / "renpy" / name; }

std::string jpeg_of(const image::image_rgb8& img, int quality) {
  image::image_rgba8 rgba{img.width, img.height, false, {}};
  rgba.pixels.reserve(static_cast<std::size_t>(img.width) * img.height * 4);
  for (std::size_t i = 0; i < img.pixels.size(); i += 3) {
    rgba.pixels.insert(rgba.pixels.end(), {img.pixels[i], img.pixels[i + 1], img.pixels[i + 2], 255});
  }
  return image::encode_image(rgba, "jpeg", quality);
}

search::group_input input_of(const std::string& id, const image::image_rgb8& img, bool lossless, std::size_t bytes,
                     std::int64_t created, const std::string& hash) {
  search::group_input in;
  in.facts = {id, static_cast<std::int64_t>(img.width) * img.height, lossless, static_cast<double>(bytes), created};
  in.source = "/pictures/" + id;
  in.content_hash = hash;
  in.width = img.width;
  in.height = img.height;
  in.signature = image::perceptual_signature(img);
  in.fine = image::fine_signature(img, lossless, bytes);
  return in;
}

TEST(KeepRule, DefaultOrderIsPixelsLosslessSizeOldest) {
  const auto rule = search::parse_keep_rule(search::default_keep_rule);
  search::keep_facts big{"big", 1000, false, 10, 5};
  search::keep_facts small{"small", 999, true, 99, 1};
  EXPECT_TRUE(search::keep_first(big, small, rule));  // pixels first
  search::keep_facts png{"png", 1000, true, 10, 5};
  search::keep_facts jpg{"jpg", 1000, false, 50, 1};
  EXPECT_TRUE(search::keep_first(png, jpg, rule));  // then lossless over lossy
  search::keep_facts larger{"larger", 1000, true, 20, 5};
  EXPECT_TRUE(search::keep_first(larger, png, rule));  // then the larger file
  search::keep_facts older{"older", 1000, true, 20, 1};
  EXPECT_TRUE(search::keep_first(older, larger, rule));  // then the oldest
  search::keep_facts twin{"a-twin", 1000, true, 20, 1};
  EXPECT_TRUE(search::keep_first(twin, older, rule));  // finally the smaller id
  EXPECT_FALSE(search::keep_first(older, twin, rule));
}

TEST(KeepRule, OverridesAndErrors) {
  const auto rule = search::parse_keep_rule("lossless, newest");
  search::keep_facts png{"png", 10, true, 1, 1};
  search::keep_facts jpg{"jpg", 1000, false, 50, 9};
  EXPECT_TRUE(search::keep_first(png, jpg, rule));  // pixels no longer count
  search::keep_facts newer{"newer", 10, true, 1, 2};
  EXPECT_TRUE(search::keep_first(newer, png, rule));
  EXPECT_THROW(search::parse_keep_rule("pixels,biggest"), error);
  EXPECT_THROW(search::parse_keep_rule(" , "), error);
}

TEST(FineSignature, PacksEveryCellExactly) {
  auto img = image::decode_image_file(renpy("demo_eileen_happy.png"));
  auto v = image::fine_signature(img, true, 1234);
  ASSERT_EQ(v.size(), static_cast<std::size_t>(image::fine_dim));
  ASSERT_TRUE(image::is_fine_signature(v));
  auto g = image::unpack_fine(v);
  EXPECT_TRUE(g.lossless);
  EXPECT_EQ(g.file_bytes, 1234);
  ASSERT_EQ(g.luma.size(), static_cast<std::size_t>(image::fine_cells));
  // The same grid again, and identical after a round trip through the packing.
  EXPECT_EQ(image::fine_signature(img, true, 1234), v);
  auto bad = v;
  bad[0] = 1.0f;
  EXPECT_FALSE(image::is_fine_signature(bad));
  EXPECT_THROW(image::unpack_fine(bad), error);
  // Aligning a grid with itself: no error, nothing mirrored.
  auto a = image::align_fine(g, g);
  EXPECT_LT(a.error, 1e-4f);
  EXPECT_FALSE(a.mirrored);
  // Its mirror image aligns as a mirror.
  auto m = image::unpack_fine(image::fine_signature(image::flip_horizontal(img), true, 1));
  auto am = image::align_fine(m, g);
  EXPECT_TRUE(am.mirrored);
  EXPECT_LT(am.error, 0.01f);
}

TEST(RelationClassification, CopiesAreDuplicatesExpressionsAreVariants) {
  auto happy = image::decode_image_file(renpy("demo_eileen_happy.png"));
  auto concerned = image::decode_image_file(renpy("demo_eileen_concerned.png"));
  auto cave = image::decode_image_file(renpy("demo_bg_cave.jpg"));
  const std::string q70 = jpeg_of(happy, 70);
  auto happy_q70 = image::decode_image(q70);
  auto happy_half = image::resize_bicubic_pil(happy, happy.width / 2, happy.height / 2);
  std::vector<search::group_input> in{
      input_of("happy.q70.jpg", happy_q70, false, q70.size(), 3, "h2"),
      input_of("concerned.png", concerned, true, 217727, 2, "c"),
      input_of("happy.png", happy, true, 218855, 1, "h"),
      input_of("happy.half.png", happy_half, true, 60000, 4, "h3"),
      input_of("happy.again.png", happy, true, 218855, 5, "h4"),  // other bytes, the same pixels
  };
  std::vector<search::candidate_pair> pairs{{0, 2, 0.99f}, {1, 2, 0.98f}, {2, 3, 0.99f}, {2, 4, 1.0f}};
  auto g = search::analyse_group(in, pairs, search::parse_keep_rule(search::default_keep_rule));
  EXPECT_EQ(g.keep, "happy.png");  // largest, lossless, larger file than concerned, then oldest
  std::map<std::string, search::group_member> by_id;
  for (const auto& m : g.members) by_id[m.id] = m;
  EXPECT_EQ(by_id["happy.png"].relation, search::member_relation::keep);
  EXPECT_EQ(by_id["happy.again.png"].relation, search::member_relation::exact);
  EXPECT_EQ(by_id["happy.q70.jpg"].relation, search::member_relation::near_duplicate);
  EXPECT_EQ(by_id["happy.half.png"].relation, search::member_relation::near_duplicate);
  EXPECT_EQ(by_id["concerned.png"].relation, search::member_relation::variant);
  EXPECT_EQ(by_id["concerned.png"].copy_of, "concerned.png");
  EXPECT_EQ(by_id["happy.q70.jpg"].copy_of, "happy.png");
  EXPECT_GT(by_id["happy.q70.jpg"].score, 0.9f);
  // The group id depends only on the member ids.
  std::vector<search::group_input> shuffled{in[4], in[3], in[2], in[1], in[0]};
  EXPECT_EQ(search::analyse_group(shuffled, {}, search::parse_keep_rule(search::default_keep_rule)).id, g.id);
  // A different drawing does not align with the sprite: the fine stage rejects that pair.
  auto al = image::align_fine(image::unpack_fine(image::fine_signature(cave, false, 1)),
                              image::unpack_fine(in[2].fine));
  EXPECT_GT(al.error, image::fine_different_above);
}

// Random unit vectors, the last `copies` of them near copies (noise 0.05) of the first ones.
std::vector<float> planted_vectors(int n, int copies, int dim, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> data;
  for (int i = 0; i < n; ++i) {
    std::vector<float> v(static_cast<std::size_t>(dim));
    for (int c = 0; c < dim; ++c) {
      v[static_cast<std::size_t>(c)] =
          i >= n - copies ? data[static_cast<std::size_t>((i - (n - copies)) * dim + c)] + 0.05f * normal(rng) : normal(rng);
    }
    float norm = 0;
    for (float x : v) norm += x * x;
    for (auto& x : v) x /= std::sqrt(norm);
    data.insert(data.end(), v.begin(), v.end());
  }
  return data;
}

// The reference: every pair (a < b) at or above the threshold by a plain double loop.
std::set<std::pair<std::size_t, std::size_t>> pairs_by_loop(const std::vector<float>& data, int dim, float threshold) {
  const auto d = static_cast<std::size_t>(dim);
  const std::size_t n = data.size() / d;
  std::set<std::pair<std::size_t, std::size_t>> out;
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = i + 1; j < n; ++j) {
      double s = 0;
      for (std::size_t c = 0; c < d; ++c) s += static_cast<double>(data[i * d + c]) * data[j * d + c];
      if (s >= threshold) out.insert({i, j});
    }
  return out;
}

std::set<std::pair<std::size_t, std::size_t>> pair_set(const std::vector<search::candidate_pair>& pairs) {
  std::set<std::pair<std::size_t, std::size_t>> out;
  for (const auto& p : pairs) {
    EXPECT_LT(p.a, p.b);
    out.insert({p.a, p.b});
  }
  return out;
}

TEST(SelfJoin, ExactJoinAndPairScanFindWhatALoopFinds) {
  const int dim = 16;
  const auto data = planted_vectors(220, 20, dim, 3);
  const auto want = pairs_by_loop(data, dim, 0.9f);
  ASSERT_GE(want.size(), 20u);
  index::self_join_options o;
  o.threshold = 0.9f;
  o.neighbours = 4;
  index::self_join_stats st;
  auto joined = index::similarity_self_join(data, dim, {}, o, &st);
  EXPECT_TRUE(st.exact);
  EXPECT_EQ(pair_set(joined), want);
  for (const auto& p : joined) EXPECT_GE(p.score, 0.9f);
  EXPECT_EQ(pair_set(index::all_pairs_scan(data, dim, 0.9f)), want);
  EXPECT_EQ(search::connected_groups(220, joined).size(), want.size());  // each planted pair is its own group
  // A sampled join asks only for the first rows' neighbours and keeps their pairs with every row:
  // exactly the pairs that touch one of those rows. The pair scan samples rows the same way.
  constexpr std::size_t sample = 10;  // rows 0..9: the planted pairs (0..9, 200..209)
  std::set<std::pair<std::size_t, std::size_t>> touching;
  for (const auto& p : want)
    if (p.first < sample || p.second < sample) touching.insert(p);
  o.queries = sample;
  EXPECT_EQ(pair_set(index::similarity_self_join(data, dim, {}, o)), touching);
  EXPECT_EQ(pair_set(index::all_pairs_scan(data, dim, 0.9f, sample)), touching);
  EXPECT_GE(touching.size(), 10u);
  EXPECT_LT(touching.size(), want.size());
}

TEST(SelfJoin, ClusteredJoinIsExactWhenEveryClusterIsProbedAndFindsNearCopiesWithFew) {
  const int dim = 16;
  const auto data = planted_vectors(3000, 300, dim, 5);
  const auto want = pairs_by_loop(data, dim, 0.9f);
  ASSERT_GE(want.size(), 300u);
  index::self_join_options o;
  o.threshold = 0.9f;
  o.exact_max = 0;
  o.clusters = 12;
  o.probes = 12;
  index::self_join_stats st;
  EXPECT_EQ(pair_set(index::similarity_self_join(data, dim, {}, o, &st)), want);
  EXPECT_FALSE(st.exact);
  EXPECT_EQ(st.clusters, 12u);
  EXPECT_NEAR(st.mean_compared, 3000.0, 1e-9);  // every query met every row once
  // With 2 of 12 clusters probed each query meets about a sixth of the rows; the planted copies
  // (cosine ~0.98) sit in their original's cluster or the next, and are found from both sides.
  o.probes = 2;
  const auto few = pair_set(index::similarity_self_join(data, dim, {}, o, &st));
  EXPECT_LT(st.mean_compared, 3000.0 / 3);
  std::size_t found = 0;
  for (const auto& p : few) {
    EXPECT_TRUE(want.count(p)) << p.first << "," << p.second;
    found += want.count(p);
  }
  EXPECT_GE(static_cast<double>(found), 0.98 * static_cast<double>(want.size()));
}

TEST(SelfJoin, AlternativeQueriesFindMirroredCopiesAndNeighboursAreCapped) {
  const int dim = 8;
  // Row 1 is row 0 reversed (its "mirror"), orthogonal-ish to it; only the alternative query finds it.
  std::vector<float> data{1, 0, 0, 0, 0, 0, 0, 0,  //
                          0, 0, 0, 0, 0, 0, 0, 1,  //
                          0, 0, 0, 1, 0, 0, 0, 0};
  std::vector<float> alt(data.size());
  for (std::size_t r = 0; r < 3; ++r)
    for (std::size_t c = 0; c < 8; ++c) alt[r * 8 + c] = data[r * 8 + (7 - c)];
  index::self_join_options o;
  o.threshold = 0.9f;
  EXPECT_TRUE(index::similarity_self_join(data, dim, {}, o).empty());
  auto mirrored = index::similarity_self_join(data, dim, alt, o);
  ASSERT_EQ(mirrored.size(), 1u);
  EXPECT_EQ(mirrored[0].a, 0u);
  EXPECT_EQ(mirrored[0].b, 1u);
  EXPECT_FLOAT_EQ(mirrored[0].score, 1.0f);
  // 40 identical rows: each keeps its best 3, so at most 40 * 3 pairs, and they still form one group.
  std::vector<float> same;
  for (int i = 0; i < 40; ++i) same.insert(same.end(), data.begin(), data.begin() + 8);
  o.neighbours = 3;
  auto capped = index::similarity_self_join(same, dim, {}, o);
  EXPECT_LE(capped.size(), 40u * 3);
  EXPECT_GE(capped.size(), 39u);
  EXPECT_THROW(index::similarity_self_join(std::vector<float>(7), dim, {}, o), error);
  EXPECT_THROW(index::similarity_self_join(data, dim, std::vector<float>(8), o), error);
}

class ResolveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(ACG2VEC_TEST_WORK) /
           ("dedup-" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_ / "models");
    store_ = std::make_unique<store::sqlite_store>(dir_ / "acg2vec.db");
    spaces_ = std::make_unique<search::vector_spaces>(dir_, *store_);
    models_ = std::make_unique<models::model_registry>(dir_ / "models");
    models_->load_all();
    service_ = std::make_unique<search::search_service>(dir_, *store_, *spaces_, *models_);
    service_->define_spaces();
    const std::string happy = read_file(renpy("demo_eileen_happy.png"));
    const std::string q70 = jpeg_of(image::decode_image(happy), 70);
    add("happy.png", happy, {{"title", "kept"}});
    add("happy.q70.jpg", q70, {{"title", "copy"}, {"artist", "someone"}});
    add("concerned.png", read_file(renpy("demo_eileen_concerned.png")), {});
    // Tags as a tagger would have stored them.
    tag("happy.png", {{"1girl", 0.9f}, {"smile", 0.6f}});
    tag("happy.q70.jpg", {{"smile", 0.8f}, {"brown_hair", 0.7f}});
  }
  void TearDown() override {
    service_.reset();
    spaces_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  void add(const std::string& id, const std::string& bytes, nlohmann::json meta) {
    search::item_input in;
    in.id = id;
    in.source = (dir_ / id).string();
    in.metadata = std::move(meta);
    service_->add_image(bytes, std::move(in), search::write_mode::insert);
  }
  void tag(const std::string& id, std::vector<std::pair<std::string, float>> tags) {
    auto it = store_->get(id);
    it->tags["wd"] = std::move(tags);
    store_->upsert(*it);
  }

  std::filesystem::path dir_;
  std::unique_ptr<store::sqlite_store> store_;
  std::unique_ptr<search::vector_spaces> spaces_;
  std::unique_ptr<models::model_registry> models_;
  std::unique_ptr<search::search_service> service_;
};

TEST_F(ResolveTest, MergesTagsAndMetadataAndRemovesTheCopy) {
  auto report = search::find_duplicates(*service_, {});
  ASSERT_EQ(report.groups.size(), 1u);
  const auto& g = report.groups[0];
  EXPECT_EQ(g.keep, "happy.png");
  auto plan = search::plan_resolve(*service_, g);
  ASSERT_EQ(plan.merges.size(), 1u);  // the variant is never merged
  auto dry = search::apply_resolve(*service_, std::span(&plan, 1), {true, false});
  EXPECT_TRUE(dry["dry_run"].get<bool>());
  EXPECT_TRUE(store_->contains("happy.q70.jpg"));
  search::apply_resolve(*service_, std::span(&plan, 1), {});
  EXPECT_FALSE(store_->contains("happy.q70.jpg"));
  EXPECT_TRUE(store_->contains("concerned.png"));
  EXPECT_FALSE(spaces_->contains(std::string(search::signature_space), "happy.q70.jpg"));
  auto kept = store_->get("happy.png");
  ASSERT_TRUE(kept);
  std::map<std::string, float> tags(kept->tags["wd"].begin(), kept->tags["wd"].end());
  EXPECT_EQ(tags, (std::map<std::string, float>{{"1girl", 0.9f}, {"smile", 0.8f}, {"brown_hair", 0.7f}}));
  EXPECT_EQ(kept->metadata["title"], "kept");
  EXPECT_EQ(kept->metadata["artist"], "someone");
  ASSERT_EQ(kept->metadata["merged_from"].size(), 1u);
  EXPECT_EQ(kept->metadata["merged_from"][0]["id"], "happy.q70.jpg");
  EXPECT_EQ(kept->metadata["merged_from"][0]["metadata"]["title"], "copy");
  // The variants still form a group, but one with nothing left to resolve.
  auto after = search::find_duplicates(*service_, {});
  ASSERT_EQ(after.groups.size(), 1u);
  EXPECT_EQ(after.groups[0].members.size(), 2u);
  EXPECT_TRUE(search::plan_resolve(*service_, after.groups[0]).merges.empty());
}

TEST_F(ResolveTest, AFailureInsideTheTransactionChangesNothing) {
  auto report = search::find_duplicates(*service_, {});
  ASSERT_EQ(report.groups.size(), 1u);
  auto plan = search::plan_resolve(*service_, report.groups[0]);
  const auto generation = store_->generation();
  std::vector<store::item> kept{plan.merges[0].kept};
  std::vector<std::string> removed{"happy.q70.jpg"};
  EXPECT_THROW(store_->upsert_and_remove(kept, removed, [] { throw std::runtime_error("crash"); }), std::runtime_error);
  EXPECT_EQ(store_->generation(), generation);
  EXPECT_TRUE(store_->contains("happy.q70.jpg"));
  EXPECT_FALSE(store_->get("happy.png")->metadata.contains("merged_from"));
}

}  // namespace
}  // namespace acg2vec
