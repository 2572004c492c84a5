// Caption builder tests: every expected string is written by hand from seed-spec §6.3.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "text/caption.h"

namespace acg2vec::text {
namespace {

using captions = std::vector<std::string>;
tagged_name gen(const std::string& n) { return {n, 0}; }
tagged_name chr(const std::string& n) { return {n, 4}; }
tagged_name cpy(const std::string& n) { return {n, 3}; }

TEST(CaptionB, CharacterCopyrightGeneral) {
  // Parentheses stripped because W is non-empty; the leftover '_' becomes a space; step 4 adds a second space.
  const std::vector<tagged_name> tags{chr("hatsune_miku_(vocaloid)"), cpy("vocaloid"), gen("1girl"),
                                      gen("long_hair"), gen("twintails")};
  EXPECT_EQ(build_captions(tags, caption_variant::b),
            captions{"hatsune miku  from vocaloid with 1girl,long hair,twintails"});
}

TEST(CaptionB, SpaceBeforeCommaAndTrailingSpaceDropped) {
  // No general tags: step 9 still drops the last character, the space after "vocaloid".
  const std::vector<tagged_name> tags{chr("hatsune_miku_(vocaloid)"), chr("kagamine_rin"), cpy("vocaloid")};
  EXPECT_EQ(build_captions(tags, caption_variant::b), captions{"hatsune miku ,kagamine rin from vocaloid"});
}

TEST(CaptionB, ParenthesesKeptWithoutCopyright) {
  const std::vector<tagged_name> tags{chr("hatsune_miku_(cosplay)"), gen("1girl")};
  EXPECT_EQ(build_captions(tags, caption_variant::b), captions{"hatsune miku (cosplay) with 1girl"});
}

TEST(CaptionB, OriginalIsNotACopyright) {
  const std::vector<tagged_name> tags{chr("foo_(bar)"), cpy("original"), gen("smile")};
  EXPECT_EQ(build_captions(tags, caption_variant::b), captions{"foo (bar) with smile"});
}

TEST(CaptionB, EveryShortestParenthesisedSpanIsRemoved) {
  const std::vector<tagged_name> tags{chr("a_(b)_c_(d)"), chr("e_(f"), cpy("x_y")};
  EXPECT_EQ(build_captions(tags, caption_variant::b), captions{"a  c ,e (f from x y"});
}

TEST(CaptionB, GeneralOnly) {
  // No character: no leading space and no "with ".
  const std::vector<tagged_name> tags{gen("1girl"), gen("solo"), gen("cowboy_shot")};
  EXPECT_EQ(build_captions(tags, caption_variant::b), captions{"1girl,solo,cowboy shot"});
}

TEST(CaptionB, ArtistAndMetaIgnored) {
  const std::vector<tagged_name> tags{{"some_artist", 1}, {"highres", 5}, gen("smile"), {"absurdres", 5}};
  EXPECT_EQ(build_captions(tags, caption_variant::b), captions{"smile"});
}

TEST(CaptionB, GeneralWithoutAsciiLetterIsDropped) {
  const std::vector<tagged_name> tags{gen(":3"), gen("^_^"), gen("smile"), gen("!?")};
  EXPECT_EQ(build_captions(tags, caption_variant::b), captions{"smile"});
}

TEST(CaptionB, NoKeptGeneralEatsTheSpaceOfWith) {
  const std::vector<tagged_name> tags{chr("remilia_scarlet"), gen("!?"), gen("...")};
  EXPECT_EQ(build_captions(tags, caption_variant::b), captions{"remilia scarlet with"});
}

TEST(CaptionB, CopyrightOnly) {
  const std::vector<tagged_name> tags{cpy("touhou")};
  EXPECT_EQ(build_captions(tags, caption_variant::b), captions{"from touhou"});
}

TEST(CaptionB, EmptyTagsGiveOneEmptyCaption) {
  EXPECT_EQ(build_captions({}, caption_variant::b), captions{""});
}

TEST(CaptionB, TwentyGeneralsGiveOneCaption) {
  std::vector<tagged_name> tags{chr("alice")};
  std::string expected = "alice with ";
  for (char c = 'a'; c < 'a' + 20; ++c) {
    tags.push_back(gen(std::string(1, c) + "_x"));
    expected += std::string(1, c) + " x,";
  }
  expected.pop_back();
  EXPECT_EQ(build_captions(tags, caption_variant::b), captions{expected});
}

TEST(CaptionB, MoreThanTwentyGeneralsSplitInHalves) {
  // 23 general tags: h = 11. The first caption holds G[11:], the second G[0:11]; ":3" is not kept.
  std::vector<tagged_name> tags{chr("alice"), cpy("wonderland")};
  const char* names[] = {"g_a", "g_b", "g_c", "g_d", "g_e", "g_f", "g_g", "g_h", "g_i", "g_j", ":3", "g_l",
                         "g_m", "g_n", "g_o", "g_p", "g_q", "g_r", "g_s", "g_t", "g_u", "g_v", "g_w"};
  for (const char* n : names) tags.push_back(gen(n));
  EXPECT_EQ(build_captions(tags, caption_variant::b),
            (captions{"alice from wonderland with g l,g m,g n,g o,g p,g q,g r,g s,g t,g u,g v,g w",
                      "alice from wonderland with g a,g b,g c,g d,g e,g f,g g,g h,g i,g j"}));
}

TEST(CaptionA, LeadingSpaceAndWithWithoutCharacter) {
  // Step 4 always adds the space; step 6 needs only general tags; girl/boy substrings are dropped
  // (cowboy_shot included).
  const std::vector<tagged_name> tags{gen("1girl"), gen("solo"), gen("2boys"), gen("smile"), gen("cowboy_shot")};
  EXPECT_EQ(build_captions(tags, caption_variant::a), captions{" with solo,smile"});
}

TEST(CaptionA, CopyrightWithoutCharacter) {
  const std::vector<tagged_name> tags{cpy("touhou"), gen("1girl")};
  EXPECT_EQ(build_captions(tags, caption_variant::a), captions{" from touhou with"});
}

TEST(CaptionA, EmptyTags) { EXPECT_EQ(build_captions({}, caption_variant::a), captions{""}); }

TEST(CaptionA, SameAsBWithCharacterAndCopyright) {
  const std::vector<tagged_name> tags{chr("hatsune_miku_(vocaloid)"), cpy("vocaloid"), gen("long_hair")};
  EXPECT_EQ(build_captions(tags, caption_variant::a), captions{"hatsune miku  from vocaloid with long hair"});
}

TEST(CaptionA, MoreThanTwentyGeneralsSplitInHalves) {
  std::vector<tagged_name> tags;
  for (int i = 0; i < 21; ++i) tags.push_back(gen(i == 0 ? "1girl" : "t" + std::to_string(i)));
  // h = 10: second caption G[0:10] minus 1girl, first caption G[10:].
  EXPECT_EQ(build_captions(tags, caption_variant::a),
            (captions{" with t10,t11,t12,t13,t14,t15,t16,t17,t18,t19,t20", " with t1,t2,t3,t4,t5,t6,t7,t8,t9"}));
}

TEST(CaptionInput, JsonAndCsv) {
  const auto j = parse_tags_json(R"([{"name":"hatsune_miku","category":4},{"name":"1girl","category":"0"}])");
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0].name, "hatsune_miku");
  EXPECT_EQ(j[0].category, 4);
  EXPECT_EQ(j[1].category, 0);
  const auto c = parse_tags_csv("name,category,count\n1girl,0,6008644,\"1girls,sole_female\"\r\n\"a,b\",3\n");
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].name, "1girl");
  EXPECT_EQ(c[1].name, "a,b");
  EXPECT_EQ(c[1].category, 3);
  EXPECT_THROW(parse_tags_json("{}"), acg2vec::error);
  EXPECT_THROW(parse_tags_json(R"([{"name":"x"}])"), acg2vec::error);
  EXPECT_THROW(parse_tags_csv("a,0\nb,zero\n"), acg2vec::error);
  EXPECT_EQ(parse_caption_variant("A"), caption_variant::a);
  EXPECT_THROW(parse_caption_variant("c"), acg2vec::error);
}

TEST(CaptionInput, ReadFileDetectsFormat) {
  const auto dir = std::filesystem::path(ACG2VEC_TEST_WORK) / "text";
  std::filesystem::create_directories(dir);
  {
    std::ofstream(dir / "tags.json") << "\xef\xbb\xbf  [{\"name\":\"smile\",\"category\":0}]";
    std::ofstream(dir / "tags.csv") << "smile,0\n";
  }
  EXPECT_EQ(read_tags_file(dir / "tags.json").at(0).name, "smile");
  EXPECT_EQ(read_tags_file(dir / "tags.csv").at(0).name, "smile");
  EXPECT_THROW(read_tags_file(dir / "missing.csv"), acg2vec::error);
}

}  // namespace
}  // namespace acg2vec::text
