#include "server/routes.h"
#include "server/seed_records.h"

namespace acg2vec::server {

using json = nlohmann::json;

void register_core_routes(http_server& server, core_route_context context) {
  server.add("GET", "/health", "health", [context](const http_request&, http_response& res) {
    json state = context.health ? context.health() : json{{"ready", true}, {"models", json::object()}};
    bool ready = state.value("ready", false);
    state["status"] = ready ? "ready" : "loading";
    reply_json(res, state, ready ? 200 : 503);
  }, route_access::open);
  // Spring Boot Actuator's paths, which deployments of the seed probe: health as
  // {"status": "UP"|"DOWN", "components": {...}} (503 when DOWN) and the metrics for Prometheus.
  server.add("GET", "/actuator/health", "actuator.health", [context](const http_request&, http_response& res) {
    json state = context.health ? context.health() : json{{"ready", true}, {"models", json::object()}};
    bool ready = state.value("ready", false);
    json models = json::object();
    bool models_up = true;
    const json packs = state.value("models", json::object());
    for (const auto& [name, m] : packs.items()) {
      std::string s = m.value("state", "");
      bool up = s == "ready";
      models_up = models_up && up;
      models[name] = {{"status", up ? "UP" : "DOWN"}, {"details", m}};
    }
    json components{{"ping", {{"status", "UP"}}},
                    {"models", {{"status", models_up ? "UP" : "DOWN"}, {"components", models}}},
                    {"vectorIndex", {{"status", state.contains("index_error") ? "DOWN" : (ready ? "UP" : "DOWN")}}}};
    if (state.contains("index_error")) components["vectorIndex"]["details"] = {{"error", state["index_error"]}};
    // As Spring aggregates: any component DOWN makes the whole DOWN (a pack that failed to load
    // included, while /health, which asks "can it answer at all", stays 200).
    bool up = ready && models_up && !state.contains("index_error");
    reply_json(res, json{{"status", up ? "UP" : "DOWN"}, {"components", components}}, up ? 200 : 503);
  }, route_access::open);
  server.add("GET", "/actuator/health/liveness", "actuator.liveness", [](const http_request&, http_response& res) {
    reply_json(res, json{{"status", "UP"}});
  }, route_access::open);
  server.add("GET", "/actuator/prometheus", "actuator.prometheus", [&server](const http_request&, http_response& res) {
    res.set_content(server.stats().render(), "text/plain; version=0.0.4; charset=utf-8");
  }, route_access::read);
  server.add("GET", "/actuator", "actuator", [](const http_request& req, http_response& res) {
    std::string base = public_base_url(req) + "/actuator";
    auto link = [&](const std::string& path) { return json{{"href", base + path}, {"templated", false}}; };
    reply_json(res, json{{"_links", {{"self", link("")}, {"health", link("/health")},
                                     {"prometheus", link("/prometheus")}}}});
  }, route_access::open);
  server.add("GET", "/v1/version", "version", [](const http_request&, http_response& res) {
    reply(res, json{{"name", "acg2vec"}, {"version", ACG2VEC_VERSION}});
  }, route_access::read);
}

}  // namespace acg2vec::server