#pragma once
// Dataset captioning: one caption line per image for LoRA / fine-tune trainers, built from one or
// more taggers' scores with the options the common captioning tools offer. Option names and
// meanings follow kohya-ss sd-scripts' tag_images_by_wd14_tagger.py (see docs/captioning.md for
// each rule and where ours differs); MCut and the kaomoji list follow SmilingWolf's reference app.
//
// Everything here is a pure function over scores and text, except the small file helpers at the
// end (listing images, caption paths, atomic writes), so every option can be unit-tested.

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "models/manifest.h"
#include "models/postprocess.h"

namespace acg2vec::models {

enum class existing_policy { skip, overwrite, append };
enum class ensemble_mode { mean, max, vote };

existing_policy parse_existing_policy(std::string_view text);
ensemble_mode parse_ensemble_mode(std::string_view text);

/// Threshold options as given (unset = fall back: category option → --thresh → manifest).
struct threshold_options {
  std::optional<float> thresh;
  std::optional<float> general;
  std::optional<float> character;
};

struct caption_options {
  threshold_options thresholds;
  bool mcut = false;                    ///< per-category MCut thresholds (character never below 0.15)
  std::vector<std::string> undesired;   ///< dropped (matched on the raw or the output name)
  bool remove_underscore = false;       ///< '_' → ' ' except in kaomoji
  bool character_tags_first = false;
  bool rating_first = false;            ///< --use-rating-tags
  bool rating_last = false;             ///< --use-rating-tags-as-last-tag (wins over rating_first)
  std::vector<std::string> always_first;  ///< moved to the front, in this order, when present
  std::vector<std::pair<std::string, std::string>> replacements;  ///< exact tag → tag
  std::string separator = ", ";
  bool escape_parentheses = false;      ///< '(' → '\(' and ')' → '\)'
  int max_tags = 0;                     ///< 0 = unlimited; counts every tag but the rating
  bool with_scores = false;             ///< "(tag:0.85)"
  ensemble_mode ensemble = ensemble_mode::mean;
};

/// Thresholds of one model (or of the combined scores), per category.
struct category_thresholds {
  float general = 0.35f;
  float character = 0.85f;
  std::map<tag_category, float> other;  ///< artist, copyright, meta
  [[nodiscard]] float of(tag_category c) const;
};

/// @brief The thresholds options + manifest give: a category option, else --thresh, else the
/// manifest's threshold for that category, else the manifest's default.
category_thresholds resolve_thresholds(const threshold_options& options, const model_manifest& manifest);

/// @brief MCut (maximum cut thresholding): the midpoint of the largest gap between consecutive
/// scores sorted descending. nullopt for fewer than two scores.
std::optional<float> mcut_threshold(std::vector<float> scores);

/// @brief The thresholds actually applied to one image's scores: with mcut, general and character
/// come from MCut over that category's scores (character at least 0.15); others stay as given.
category_thresholds effective_thresholds(const std::vector<scored_tag>& tags, const category_thresholds& base,
                                         bool mcut);

/// One model's scores for one image, with that model's thresholds (used by the vote ensemble).
struct model_scores {
  std::vector<scored_tag> tags;
  category_thresholds thresholds;
};

/// A tag after combining models.
struct combined_tag {
  std::string name;
  tag_category category = tag_category::general;
  float score = 0;   ///< mean (mean, vote) or max (max) over the models that know the tag
  float votes = -1;  ///< vote: the fraction of the models knowing the tag that keep it; else -1
};

/// @brief Merges models by tag name. A tag a model lacks does not count against it: mean and max
/// are taken over the models that know it. Order: first model's labels, then new names in order.
std::vector<combined_tag> combine(const std::vector<model_scores>& models, ensemble_mode mode, bool mcut);

/// One tag of a finished caption.
struct caption_tag {
  std::string raw;   ///< label name
  std::string text;  ///< as written (underscores, replacements, escaping, score applied)
  tag_category category = tag_category::general;
  float score = 0;
};

struct caption {
  std::vector<caption_tag> tags;
  std::string text;  ///< tags joined by the separator (no newline)
  category_thresholds thresholds;  ///< as applied (after MCut)
};

/// @brief Chooses, orders and formats the tags of one image (see docs/captioning.md for the order
/// of the steps). thresholds are the combined scores' thresholds before MCut.
caption build_caption(const std::vector<combined_tag>& tags, const category_thresholds& thresholds,
                      const caption_options& options);

/// @brief Convenience for one model: combine() + build_caption() with the manifest's thresholds.
caption caption_for(const model_manifest& manifest, const std::vector<scored_tag>& tags,
                    const caption_options& options);

// ---- text helpers ----------------------------------------------------------------------------

/// @brief SmilingWolf's kaomoji list: tags whose underscore is part of the face.
bool is_kaomoji(std::string_view tag);
/// @brief '_' → ' ' unless the tag is a kaomoji.
std::string remove_underscore(std::string_view tag);
/// @brief '(' → '\(' and ')' → '\)' (A1111 prompt syntax).
std::string escape_parentheses(std::string_view tag);
/// @brief "a,b;c,d" → {(a,b),(c,d)}; "\," and "\;" stand for literal ',' and ';'. Anything but
/// pairs → bad_parameter.
std::vector<std::pair<std::string, std::string>> parse_tag_replacement(std::string_view text);
/// @brief Splits a tag list on the separator with its spaces stripped (", " → ','), trims every
/// tag and drops empty ones (sd-scripts' rule for --undesired-tags and --always-first-tags).
std::vector<std::string> split_tags(std::string_view text, std::string_view separator);
/// @brief --on-existing append: existing tags first (in their order), then the new ones that are
/// not already there.
std::string merge_caption(std::string_view existing, const std::vector<std::string>& new_tags,
                          std::string_view separator);

// ---- files -----------------------------------------------------------------------------------

/// @brief Whether a file name has an image extension (png, jpg, jpeg, webp, gif, bmp, tif, tiff; any case).
bool is_image_name(const std::filesystem::path& path);
/// @brief Image files under root (recursive or not), sorted; hidden directories are not entered.
std::vector<std::filesystem::path> find_images(const std::filesystem::path& root, bool recursive);
/// @brief <stem><extension> beside the image, or under output_dir at the image's path relative to root.
std::filesystem::path caption_path(const std::filesystem::path& image, const std::filesystem::path& root,
                                   const std::filesystem::path& output_dir, std::string_view extension);
/// @brief The temporary file a caption is written to before it is renamed into place.
std::filesystem::path temporary_path(const std::filesystem::path& target);
/// @brief Writes text to a temporary file beside path, flushes it and renames it over path, so
/// that path is either the old file or the whole new one. Creates missing parent directories.
void write_atomic(const std::filesystem::path& path, std::string_view text);

}  // namespace acg2vec::models