#pragma once
// What both tokenizers share: the fixed-length model input and the seed's padding rule, and
// the splitting of literal special tokens ("added tokens") out of the input text.

#include <cstdint>
#include <span>
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

}  // namespace acg2vec::text
