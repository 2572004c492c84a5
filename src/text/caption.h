#pragma once
// DCLIP caption builder (seed-spec §6.3): turns one image's Danbooru tags into the one or two training
// captions ACG2vec's fine-tuning used, quirks included, so users can build their own dclip data.

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace acg2vec::text {

/// One Danbooru tag: raw underscore name and category (0 general, 1 artist, 3 copyright, 4 character, 5 meta).
struct tagged_name {
  std::string name;
  int category = 0;
};

/// Variant B is the code at HEAD (pixiv-era checkpoints, the HF release); A is the early Danbooru-only one.
enum class caption_variant { a, b };

/// @brief Builds the caption(s) for one image: one string, or two when there are more than 20 general tags
/// (second half first, then the first half).
std::vector<std::string> build_captions(const std::vector<tagged_name>& tags, caption_variant variant);

/// @brief "a"/"b" (case-insensitive) to a variant; bad_parameter otherwise.
caption_variant parse_caption_variant(std::string_view text);

/// @brief Parses `[{"name": "...", "category": 0}, ...]` (category may be a number or a numeric string).
std::vector<tagged_name> parse_tags_json(std::string_view json);
/// @brief Parses CSV lines `name,category[,...]` (RFC 4180 quoting; a non-numeric first row is a header).
std::vector<tagged_name> parse_tags_csv(std::string_view csv);
/// @brief Reads a tag file, JSON when its first non-blank character is '[' and CSV otherwise.
std::vector<tagged_name> read_tags_file(const std::filesystem::path& path);

}  // namespace acg2vec::text
