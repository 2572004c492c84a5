#pragma once
// Unicode helpers shared by the tokenizers. Character classes follow the Unicode data that
// utf8proc ships, so the tokenizers never fall back to ASCII-only shortcuts.

#include <cstdint>
#include <string>
#include <string_view>

namespace acg2vec::text {

/// @brief Decodes UTF-8 into code points; throws bad_parameter on malformed input.
std::u32string utf8_decode(std::string_view text);
/// @brief Encodes code points as UTF-8.
std::string utf8_encode(std::u32string_view text);
/// @brief Appends one code point as UTF-8.
void utf8_append(std::string& out, char32_t cp);

/// @brief Canonical composition (NFC).
std::u32string nfc(std::u32string_view text);
/// @brief Canonical decomposition (NFD).
std::u32string nfd(std::u32string_view text);
/// @brief Full lowercase mapping (İ becomes two code points; final sigma is context-sensitive).
std::u32string to_lower(std::u32string_view text);

/// @brief General category L* (letter).
bool is_letter(char32_t cp);
/// @brief General category N* (number).
bool is_number(char32_t cp);
/// @brief General category P* (punctuation).
bool is_punctuation(char32_t cp);
/// @brief General category Mn (non-spacing mark).
bool is_nonspacing_mark(char32_t cp);
/// @brief Unicode White_Space property (what regex `\s` means for Unicode text).
bool is_white_space(char32_t cp);
/// @brief Control or format character as BERT's text cleaning defines it (Cc, Cf, Co, minus tab/newline/return).
bool is_bert_control(char32_t cp);
/// @brief The CJK ideograph blocks BERT pads with spaces.
bool is_cjk_ideograph(char32_t cp);

}  // namespace acg2vec::text
