#include "server/routes.h"

namespace acg2vec {

void register_core_routes(http_server& server, core_route_context context) {
  server.add("GET", "/health", "health", [context](const http_request&, http_response& res) {
    json state = context.health ? context.health() : json{{"ready", true}, {"models", json::object()}};
    bool ready = state.value("ready", false);
    state["status"] = ready ? "ready" : "loading";
    reply_json(res, state, ready ? 200 : 503);
  }, route_access::open);
  server.add("GET", "/v1/version", "version", [](const http_request&, http_response& res) {
    reply(res, json{{"name", "acg2vec"}, {"version", ACG2VEC_VERSION}});
  }, route_access::read);
}

}  // namespace acg2vec
