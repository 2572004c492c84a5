#pragma once
// What a search asks for, apart from the service that answers it, so that request parsing
// (server/request_parsing.h) needs neither models nor indexes.

#include <cstddef>
#include <optional>
#include <string>

#include "image/decode.h"
#include "store/item_store.h"

namespace acg2vec::search {

struct search_request {
  std::optional<image::image_rgb8> image;       ///< query by upload
  std::optional<std::string> item_id;    ///< "more like this"
  std::optional<std::string> text;       ///< text → image through a CLIP pack
  std::string space;                     ///< vector space; empty = the default for the query kind
  store::tag_query filter;               ///< tag/rating/score filters (also a query on its own)
  std::size_t k = 10;
  std::size_t offset = 0;
  float cutoff = -1.0f;                  ///< drop hits with a lower similarity (-1: keep all)
};

}  // namespace acg2vec::search