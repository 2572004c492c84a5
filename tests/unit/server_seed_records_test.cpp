// The seed's Illust records and response conventions (server/seed_records.h).
#include <gtest/gtest.h>

#include "server/seed_records.h"

namespace acg2vec {

using json = nlohmann::json;
namespace {

store::item sample_item() {
  store::item it;
  it.id = "1234";
  it.numeric_id = false;
  it.source = "/data/pictures/Blue Girl.final.png";
  it.width = 640;
  it.height = 480;
  it.created_at = 1'700'000'000'123;  // 2023-11-14T22:13:20.123Z
  it.tags["deepdanbooru"] = {{"1girl", 0.9f}, {"solo", 0.6f}, {"hat", 0.3f}, {"rating:safe", 0.2f},
                             {"rating:explicit", 0.7f}};
  it.tags["wd"] = {{"solo", 0.95f}, {"long hair", 0.55f}, {"general", 0.1f}};
  return it;
}

TEST(SeedRecords, IdsAreIntegersOnlyWhenJavaScriptReadsThemExactly) {
  EXPECT_EQ(server::seed_id_json("7"), 7);
  EXPECT_EQ(server::seed_id_json("0"), 0);
  EXPECT_EQ(server::seed_id_json("9007199254740991"), 9007199254740991LL);
  EXPECT_EQ(server::seed_id_json("9007199254740992"), "9007199254740992");
  EXPECT_EQ(server::seed_id_json("007"), "007");
  EXPECT_EQ(server::seed_id_json("-3"), "-3");
  EXPECT_EQ(server::seed_id_json("12a"), "12a");
  EXPECT_EQ(server::seed_id_json(""), "");
}

TEST(SeedRecords, SanityLevelsOfRatings) {
  EXPECT_EQ(server::sanity_level_of_rating("rating:safe"), 2);
  EXPECT_EQ(server::sanity_level_of_rating("general"), 2);
  EXPECT_EQ(server::sanity_level_of_rating("sensitive"), 4);
  EXPECT_EQ(server::sanity_level_of_rating("rating:questionable"), 6);
  EXPECT_EQ(server::sanity_level_of_rating("explicit"), 6);
  EXPECT_FALSE(server::sanity_level_of_rating("1girl").has_value());
  EXPECT_FALSE(server::sanity_level_of_rating("rating:").has_value());
}

TEST(SeedRecords, DefaultsComeFromTheItem) {
  auto illust = server::seed_illust(sample_item(), "http://h:1");
  EXPECT_EQ(illust.at("id"), 1234);
  EXPECT_EQ(illust.at("title"), "Blue Girl.final");
  const std::string thumb = "http://h:1/v1/items/1234/thumbnail";
  EXPECT_EQ(illust.at("imageUrls"), (json::array({{{"squareMedium", thumb}, {"medium", thumb}, {"large", thumb},
                                                   {"original", thumb}}})));
  EXPECT_EQ(illust.at("width"), 640);
  EXPECT_EQ(illust.at("height"), 480);
  // Best score per name over both taggers, at least 0.5, best first; ratings apart.
  EXPECT_EQ(illust.at("tags"), (json::array({{{"name", "solo"}}, {{"name", "1girl"}}, {{"name", "long hair"}}})));
  EXPECT_EQ(illust.at("sanityLevel"), 6);  // rating:explicit scores highest
  EXPECT_EQ(illust.at("xrestrict"), 1);
  EXPECT_EQ(illust.at("createDate"), "2023-11-14T22:13:20.123Z");
}

TEST(SeedRecords, StoredFieldsWin) {
  auto it = sample_item();
  it.metadata = {{"title", "stored"}, {"imageUrls", json::array({{{"large", "https://i.pximg.net/a.jpg"}}})},
                 {"artistId", 5}};
  auto illust = server::seed_illust(it, "");
  EXPECT_EQ(illust.at("title"), "stored");
  EXPECT_EQ(illust.at("imageUrls"), it.metadata.at("imageUrls"));
  EXPECT_EQ(illust.at("artistId"), 5);
  EXPECT_EQ(illust.at("width"), 640);  // not stored: the default stays
}

TEST(SeedRecords, TitleFallsBackToTheId) {
  store::item it;
  it.id = "abc";
  EXPECT_EQ(server::seed_illust(it, "").at("title"), "abc");
  it.source = "https://example.org/x/picture.jpg?size=large#top";
  EXPECT_EQ(server::seed_illust(it, "").at("title"), "picture");
  EXPECT_FALSE(server::seed_illust(it, "").contains("sanityLevel"));  // no rating known
  it.id = "a b/c";
  EXPECT_EQ(server::seed_illust(it, "").at("imageUrls")[0].at("large"), "/v1/items/a%20b%2Fc/thumbnail");
}

TEST(SeedRecords, BaseUrlFromHostAndProxyHeaders) {
  server::http_request req;
  EXPECT_EQ(server::public_base_url(req), "");
  req.headers.emplace("Host", "127.0.0.1:8081");
  EXPECT_EQ(server::public_base_url(req), "http://127.0.0.1:8081");
  req.headers.emplace("X-Forwarded-Host", "a.example.org, b.internal");
  req.headers.emplace("X-Forwarded-Proto", "https");
  EXPECT_EQ(server::public_base_url(req), "https://a.example.org");
  server::http_request evil;
  evil.headers.emplace("Host", "x\"><script>");
  EXPECT_EQ(server::public_base_url(evil), "");
}

TEST(SeedRecords, EmptyDataIsDropped) {
  for (const json& empty : {json(), json::array(), json::object(), json("")}) {
    server::http_response res;
    server::reply_seed(res, empty, "m");
    EXPECT_EQ(json::parse(res.body), (json{{"message", "m"}})) << empty.dump();
  }
  server::http_response res;
  server::reply_seed(res, json::array({1}), "m");
  EXPECT_EQ(json::parse(res.body).at("data"), json::array({1}));
  server::http_response f;
  server::reply_seed(f, false, "m");
  EXPECT_EQ(json::parse(f.body).at("data"), false);
}

}  // namespace
}  // namespace acg2vec
