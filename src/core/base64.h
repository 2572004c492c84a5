#pragma once
// Base64 as TF-Serving clients send it: the standard alphabet ('+/') and the URL-safe one ('-_'),
// with or without '=' padding. Whitespace is not allowed.

#include <optional>
#include <string>
#include <string_view>

namespace acg2vec {

/// @brief Decodes either alphabet, padding optional; nullopt on any invalid character or length.
std::optional<std::string> base64_decode(std::string_view text);
/// @brief Standard alphabet with padding.
std::string base64_encode(std::string_view bytes);

}  // namespace acg2vec
