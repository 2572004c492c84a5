// Dataset captioning tests. Every expected caption is written by hand from the option definitions
// in docs/captioning.md (sd-scripts' tag_images_by_wd14_tagger.py and SmilingWolf's app), not
// taken from the code's output.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "support/fixtures.h"
#include "core/error.h"
#include "models/captioning.h"

namespace acg2vec::models {
namespace {

using test_support::fresh_dir;

namespace fs = std::filesystem;
constexpr auto G = models::tag_category::general;
constexpr auto C = models::tag_category::character;
constexpr auto R = models::tag_category::rating;

models::combined_tag tag(const char* name, models::tag_category c, float score) { return {name, c, score, -1}; }

// One image's scores: ratings, general tags (one at exactly the threshold, one just under) and
// characters (one above 0.85, one under).
std::vector<models::combined_tag> sample() {
  return {tag("general", R, 0.70f),   tag("sensitive", R, 0.20f), tag("explicit", R, 0.05f),
          tag("smile", G, 0.35f),     tag("1girl", G, 0.99f),     tag("long_hair", G, 0.60f),
          tag("blush", G, 0.34f),     tag("hatsune_miku", C, 0.90f), tag("kaname_madoka", C, 0.80f)};
}

models::category_thresholds default_thresholds() {
  models::category_thresholds t;
  t.general = 0.35f;
  t.character = 0.85f;
  return t;
}

std::string caption_of(const std::vector<models::combined_tag>& tags, const models::caption_options& o) {
  return models::build_caption(tags, default_thresholds(), o).text;
}

TEST(Captioning, ThresholdsPerCategorySortedByScore) {
  // >= threshold; by score, highest first; ratings only when asked for.
  EXPECT_EQ(caption_of(sample(), {}), "1girl, hatsune_miku, long_hair, smile");
}

TEST(Captioning, ThresholdResolution) {
  models::model_manifest m;
  m.thresholds[G] = 0.5f;
  m.thresholds[C] = 0.6f;
  m.default_threshold = 0.4f;
  models::threshold_options o;
  auto t = models::resolve_thresholds(o, m);
  EXPECT_FLOAT_EQ(t.general, 0.5f);
  EXPECT_FLOAT_EQ(t.character, 0.6f);
  EXPECT_FLOAT_EQ(t.of(models::tag_category::copyright), 0.4f);  // not in the manifest: its default
  o.thresh = 0.3f;
  t = models::resolve_thresholds(o, m);
  EXPECT_FLOAT_EQ(t.general, 0.3f);
  EXPECT_FLOAT_EQ(t.character, 0.3f);
  EXPECT_FLOAT_EQ(t.of(models::tag_category::meta), 0.3f);
  o.general = 0.7f;
  t = models::resolve_thresholds(o, m);
  EXPECT_FLOAT_EQ(t.general, 0.7f);
  EXPECT_FLOAT_EQ(t.character, 0.3f);
  o.character = 0.95f;
  t = models::resolve_thresholds(o, m);
  EXPECT_FLOAT_EQ(t.character, 0.95f);
}

TEST(Captioning, GeneralAndCharacterThresholdsApply) {
  models::category_thresholds t = default_thresholds();
  t.general = 0.5f;
  t.character = 0.75f;
  EXPECT_EQ(models::build_caption(sample(), t, {}).text, "1girl, hatsune_miku, kaname_madoka, long_hair");
  t.character = 1.5f;  // above 1 drops every character
  EXPECT_EQ(models::build_caption(sample(), t, {}).text, "1girl, long_hair");
}

TEST(Captioning, CharacterTagsFirst) {
  models::caption_options o;
  o.character_tags_first = true;
  auto tags = sample();
  tags.push_back(tag("kagamine_rin", C, 0.95f));
  EXPECT_EQ(caption_of(tags, o), "kagamine_rin, hatsune_miku, 1girl, long_hair, smile");
}

TEST(Captioning, RatingFirstLastAndBoth) {
  models::caption_options o;
  o.rating_first = true;
  EXPECT_EQ(caption_of(sample(), o), "general, 1girl, hatsune_miku, long_hair, smile");
  o.rating_first = false;
  o.rating_last = true;
  EXPECT_EQ(caption_of(sample(), o), "1girl, hatsune_miku, long_hair, smile, general");
  o.rating_first = true;  // as sd-scripts: "as last tag" wins
  EXPECT_EQ(caption_of(sample(), o), "1girl, hatsune_miku, long_hair, smile, general");
}

TEST(Captioning, RatingIsTheArgmaxAndCanBeUndesired) {
  models::caption_options o;
  o.rating_first = true;
  auto tags = sample();
  tags[2].score = 0.9f;  // explicit now the most likely
  EXPECT_EQ(caption_of(tags, o), "explicit, 1girl, hatsune_miku, long_hair, smile");
  o.undesired = {"explicit"};  // the argmax is dropped, not replaced by the runner-up
  EXPECT_EQ(caption_of(tags, o), "1girl, hatsune_miku, long_hair, smile");
}

TEST(Captioning, UndesiredTagsByRawOrOutputName) {
  models::caption_options o;
  o.undesired = {"long_hair", "hatsune_miku"};
  EXPECT_EQ(caption_of(sample(), o), "1girl, smile");
  o.remove_underscore = true;
  o.undesired = {"long hair"};
  EXPECT_EQ(caption_of(sample(), o), "1girl, hatsune miku, smile");
}

TEST(Captioning, RemoveUnderscoreKeepsKaomoji) {
  EXPECT_EQ(models::remove_underscore("long_hair"), "long hair");
  EXPECT_EQ(models::remove_underscore("hatsune_miku_(vocaloid)"), "hatsune miku (vocaloid)");
  for (const char* k : {"^_^", ">_<", "o_o", "0_0", "(o)_(o)", "+_+", "+_-", "._.", "<o>_<o>", "<|>_<|>", "=_=",
                        "3_3", "6_9", ">_o", "@_@", "u_u", "x_x", "|_|", "||_||"}) {
    EXPECT_TRUE(models::is_kaomoji(k)) << k;
    EXPECT_EQ(models::remove_underscore(k), k);
  }
  EXPECT_FALSE(models::is_kaomoji("o_o_o"));
  EXPECT_EQ(models::remove_underscore("o_o_o"), "o o o");
  models::caption_options o;
  o.remove_underscore = true;
  auto tags = sample();
  tags.push_back(tag("^_^", G, 0.5f));
  EXPECT_EQ(caption_of(tags, o), "1girl, hatsune miku, long hair, ^_^, smile");
}

TEST(Captioning, AlwaysFirstTagsInListedOrder) {
  models::caption_options o;
  o.always_first = {"smile", "long_hair", "absent_tag"};
  EXPECT_EQ(caption_of(sample(), o), "smile, long_hair, 1girl, hatsune_miku");
  o.remove_underscore = true;
  o.always_first = {"long hair"};
  EXPECT_EQ(caption_of(sample(), o), "long hair, 1girl, hatsune miku, smile");
  o.rating_last = true;  // the rating can be moved too
  o.always_first = {"general"};
  EXPECT_EQ(caption_of(sample(), o), "general, 1girl, hatsune miku, long hair, smile");
}

TEST(Captioning, TagReplacementParsing) {
  using pairs = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(models::parse_tag_replacement("a,b;c,d"), (pairs{{"a", "b"}, {"c", "d"}}));
  EXPECT_EQ(models::parse_tag_replacement("a\\,b,A\\,B;c\\;d,C\\;D"), (pairs{{"a,b", "A,B"}, {"c;d", "C;D"}}));
  EXPECT_EQ(models::parse_tag_replacement("1girl, 1woman;"), (pairs{{"1girl", "1woman"}}));
  EXPECT_TRUE(models::parse_tag_replacement("").empty());
  EXPECT_THROW(models::parse_tag_replacement("a"), error);
  EXPECT_THROW(models::parse_tag_replacement("a,b,c"), error);
  EXPECT_THROW(models::parse_tag_replacement(",b"), error);
}

TEST(Captioning, TagReplacementApplied) {
  models::caption_options o;
  o.replacements = {{"1girl", "1woman"}, {"long hair", "very long hair"}};
  EXPECT_EQ(caption_of(sample(), o), "1woman, hatsune_miku, long_hair, smile");
  o.remove_underscore = true;  // sources match the name after underscores are replaced (or the raw name)
  EXPECT_EQ(caption_of(sample(), o), "1woman, hatsune miku, very long hair, smile");
  o.replacements = {{"smile", "1girl"}};  // two tags onto one name: written once, at the first
  EXPECT_EQ(caption_of(sample(), o), "1girl, hatsune miku, long hair");
}

TEST(Captioning, CaptionSeparator) {
  models::caption_options o;
  o.separator = " | ";
  o.undesired = models::split_tags("smile | long_hair", o.separator);
  EXPECT_EQ(caption_of(sample(), o), "1girl | hatsune_miku");
  o.separator = ",";
  o.undesired.clear();
  EXPECT_EQ(caption_of(sample(), o), "1girl,hatsune_miku,long_hair,smile");
}

TEST(Captioning, SplitTags) {
  using v = std::vector<std::string>;
  EXPECT_EQ(models::split_tags(" a , b,,c ", ", "), (v{"a", "b", "c"}));
  EXPECT_EQ(models::split_tags("a b | c", " | "), (v{"a b", "c"}));
  EXPECT_TRUE(models::split_tags("", ", ").empty());
}

TEST(Captioning, EscapeParentheses) {
  EXPECT_EQ(models::escape_parentheses("eileen_(renpy)"), "eileen_\\(renpy\\)");
  models::caption_options o;
  o.escape_parentheses = true;
  o.remove_underscore = true;
  std::vector<models::combined_tag> tags{tag("eileen_(renpy)", C, 0.9f), tag("(o)_(o)", G, 0.8f), tag("1girl", G, 0.7f)};
  EXPECT_EQ(caption_of(tags, o), "eileen \\(renpy\\), \\(o\\)_\\(o\\), 1girl");
}

TEST(Captioning, McutKnownVectors) {
  EXPECT_FALSE(models::mcut_threshold({}).has_value());
  EXPECT_FALSE(models::mcut_threshold({0.4f}).has_value());
  EXPECT_FLOAT_EQ(*models::mcut_threshold({0.2f, 0.9f, 0.3f, 0.8f}), 0.55f);  // gaps .1 .5 .1 → (0.8 + 0.3) / 2
  EXPECT_FLOAT_EQ(*models::mcut_threshold({0.75f, 0.5f, 0.25f}), 0.625f);     // equal gaps: the first
  EXPECT_FLOAT_EQ(*models::mcut_threshold({1.0f, 0.0f}), 0.5f);
}

TEST(Captioning, McutPerCategoryWithCharacterFloor) {
  models::caption_options o;
  o.mcut = true;
  // general: .95 .9 .3 .25 .2 → largest gap .9→.3, threshold .6; character: .3 .1 .05 → .2
  std::vector<models::combined_tag> tags{tag("a", G, 0.95f), tag("b", G, 0.9f),  tag("c", G, 0.3f),  tag("d", G, 0.25f),
                                 tag("e", G, 0.2f),  tag("x", C, 0.3f),  tag("y", C, 0.1f),  tag("z", C, 0.05f)};
  auto cap = models::build_caption(tags, default_thresholds(), o);
  EXPECT_EQ(cap.text, "a, b, x");
  EXPECT_FLOAT_EQ(cap.thresholds.general, 0.6f);
  EXPECT_FLOAT_EQ(cap.thresholds.character, 0.2f);
  // character .12 .02 .01 → MCut .07, raised to 0.15: no character is kept
  tags[5].score = 0.12f;
  tags[6].score = 0.02f;
  tags[7].score = 0.01f;
  cap = models::build_caption(tags, default_thresholds(), o);
  EXPECT_EQ(cap.text, "a, b");
  EXPECT_FLOAT_EQ(cap.thresholds.character, 0.15f);
}

TEST(Captioning, MaxTagsDoesNotCountTheRating) {
  models::caption_options o;
  o.max_tags = 2;
  EXPECT_EQ(caption_of(sample(), o), "1girl, hatsune_miku");
  o.rating_first = true;
  EXPECT_EQ(caption_of(sample(), o), "general, 1girl, hatsune_miku");
  o.character_tags_first = true;
  o.max_tags = 1;
  EXPECT_EQ(caption_of(sample(), o), "general, hatsune_miku");
}

TEST(Captioning, WithScores) {
  models::caption_options o;
  o.with_scores = true;
  o.rating_last = true;
  EXPECT_EQ(caption_of(sample(), o), "(1girl:0.99), (hatsune_miku:0.90), (long_hair:0.60), (smile:0.35), (general:0.70)");
}

TEST(Captioning, EverythingTogether) {
  models::caption_options o;
  o.remove_underscore = true;
  o.escape_parentheses = true;
  o.character_tags_first = true;
  o.rating_first = true;
  o.with_scores = true;
  o.separator = "; ";
  o.undesired = {"smile"};
  o.replacements = {{"1girl", "one girl"}};
  o.always_first = {"long hair"};
  auto tags = sample();
  tags.push_back(tag("eileen_(renpy)", C, 0.88f));
  EXPECT_EQ(caption_of(tags, o),
            "(long hair:0.60); (general:0.70); (hatsune miku:0.90); (eileen \\(renpy\\):0.88); (one girl:0.99)");
}

// Two taggers whose vocabularies overlap: A lacks "tail", B lacks "hat".
std::vector<models::model_scores> two_models() {
  models::category_thresholds t = default_thresholds();
  models::model_scores a{{{"safe", R, 0.8f}, {"1girl", G, 0.9f}, {"smile", G, 0.3f}, {"hat", G, 0.6f}}, t};
  models::model_scores b{{{"safe", R, 0.4f}, {"1girl", G, 0.5f}, {"smile", G, 0.5f}, {"tail", G, 0.2f}}, t};
  return {a, b};
}

TEST(Captioning, EnsembleMeanAndMaxOverModelsKnowingTheTag) {
  auto mean = models::combine(two_models(), models::ensemble_mode::mean, false);
  ASSERT_EQ(mean.size(), 5u);
  EXPECT_EQ(mean[0].name, "safe");
  EXPECT_FLOAT_EQ(mean[0].score, 0.6f);
  EXPECT_EQ(mean[1].name, "1girl");
  EXPECT_FLOAT_EQ(mean[1].score, 0.7f);
  EXPECT_FLOAT_EQ(mean[2].score, 0.4f);  // smile
  EXPECT_EQ(mean[3].name, "hat");
  EXPECT_FLOAT_EQ(mean[3].score, 0.6f);  // only A knows it: not halved
  EXPECT_EQ(mean[4].name, "tail");
  EXPECT_FLOAT_EQ(mean[4].score, 0.2f);
  EXPECT_EQ(models::build_caption(mean, default_thresholds(), {}).text, "1girl, hat, smile");
  auto max = models::combine(two_models(), models::ensemble_mode::max, false);
  EXPECT_FLOAT_EQ(max[1].score, 0.9f);
  EXPECT_FLOAT_EQ(max[2].score, 0.5f);
  EXPECT_EQ(models::build_caption(max, default_thresholds(), {}).text, "1girl, hat, smile");
}

TEST(Captioning, EnsembleVote) {
  auto inputs = two_models();
  inputs[1].thresholds.general = 0.55f;  // B keeps none of its general tags now
  auto vote = models::combine(inputs, models::ensemble_mode::vote, false);
  EXPECT_FLOAT_EQ(vote[1].votes, 0.5f);  // 1girl: A yes, B no
  EXPECT_FLOAT_EQ(vote[2].votes, 0.0f);  // smile: A no (.3), B no (.5 < .55)
  EXPECT_FLOAT_EQ(vote[3].votes, 1.0f);  // hat: A yes, and only A knows it
  EXPECT_FLOAT_EQ(vote[4].votes, 0.0f);  // tail: B no
  // At least half keep it; the written score is the mean.
  models::caption_options o;
  o.with_scores = true;
  o.rating_first = true;
  EXPECT_EQ(models::build_caption(vote, default_thresholds(), o).text, "(safe:0.60), (1girl:0.70), (hat:0.60)");
}

TEST(Captioning, CaptionForUsesTheManifestThresholds) {
  models::model_manifest m;
  m.thresholds[G] = 0.5f;
  m.thresholds[C] = 0.95f;
  std::vector<models::scored_tag> tags{{"1girl", G, 0.9f}, {"smile", G, 0.4f}, {"miku", C, 0.9f}};
  EXPECT_EQ(models::caption_for(m, tags, {}).text, "1girl");
  models::caption_options o;
  o.thresholds.thresh = 0.3f;
  EXPECT_EQ(models::caption_for(m, tags, o).text, "1girl, miku, smile");
}

TEST(Captioning, MergeCaptionKeepsExistingOrder) {
  EXPECT_EQ(models::merge_caption("a, b, c\n", {"c", "d", "a", "e"}, ", "), "a, b, c, d, e");
  EXPECT_EQ(models::merge_caption("", {"x", "y"}, ", "), "x, y");
  EXPECT_EQ(models::merge_caption("x|y", {"y", "z"}, " | "), "x | y | z");
}

TEST(Captioning, ParsePolicies) {
  EXPECT_EQ(models::parse_existing_policy("append"), models::existing_policy::append);
  EXPECT_EQ(models::parse_ensemble_mode("vote"), models::ensemble_mode::vote);
  EXPECT_THROW(models::parse_existing_policy("replace"), error);
  EXPECT_THROW(models::parse_ensemble_mode("median"), error);
}

void touch(const fs::path& p) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << "x";
}

TEST(CaptionFiles, FindImages) {
  auto d = fresh_dir("captioning", "find");
  touch(d / "a.png");
  touch(d / "b.JPG");
  touch(d / "notes.txt");
  touch(d / "sub" / "c.webp");
  touch(d / "sub" / "deeper" / "d.jpeg");
  touch(d / ".hidden" / "e.png");
  touch(d / ".f.png");
  std::vector<fs::path> flat{d / "a.png", d / "b.JPG"};
  EXPECT_EQ(models::find_images(d, false), flat);
  std::vector<fs::path> deep{d / "a.png", d / "b.JPG", d / "sub" / "c.webp", d / "sub" / "deeper" / "d.jpeg"};
  EXPECT_EQ(models::find_images(d, true), deep);
  EXPECT_THROW(models::find_images(d / "missing", true), error);
}

TEST(CaptionFiles, CaptionPathBesideOrMirrored) {
  EXPECT_EQ(models::caption_path("/data/set/sub/img.v2.png", "/data/set", "", ".txt"), fs::path("/data/set/sub/img.v2.txt"));
  EXPECT_EQ(models::caption_path("/data/set/sub/img.png", "/data/set", "/out", ".caption"), fs::path("/out/sub/img.caption"));
  EXPECT_EQ(models::caption_path("/data/set/img.png", "/data/set", "/out", ".txt"), fs::path("/out/img.txt"));
  EXPECT_EQ(models::temporary_path("/out/img.txt"), fs::path("/out/.img.txt.acg2vec-tmp"));
}

TEST(CaptionFiles, WriteAtomicReplacesWholeFile) {
  auto d = fresh_dir("captioning", "atomic");
  auto p = d / "new" / "dir" / "a.txt";
  models::write_atomic(p, "first, caption\n");
  models::write_atomic(p, "x\n");
  std::ifstream in(p);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(text, "x\n");
  EXPECT_FALSE(fs::exists(models::temporary_path(p)));
  // A leftover temporary file of a killed run is reused and disappears.
  touch(models::temporary_path(p));
  models::write_atomic(p, "y\n");
  EXPECT_FALSE(fs::exists(models::temporary_path(p)));
}

}  // namespace
}  // namespace acg2vec::models
