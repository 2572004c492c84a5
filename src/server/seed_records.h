#pragma once
// What the seed's clients read back from the search routes: the pixiv-style `Illust` record its demo
// page renders (seed-spec §1.3) for every stored item, whether or not the caller stored an `extend`
// record with it, and the seed's response conventions (integer ids, empty `data` dropped).
//
// An item's Illust record is built from what acg2vec knows about it (id, file name, size, tags,
// rating, creation time, its own thumbnail route); the caller's stored `extend` fields are laid
// over it, so a stored field always wins and a missing one never breaks the page.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "server/http_server.h"
#include "store/item_store.h"

namespace acg2vec::server {

/// @brief An item id percent-encoded as one URL path segment (ids may hold any UTF-8, '/' included).
std::string path_segment(std::string_view id);

/// Tags at or above this score appear in an Illust record's `tags` (the seed's tagging threshold).
inline constexpr float seed_tag_threshold = 0.5f;
/// At most this many tags in an Illust record, best first.
inline constexpr std::size_t seed_max_tags = 30;

/// @brief The id as the seed's clients expect it: a JSON integer when the text is a canonical
/// decimal (no sign, no leading zero) below 2^53, which JavaScript reads exactly; else the string.
nlohmann::json seed_id_json(std::string_view id);

/// @brief "scheme://host[:port]" of the server as the client reached it: X-Forwarded-Proto /
/// X-Forwarded-Host when a proxy set them, else http and the Host header; empty when neither says.
/// Image URLs in Illust records are absolute so that a page served from another origin can load them.
std::string public_base_url(const http_request& req);

/// @brief pixiv's sanity level for a rating name ("rating:safe", "general", "sensitive",
/// "questionable", "explicit", ...): 2, 4 or 6; nullopt for a name that is not a rating.
std::optional<int> sanity_level_of_rating(std::string_view rating);

/// @brief The Illust record of a stored item: defaults derived from the item, with the stored
/// metadata (`extend`) laid over them key by key. base_url prefixes the image URLs.
nlohmann::json seed_illust(const store::item& it, std::string_view base_url);

/// @brief The seed's envelope {message, data} with Jackson NON_EMPTY: data that is null, an empty
/// array, an empty object or an empty string is left out.
void reply_seed(http_response& res, const nlohmann::json& data, std::string_view message);

}  // namespace acg2vec::server