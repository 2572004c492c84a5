#pragma once
// The request-reading steps of the routes, kept apart from the handlers so that they can be
// exercised without models, a store or a socket (the fuzz targets in fuzz/ drive them directly).
// Every function throws acg2vec::error (bad_parameter, too_large) on input it refuses.

#include <nlohmann/json.hpp>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "image/decode.h"
#include "search/request.h"
#include "server/http_server.h"

namespace acg2vec::server {

/// The instances of a TF-Serving predict body.
struct tf_predict_body {
  bool row = true;  ///< "instances" (row form) rather than "inputs" (columnar form)
  nlohmann::json items;       ///< always a non-empty array of at most 1024 instances
};

/// @brief Reads {"instances": ...} or {"inputs": ...} (a single instance or a named columnar input
/// is wrapped into a list); not an object, no key, no instance → bad_parameter, > 1024 → too_large.
tf_predict_body parse_tf_predict_body(const nlohmann::json& body);

/// @brief The image bytes of one TF-Serving instance: {"b64_input_bytes": "..."}, {"<input>": {"b64": ...}},
/// {"b64": ...} or a bare base64 string (standard or URL-safe alphabet).
std::string tf_instance_image_bytes(const nlohmann::json& instance);

/// @brief The JSON object of a metadata form field ("extend", "metadata"); absent or empty → {}.
nlohmann::json parse_metadata_param(const std::optional<std::string>& text, const char* field);

/// @brief The seed's numeric item id from a path segment, normalised ("007" → "7"); else bad_parameter.
std::string parse_seed_item_id(const std::string& text);

/// @brief A parameter that must be a number in [0, 1] (tag thresholds); absent → nullopt.
std::optional<float> unit_float_param(const http_request& req, const std::string& name);

/// @brief A yes/no parameter: "1", "true" or "yes" is true, anything else (or absent) false.
bool bool_param(const http_request& req, const std::string& name);

/// @brief The search options of a /v1/search JSON body.
search::search_request search_request_from_json(const nlohmann::json& body);

/// @brief The search options of a /v1/search query string or multipart form.
search::search_request search_request_from_params(const http_request& req);

/// @brief The search options of any /v1/search request: multipart (with an optional image part,
/// handed to `decode`), a JSON POST body, or query parameters.
search::search_request search_request_from_http(const http_request& req,
                                        const std::function<image::image_rgb8(std::string_view)>& decode);

}  // namespace acg2vec::server