#pragma once
// The one way JSON from outside (request bodies, multipart fields, manifests, label files) is
// parsed: nesting depth and size are checked while parsing, before anything walks the value.
// nlohmann's parser and its dump() recurse once per nesting level, so an unchecked document
// 65,000 levels deep (150 KB) overflows the stack of whoever touches it.

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string_view>

namespace acg2vec {

struct json_limits {
  int max_depth = 64;                      ///< arrays and objects nested deeper are refused
  std::size_t max_bytes = 100u << 20;      ///< longer texts are refused (errc::too_large)
};

/// @brief Parses text as JSON within limits. what names the source in the one-line message
/// ("'metadata'", "manifest.json"). Malformed or too deep → errc::bad_parameter; too long →
/// errc::too_large.
nlohmann::json parse_json_guarded(std::string_view text, std::string_view what, const json_limits& limits = {});

}  // namespace acg2vec
