#pragma once
// Route registration, one function per area. The serve command (cli/serve.cpp) is the only
// place that knows every area; each area only knows the services it needs.

#include <functional>

#include "server/http_server.h"

namespace acg2vec {

/// What the core routes need to know about the rest of the service.
struct core_route_context {
  /// Returns {"ready": bool, "models": {name: {"state": ...}}, ...}; /health answers 503 until ready.
  std::function<json()> health;
};

/// @brief /health, /v1/version (and /metrics, which http_server always has).
void register_core_routes(http_server& server, core_route_context context);

}  // namespace acg2vec
