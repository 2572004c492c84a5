#pragma once
// Route registration, one function per area. The serve command (cli/serve.cpp) is the only
// place that knows every area; each area only knows the services it needs.

#include <nlohmann/json.hpp>
#include <functional>
#include <optional>

#include "image/decode.h"
#include "runtime/graph.h"
#include "server/http_server.h"

namespace acg2vec::models {
class model_registry;
}  // namespace acg2vec::models
namespace acg2vec::search {
class search_service;
struct browse_request;
}  // namespace acg2vec::search

namespace acg2vec::server {

/// What the core routes need to know about the rest of the service.
struct core_route_context {
  /// Returns {"ready": bool, "models": {name: {"state": ...}}, ...}; /health answers 503 until ready.
  std::function<nlohmann::json()> health;
};

/// @brief /health, /v1/version (and /metrics, which http_server always has).
void register_core_routes(http_server& server, core_route_context context);




struct model_route_context {
  models::model_registry* registry = nullptr;
  std::size_t max_upload_bytes = 20u << 20;
  std::uint64_t max_pixels = 100'000'000;
  std::size_t max_instances = 64;  ///< instances per predict request, rows per infer request (else 413)
};

/// @brief 400 unless t (batch dimension first) has the rank and fixed dimensions of a model input.
void check_input_shape(const runtime::value_info& info, const at::Tensor& t, std::size_t instance);

/// @brief Image model routes: the seed's paths (labelsByDeepDanbooru, illust2vec feature,
/// socresByPix2Score, pix2score) and /v1 (tag, classify, embed/image, models, infer).
void register_model_routes(http_server& server, model_route_context context);



/// @brief TensorFlow Serving's REST API (predict in row and columnar form, model status and
/// metadata) over the installed packs, so ACG2vec's own clients work unchanged.
void register_tfserving_routes(http_server& server, model_route_context context);




struct search_route_context {
  search::search_service* service = nullptr;
  std::size_t max_upload_bytes = 20u << 20;
  std::uint64_t max_pixels = 100'000'000;
};

/// @brief The collection: the seed's item and similar-image routes, /v1/items, /v1/search,
/// /v1/stats and /openapi.json.
void register_search_routes(http_server& server, search_route_context context);


/// @brief The filters, order and paging of GET /v1/items (tags, any, none, rating, tagger, min_score,
/// score=SCORER:NAME with score_min/score_max, sort=date|score|similarity, order, like, space);
/// nullopt when none of them is given (the plain newest-first listing).
std::optional<search::browse_request> browse_request_from_http(const http_request& req);
/// @brief GET /v1/tags: the collection's tags by prefix with their item counts (autocomplete).
void register_browse_routes(http_server& server, search_route_context context);

/// @brief GET /openapi.json describing every route.
void register_openapi_route(http_server& server);

/// Background work of the text routes, run by the serve command.
struct text_route_tasks {
  std::function<void()> warm_up;  ///< waits for the models, then builds GET /acgvoc2vec's tag index
  std::function<void()> cancel;   ///< makes a warm_up in progress return soon (shutdown)
};

/// @brief Text routes: the seed's acgvoc2vec/dclip feature routes (and 1.0.0's /texts/features),
/// /v1/embed/text and the demo page's similar-tag suggestions (GET /acgvoc2vec?tag=).
text_route_tasks register_text_routes(http_server& server, model_route_context context);

/// @brief The A1111 WD14 tagger extension's API: /tagger/v1/interrogate, /interrogators and
/// /unload-interrogators (docs/tagger-api.md).
void register_tagger_routes(http_server& server, model_route_context context);

/// @brief POST /v1/caption: one image's training caption with the caption options of
/// `acg2vec tag --captions` as form fields (docs/captioning.md).
void register_caption_routes(http_server& server, model_route_context context);

/// @brief The decoder limits a route context carries (upload size and pixel count).
template <class Context>
image::decode_limits decode_limits_of(const Context& context) {
  return {context.max_upload_bytes, context.max_pixels};
}

/// @brief POST /v1/upscale (multipart `image`, optional `model`, `format` png|webp|jpg,
/// `quality`): the upscaled image bytes with their content type.
void register_upscale_routes(http_server& server, model_route_context context);

/// @brief GET /v1/duplicates and POST /v1/duplicates/{group}/resolve (search/dedup.h).
void register_duplicate_routes(http_server& server, search::search_service& service);
}  // namespace acg2vec::server