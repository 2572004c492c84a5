#include "store/item_store.h"

#include "core/error.h"

#include <cmath>
#include <set>

namespace acg2vec::store {
namespace {

// Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t extra = 0;
    std::uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      extra = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + extra >= s.size()) return false;
    for (std::size_t k = 1; k <= extra; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr std::uint32_t min_for_length[] = {0, 0x80, 0x800, 0x10000};
    if (cp < min_for_length[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += extra + 1;
  }
  return true;
}

void validate_label(std::string_view what, std::string_view value) {
  if (value.empty()) fail(errc::bad_parameter, "{} must not be empty", what);
  if (value.size() > 1024) fail(errc::bad_parameter, "{} is longer than 1024 bytes", what);
  if (!valid_utf8(value)) fail(errc::bad_parameter, "{} is not valid UTF-8", what);
}

}  // namespace

void validate_item_id(std::string_view id) {
  if (id.empty()) fail(errc::bad_parameter, "item id must not be empty");
  if (id.size() > max_id_bytes)
    fail(errc::bad_parameter, "item id is {} bytes long; the limit is {}", id.size(), max_id_bytes);
  if (!valid_utf8(id)) fail(errc::bad_parameter, "item id is not valid UTF-8");
  for (char c : id) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F)
      fail(errc::bad_parameter, "item id contains a control character");
  }
}

void validate_new_item_id(std::string_view id) {
  validate_item_id(id);
  // Every id that can be stored must be reachable as /v1/items/{percent-encoded id}. Ids may hold
  // '/' (ingest names items by their path under the folder), but clients collapse "." and ".."
  // segments and empty ones, and ".../thumbnail" would name the thumbnail route.
  std::string_view rest = id;
  while (true) {
    auto slash = rest.find('/');
    auto segment = rest.substr(0, slash);
    if (segment.empty() || segment == "." || segment == "..") {
      fail(errc::bad_parameter, "item id '{}' has an empty, '.' or '..' path segment", id);
    }
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  if (id.size() >= 10 && id.substr(id.size() - 10) == "/thumbnail") {
    fail(errc::bad_parameter, "item id must not end with '/thumbnail'");
  }
}

void validate_space_name(std::string_view name) {
  const bool ok_length = !name.empty() && name.size() <= 64 && name != "." && name != "..";
  bool ok_chars = true;
  for (char c : name) {
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && c != '_' && c != '-' && c != '.') ok_chars = false;
  }
  if (!ok_length || !ok_chars)
    fail(errc::bad_parameter, "vector space name '{}' must be 1-64 characters of [A-Za-z0-9_.-]",
         name.substr(0, 80));
}

std::vector<std::string> prepare_write_batch(std::span<const item> items, bool insert) {
  std::vector<std::string> metadata_text;
  metadata_text.reserve(items.size());
  std::set<std::string_view> seen;
  for (const auto& it : items) {
    validate_item(it);
    if (insert && !seen.insert(it.id).second) fail(errc::conflict, "item '{}' appears twice in the batch", it.id);
    try {
      metadata_text.push_back(it.metadata.dump());
    } catch (const nlohmann::json::exception& e) {
      fail(errc::bad_parameter, "item '{}': metadata cannot be stored: {}", it.id, e.what());
    }
  }
  return metadata_text;
}

void validate_item(const item& it) {
  validate_item_id(it.id);
  if (it.width < 0 || it.height < 0)
    fail(errc::bad_parameter, "item '{}': width and height must not be negative", it.id);
  if (!it.metadata.is_null() && !it.metadata.is_object())
    fail(errc::bad_parameter, "item '{}': metadata (extendInfo) must be a JSON object", it.id);
  if (!valid_utf8(it.source)) fail(errc::bad_parameter, "item '{}': source is not valid UTF-8", it.id);
  if (!valid_utf8(it.content_hash))
    fail(errc::bad_parameter, "item '{}': content hash is not valid UTF-8", it.id);
  for (const auto& [tagger, tags] : it.tags) {
    validate_label("tagger name", tagger);
    for (const auto& [tag, score] : tags) {
      validate_label("tag", tag);
      if (!std::isfinite(score))
        fail(errc::bad_parameter, "item '{}': score of tag '{}' is not finite", it.id, tag);
    }
  }
  for (const auto& [scorer, values] : it.scores) {
    validate_label("scorer name", scorer);
    for (const auto& [name, value] : values) {
      validate_label("score name", name);
      if (!std::isfinite(value))
        fail(errc::bad_parameter, "item '{}': score '{}/{}' is not finite", it.id, scorer, name);
    }
  }
  for (const auto& [space, v] : it.vectors) {
    validate_space_name(space);
    if (v.empty()) fail(errc::bad_parameter, "item '{}': vector '{}' is empty", it.id, space);
    for (float x : v) {
      if (!std::isfinite(x))
        fail(errc::bad_parameter, "item '{}': vector '{}' has a non-finite value", it.id, space);
    }
  }
}

std::pair<std::string, bool> item_id_from_json(const nlohmann::json& value) {
  if (value.is_number_integer()) {
    const std::string text = value.is_number_unsigned()
                                 ? std::to_string(value.get<std::uint64_t>())
                                 : std::to_string(value.get<std::int64_t>());
    return {text, true};
  }
  if (value.is_string()) {
    auto text = value.get<std::string>();
    validate_item_id(text);
    return {std::move(text), false};
  }
  fail(errc::bad_parameter, "item id must be an integer or a string, not {}", value.type_name());
}

nlohmann::json item_id_to_json(const item& it) {
  if (it.numeric_id) {
    // The flag is only set for ids that came in as integers, but a hand-built item could
    // carry anything: fall back to the string when the text is not an integer.
    try {
      std::size_t used = 0;
      if (!it.id.empty() && it.id[0] == '-') {
        const long long v = std::stoll(it.id, &used);
        if (used == it.id.size()) return v;
      } else {
        const unsigned long long v = std::stoull(it.id, &used);
        if (used == it.id.size()) return v;
      }
    } catch (const std::exception&) {
    }
  }
  return it.id;
}

std::uint64_t item_store::upsert_and_remove(std::span<const item> upserts, std::span<const std::string> removals,
                                          const std::function<void()>& before_commit) {
  std::uint64_t g = upserts.empty() ? generation() : upsert_batch(upserts);
  if (before_commit) before_commit();
  for (const auto& id : removals) {
    remove(id);
    g = generation();
  }
  return g;
}

}  // namespace acg2vec::store
