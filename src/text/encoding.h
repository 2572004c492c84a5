#pragma once
// What both tokenizers share: the fixed-length model input and the seed's padding rule, the
// splitting of literal special tokens ("added tokens") out of the input text, the driver loop
// around each tokenizer's own word model, and reading tokenizer.json.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <span>
#include <string_view>
#include <string>
#include <vector>

namespace acg2vec::text {

/// Fixed-length ids plus mask, ready for a model.
struct encoding {
  std::vector<std::int64_t> input_ids;
  std::vector<std::int64_t> attention_mask;
};

/// @brief Pads with 0 (mask 0) to `length`; longer input keeps the first length-1 ids and puts the last id
/// (SEP/EOT) in the final slot, the rule the seed webapp applies (seed-spec Appendix A).
encoding fit_to_length(std::span<const std::int64_t> ids, std::size_t length);

/// A vocabulary entry matched literally in the input text before the model runs.
struct added_token {
  std::u32string content;
  std::int64_t id = 0;
  bool normalized = false;  ///< matched after normalisation (true) or on the raw text (false)
};

/// A run of text, or one matched added token (id >= 0).
struct text_piece {
  std::u32string text;
  std::int64_t id = -1;
};

/// @brief Splits `text` on leftmost-longest occurrences of the added tokens whose `normalized` flag equals
/// `normalized`; matched tokens become pieces carrying their id.
std::vector<text_piece> split_added_tokens(const std::u32string& text, const std::vector<added_token>& tokens,
                                           bool normalized);

/// The parts of a tokenizer that differ between WordPiece and byte-level BPE.
struct tokenizer_steps {
  std::int64_t first_id = 0;  ///< CLS / start-of-text
  std::int64_t last_id = 0;   ///< SEP / end-of-text
  std::function<std::u32string(std::u32string_view)> normalize;
  /// Appends the ids of one run of plain (normalised, added-token-free) text.
  std::function<void(const std::u32string&, std::vector<std::int64_t>&)> encode_run;
};

/// @brief The Hugging Face tokenizers pipeline both models share: added tokens matched on the raw text,
/// the rest normalised, added tokens matched again on the normalised text, every remaining run given to
/// the model; framed by the first and last ids.
std::vector<std::int64_t> run_tokenizer(std::string_view utf8, const std::vector<added_token>& added,
                                        const tokenizer_steps& steps);

/// @brief Parses a tokenizer.json file; not_found / bad_parameter errors name the file.
nlohmann::json read_tokenizer_json(const std::filesystem::path& path);

/// @brief tokenizer.json's "added_tokens" (empty when absent).
std::vector<added_token> read_added_tokens(const nlohmann::json& json);

}  // namespace acg2vec::text
