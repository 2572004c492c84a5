#include "core/error.h"

namespace acg2vec {

namespace {
struct mapping {
  std::string_view name;
  int http;
  int exit;
};

constexpr mapping map(errc code) noexcept {
  switch (code) {
    case errc::bad_parameter: return {"bad_parameter", 400, 2};
    case errc::unsupported_media: return {"unsupported_media", 415, 3};
    case errc::too_large: return {"too_large", 413, 4};
    case errc::not_found: return {"not_found", 404, 5};
    case errc::conflict: return {"conflict", 409, 6};
    case errc::unavailable: return {"unavailable", 503, 7};
    case errc::timeout: return {"timeout", 408, 8};
    case errc::not_implemented: return {"not_implemented", 501, 9};
    case errc::unauthorized: return {"unauthorized", 401, 10};
    case errc::forbidden: return {"forbidden", 403, 11};
    case errc::rate_limited: return {"rate_limited", 429, 12};
    case errc::method_not_allowed: return {"method_not_allowed", 405, 13};
    case errc::internal: break;
  }
  return {"internal", 500, 1};
}
}  // namespace

int http_status(errc code) noexcept { return map(code).http; }
int exit_code(errc code) noexcept { return map(code).exit; }
std::string_view to_string(errc code) noexcept { return map(code).name; }

}  // namespace acg2vec
