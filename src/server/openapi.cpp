// GET /openapi.json: an OpenAPI 3.0 description of every route, kept beside the route table.
#include "server/routes.h"

namespace acg2vec {

namespace {

struct route_doc {
  const char* method;
  const char* path;
  const char* summary;
  const char* body;  // "multipart", "json", "form" or ""
  std::vector<const char*> params;  // query/form/multipart field names
  route_access access = route_access::read;  // as registered: decides security and 401/429
};

const std::vector<route_doc>& route_docs() {
  static const std::vector<route_doc> docs = {
      {"get", "/health", "Readiness and per-model state (503 while loading)", "", {}, route_access::open},
      {"get", "/metrics", "Prometheus metrics", "", {}},
      {"get", "/v1/version", "Name and version", "", {}},
      {"get", "/openapi.json", "This document", "", {}, route_access::open},
      {"post", "/images/labelsByDeepDanbooru", "Seed: tags with score >= 0.5 in label order", "multipart", {"image", "model"}},
      {"post", "/models/illust2vec/feature", "Seed: illust2vec float[1024]", "multipart", {"image"}},
      {"post", "/images/socresByPix2Score", "Seed: pix2score bucket probabilities", "multipart", {"image", "model"}},
      {"post", "/pix2score", "Demo page: pix2score bucket probabilities", "multipart", {"image", "model"}},
      {"post", "/v1/tag", "Every tag with its score, grouped by category, thresholds per category", "multipart",
       {"image", "model", "threshold", "threshold_general", "threshold_character", "all"}},
      {"post", "/v1/classify", "Class probabilities of a classifier pack (e.g. NSFW)", "multipart", {"image", "model"}},
      {"post", "/v1/embed/image", "Image embedding", "multipart", {"image", "model"}},
      {"post", "/v1/upscale", "Upscaled image bytes (Real-CUGAN 2x by default); 413 over the pixel limits", "multipart",
       {"image", "model", "format", "quality"}},
      {"get", "/v1/models", "Installed packs with inputs, outputs and state", "", {}},
      {"post", "/v1/models/{name}/infer", "Raw inference: an image or {\"inputs\": nested array}", "multipart", {"image"}},
      {"post", "/v1/models/{name}:predict", "TF-Serving predict (instances or inputs)", "json", {}},
      {"post", "/v1/models/{name}/versions/{version}:predict", "TF-Serving predict, versioned path", "json", {}},
      {"get", "/v1/models/{name}", "TF-Serving model status", "", {}},
      {"get", "/v1/models/{name}/metadata", "TF-Serving signature metadata", "", {}},
      {"post", "/images/{imageId}", "Seed: insert an item (409 if it exists)", "multipart", {"file", "extend"}, route_access::write},
      {"put", "/images/{imageId}", "Seed: replace an item", "multipart", {"file", "extend"}, route_access::write},
      {"delete", "/images/{imageId}", "Seed: delete an item", "", {}, route_access::write},
      {"post", "/images/similarImages", "Seed: reverse image search, [{itemId, feature, extendInfo}]", "multipart",
       {"file", "k", "space"}},
      {"post", "/similarityImages", "Demo page: reverse image search", "multipart", {"image", "k", "space"}},
      {"get", "/searchIllustByDCLIP", "Demo page: text to image search (CLIP)", "", {"text", "k"}},
      {"post", "/v1/items", "Add an item", "multipart", {"file", "id", "metadata", "source"}, route_access::write},
      {"post", "/v1/items/batch", "Add many files; identical content and existing ids are skipped", "multipart", {"file"}, route_access::write},
      {"get", "/v1/items", "List items, newest first", "", {"offset", "limit"}},
      {"get", "/v1/items/{id}", "One item with tags, scores and vector dimensions (vectors=1: their values)", "",
       {"vectors"}},
      {"put", "/v1/items/{id}", "Replace the image (multipart) or the metadata ({\"metadata\": {...}})", "multipart",
       {"file", "metadata", "source"}, route_access::write},
      {"delete", "/v1/items/{id}", "Delete an item", "", {}, route_access::write},
      {"get", "/v1/items/{id}/thumbnail", "JPEG thumbnail", "", {}},
      {"post", "/v1/search", "Search by image, id, text or tags, with filters, k, offset and cutoff", "json",
       {"image", "id", "text", "space", "tags", "any", "none", "rating", "tagger", "min_score", "k", "offset", "cutoff"}},
      {"get", "/v1/search", "Search by id, text or tags (query string)", "",
       {"id", "text", "space", "tags", "any", "none", "rating", "k", "offset", "cutoff"}},
      {"get", "/v1/stats", "Item count and vector spaces", "", {}},
  };
  return docs;
}

json build_openapi() {
  json paths = json::object();
  for (const auto& r : route_docs()) {
    json op{{"summary", r.summary},
            {"responses",
             {{"200", {{"description", "success: {message, data[, total]}"}}},
              {"4XX", {{"description", "bad request: {message, error}"}}},
              {"503", {{"description", "model or index not available: {message, error}"}}}}}};
    if (r.access != route_access::open) {
      json www_authenticate{{"schema", {{"type", "string"}}}};
      json retry_after{{"description", "seconds to wait"}, {"schema", {{"type", "integer"}}}};
      op["responses"]["401"] = {
          {"description",
           r.access == route_access::write
               ? "API key missing or not valid (when the server has --api-key-file): {message, error}"
               : "API key missing or not valid (when the server has --api-key-file and --protect-reads)"},
          {"headers", {{"WWW-Authenticate", www_authenticate}}}};
      op["responses"]["429"] = {
          {"description", "rate limit exceeded (when the server has --rate-limit): {message, error}"},
          {"headers", {{"Retry-After", retry_after}}}};
      // An empty requirement makes the key optional: reads are open unless --protect-reads.
      json security = json::array();
      security.push_back({{"bearer", json::array()}});
      security.push_back({{"apiKey", json::array()}});
      if (r.access == route_access::read) security.push_back(json::object());
      op["security"] = security;
    } else {
      op["security"] = json::array();
    }
    std::string path = r.path;
    json params = json::array();
    for (std::size_t pos = 0; (pos = path.find('{', pos)) != std::string::npos; ++pos) {
      auto end = path.find('}', pos);
      params.push_back({{"name", path.substr(pos + 1, end - pos - 1)}, {"in", "path"}, {"required", true},
                        {"schema", {{"type", "string"}}}});
    }
    std::string body = r.body;
    if (body == "multipart") {
      json props = json::object();
      for (const char* p : r.params) {
        std::string name = p;
        bool file = name == "image" || name == "file";
        props[name] = file ? json{{"type", "string"}, {"format", "binary"}} : json{{"type", "string"}};
      }
      op["requestBody"] = {{"content", {{"multipart/form-data", {{"schema", {{"type", "object"}, {"properties", props}}}}}}}};
    } else {
      for (const char* p : r.params) {
        params.push_back({{"name", p}, {"in", "query"}, {"required", false}, {"schema", {{"type", "string"}}}});
      }
      if (body == "json") op["requestBody"] = {{"content", {{"application/json", {{"schema", {{"type", "object"}}}}}}}};
    }
    if (!params.empty()) op["parameters"] = params;
    paths[path][r.method] = op;
  }
  return {{"openapi", "3.0.3"},
          {"info",
           {{"title", "acg2vec"},
            {"version", ACG2VEC_VERSION},
            {"description",
             "With --api-key-file, write routes need a key (Authorization: Bearer <key> or X-API-Key: <key>); "
             "with --protect-reads every route but /health, /openapi.json and the static page does. "
             "A missing or invalid key is 401. With --rate-limit, a client over its limit gets 429 and Retry-After."}}},
          {"components",
           {{"securitySchemes",
             {{"bearer", {{"type", "http"}, {"scheme", "bearer"}}},
              {"apiKey", {{"type", "apiKey"}, {"in", "header"}, {"name", "X-API-Key"}}}}}}},
          {"paths", paths}};
}

}  // namespace

void register_openapi_route(http_server& server) {
  auto doc = std::make_shared<std::string>(build_openapi().dump(2));
  server.add("GET", "/openapi.json", "openapi", [doc](const http_request&, http_response& res) {
    res.set_content(*doc, "application/json");
  }, route_access::open);
}

}  // namespace acg2vec
