// GET /openapi.json: an OpenAPI 3.0 description of every route, kept beside the route table.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <mutex>
#include <set>

#include "server/routes.h"

namespace acg2vec::server {

using json = nlohmann::json;

namespace {

struct route_doc {
  std::string method;
  std::string name;  // the name the route is registered under (several paths may share one)
  std::string path;
  std::string summary;
  std::string body;  // "multipart", "json", "form" or ""
  std::vector<std::string> params;  // query/form/multipart field names
};

const std::vector<route_doc>& route_docs() {
  static const std::vector<route_doc> docs = {
      {"get", "health", "/health", "Readiness and per-model state (503 while loading)", "", {}},
      {"get", "metrics", "/metrics", "Prometheus metrics", "", {}},
      {"get", "version", "/v1/version", "Name and version", "", {}},
      {"get", "openapi", "/openapi.json", "This document", "", {}},
      {"post", "seed.labelsByDeepDanbooru", "/images/labelsByDeepDanbooru", "Seed: tags with score >= 0.5 in label order", "multipart", {"image", "model"}},
      {"post", "seed.illust2vec", "/models/illust2vec/feature", "Seed: illust2vec float[1024]", "multipart", {"image"}},
      {"post", "seed.socresByPix2Score", "/images/socresByPix2Score", "Seed: pix2score bucket probabilities", "multipart", {"image", "model"}},
      {"post", "seed.pix2score", "/pix2score", "Demo page: pix2score bucket probabilities", "multipart", {"image", "model"}},
      {"post", "v1.tag", "/v1/tag", "Every tag with its score, grouped by category, thresholds per category", "multipart",
       {"image", "model", "threshold", "threshold_general", "threshold_character", "all"}},
      {"post", "v1.classify", "/v1/classify", "Class probabilities of a classifier pack (e.g. NSFW)", "multipart", {"image", "model"}},
      {"post", "v1.embed.image", "/v1/embed/image", "Image embedding", "multipart", {"image", "model"}},
      {"post", "v1.upscale", "/v1/upscale", "Upscaled image bytes (Real-CUGAN 2x by default); 413 over the pixel limits", "multipart",
       {"image", "model", "format", "quality"}},
      {"get", "v1.models", "/v1/models", "Installed packs with inputs, outputs and state", "", {}},
      {"post", "v1.models.infer", "/v1/models/{name}/infer", "Raw inference: an image or {\"inputs\": nested array}", "multipart", {"image"}},
      {"post", "tfserving.predict", "/v1/models/{name}:predict", "TF-Serving predict (instances or inputs)", "json", {}},
      {"post", "tfserving.predict", "/v1/models/{name}/versions/{version}:predict", "TF-Serving predict, versioned path", "json", {}},
      {"get", "tfserving.status", "/v1/models/{name}", "TF-Serving model status", "", {}},
      {"get", "tfserving.metadata", "/v1/models/{name}/metadata", "TF-Serving signature metadata", "", {}},
      {"post", "seed.images.insert", "/images/{imageId}", "Seed: insert an item (409 if it exists)", "multipart", {"file", "extend"}},
      {"put", "seed.images.update", "/images/{imageId}", "Seed: replace an item", "multipart", {"file", "extend"}},
      {"delete", "seed.images.delete", "/images/{imageId}", "Seed: delete an item", "", {}},
      {"post", "seed.similarImages", "/images/similarImages", "Seed: reverse image search, [{itemId, feature, extendInfo}]", "multipart",
       {"file", "k", "space"}},
      {"post", "seed.similarityImages", "/similarityImages", "Demo page: reverse image search", "multipart", {"image", "k", "space"}},
      {"get", "seed.searchIllustByDCLIP", "/searchIllustByDCLIP", "Demo page: text to image search (CLIP)", "", {"text", "k"}},
      {"post", "v1.items.create", "/v1/items", "Add an item", "multipart", {"file", "id", "metadata", "source"}},
      {"post", "v1.items.batch", "/v1/items/batch", "Add many files; identical content and existing ids are skipped", "multipart", {"file"}},
      {"get", "v1.items.list", "/v1/items",
       "List items, newest first; with filters (tags all/any/none, rating, score range), sort by date, score or "
       "similarity to an item (like), total = matches", "",
       {"offset", "limit", "tags", "any", "none", "rating", "tagger", "min_score", "score", "score_min", "score_max", "sort",
        "order", "like", "space"}},
      {"get", "v1.tags", "/v1/tags", "The collection's tags by prefix with the number of items each is on (most first)", "",
       {"prefix", "limit", "min_score", "tagger"}},
      {"get", "v1.items.get", "/v1/items/{id}", "One item with tags, scores and vector dimensions (vectors=1: their values)", "",
       {"vectors"}},
      {"put", "v1.items.replace", "/v1/items/{id}", "Replace the image (multipart) or the metadata ({\"metadata\": {...}})", "multipart",
       {"file", "metadata", "source"}},
      {"delete", "v1.items.delete", "/v1/items/{id}", "Delete an item", "", {}},
      {"get", "v1.items.thumbnail", "/v1/items/{id}/thumbnail", "JPEG thumbnail", "", {}},
      {"post", "v1.search", "/v1/search", "Search by image, id, text or tags, with filters, k, offset and cutoff", "json",
       {"image", "id", "text", "space", "tags", "any", "none", "rating", "tagger", "min_score", "k", "offset", "cutoff"}},
      {"get", "v1.search", "/v1/search", "Search by id, text or tags (query string)", "",
       {"id", "text", "space", "tags", "any", "none", "rating", "k", "offset", "cutoff"}},
      {"get", "v1.stats", "/v1/stats", "Item count and vector spaces; each watched folder's state under watch (serve --watch)", "", {}},
      {"get", "v1.duplicates", "/v1/duplicates",
       "Duplicate and variant groups: members with relation (keep, exact, near_duplicate, variant), scores and the copy to keep",
       "", {"space", "threshold", "keep_rule", "neighbours"}},
      {"post", "v1.duplicates.resolve", "/v1/duplicates/{group}/resolve",
       "Keep the best copy of each anchor in a group, merge the others' tags and metadata into it, remove them", "json",
       {"keep", "dry_run", "delete_files", "space", "threshold", "keep_rule"}},
      {"post", "seed.acgvoc2vec", "/models/acgvoc2vec/feature", "Seed: acgvoc2vec text embedding", "multipart", {"text", "model"}},
      {"post", "seed.dclip_text", "/models/dclip_text/feature", "Seed: DanbooruCLIP text embedding", "multipart", {"text", "model"}},
      {"post", "seed.dclip_image", "/models/dclip_image/feature", "Seed: DanbooruCLIP image embedding", "multipart", {"image", "model"}},
      {"post", "v1.embed.text", "/v1/embed/text", "Text embeddings: {\"texts\": [...], \"model\": name}", "json", {}},
      {"get", "seed.acgvoc2vec.similar", "/acgvoc2vec", "Demo page: tags similar to a tag (acgvoc2vec)", "", {"tag", "k"}},
      {"post", "seed.images.features", "/images/features", "Seed 1.0.0: illust2vec vector", "multipart", {"file", "model"}},
      {"post", "seed.texts.features", "/texts/features", "Seed 1.0.0: acgvoc2vec text vector", "multipart", {"text", "model"}},
      {"post", "seed.images.labels", "/images/labels",
       "Seed 1.0.0: deepix heads (bookmark, view, sanity, restrict, xRestrict) as labels", "multipart", {"file", "model"}},
      {"post", "seed.images.textLabels", "/images/textLabels", "Seed 1.0.0: DeepDanbooru tags as text", "multipart",
       {"file", "model"}},
      {"get", "actuator", "/actuator", "Spring Boot Actuator index", "", {}},
      {"get", "actuator.health", "/actuator/health", "Actuator health: {status: UP|DOWN, components} (503 when DOWN)", "", {}},
      {"get", "actuator.liveness", "/actuator/health/liveness", "Actuator liveness: the process answers", "", {}},
      {"get", "actuator.prometheus", "/actuator/prometheus", "Prometheus metrics (as /metrics)", "", {}},
      {"post", "tagger.interrogate", "/tagger/v1/interrogate", "A1111 WD14 tagger: tags and ratings of a base64 image", "json",
       {"image", "model", "threshold", "queue", "name_in_queue", "caption_format", "replace_underscore", "escape_tag"}},
      {"post", "v1.caption", "/v1/caption", "One image's training caption with the options of `acg2vec tag --captions`",
       "multipart",
       {"image", "model", "ensemble", "thresh", "general-threshold", "character-threshold", "undesired-tags",
        "remove-underscore", "character-tags-first", "use-rating-tags", "use-rating-tags-as-last-tag", "always-first-tags",
        "tag-replacement", "caption-separator", "escape-parentheses", "mcut", "max-tags", "with-scores"}},
      {"get", "tagger.interrogators", "/tagger/v1/interrogators", "A1111 WD14 tagger: the tagger pack names", "", {}},
      {"post", "tagger.unload", "/tagger/v1/unload-interrogators", "A1111 WD14 tagger: packs stay loaded (answers 0)", "", {}},
  };
  return docs;
}

// The path a registered pattern serves, for a route no documentation entry names: capture
// groups become {p1}, {p2}, ... and optional groups are dropped.
std::string template_of(const std::string& pattern) {
  std::string out;
  int n = 0;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    if (pattern.compare(i, 3, "(?:") == 0) {
      int depth = 0;
      for (; i < pattern.size(); ++i) {
        if (pattern[i] == '(') ++depth;
        if (pattern[i] == ')' && --depth == 0) break;
      }
      if (i + 1 < pattern.size() && pattern[i + 1] == '?') ++i;
      continue;
    }
    if (pattern[i] == '(') {
      int depth = 0;
      for (; i < pattern.size(); ++i) {
        if (pattern[i] == '(') ++depth;
        if (pattern[i] == ')' && --depth == 0) break;
      }
      out += "{p" + std::to_string(++n) + "}";
      continue;
    }
    if (pattern[i] == '\\' && i + 1 < pattern.size()) {
      out += pattern[++i];
      continue;
    }
    out += pattern[i];
  }
  return out;
}

struct documented_route {
  route_doc doc;
  route_access access;
  bool documented;
};

// Every registered route, with its documentation entry (or a placeholder that says it has none).
std::vector<documented_route> documented_routes(const http_server& server) {
  std::vector<documented_route> out;
  std::set<std::pair<std::string, std::string>> done;
  for (const auto& r : server.routes()) {
    std::string method = r.method;
    std::transform(method.begin(), method.end(), method.begin(), [](unsigned char c) { return std::tolower(c); });
    if (!done.insert({method, r.name}).second) continue;
    bool found = false;
    for (const auto& d : route_docs()) {
      if (method == d.method && r.name == d.name) {
        out.push_back({d, r.access, true});
        found = true;
      }
    }
    if (!found) out.push_back({route_doc{method, r.name, template_of(r.pattern), "(undocumented)", "", {}}, r.access, false});
  }
  return out;
}

json build_openapi(const http_server& server) {
  json paths = json::object();
  for (const auto& [r, access, documented] : documented_routes(server)) {
    json op{{"summary", r.summary},
            {"responses",
             {{"200", {{"description", "success: {message, data[, total]}"}}},
              {"4XX", {{"description", "bad request: {message, error}"}}},
              {"503", {{"description", "model or index not available: {message, error}"}}}}}};
    op["x-route-name"] = r.name;
    op["x-access"] = access == route_access::open ? "open" : access == route_access::write ? "write" : "read";
    if (access != route_access::open) {
      json www_authenticate{{"schema", {{"type", "string"}}}};
      json retry_after{{"description", "seconds to wait"}, {"schema", {{"type", "integer"}}}};
      op["responses"]["401"] = {
          {"description",
           access == route_access::write
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
      if (access == route_access::read) security.push_back(json::object());
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
      for (const auto& name : r.params) {
        bool file = name == "image" || name == "file";
        props[name] = file ? json{{"type", "string"}, {"format", "binary"}} : json{{"type", "string"}};
      }
      op["requestBody"] = {{"content", {{"multipart/form-data", {{"schema", {{"type", "object"}, {"properties", props}}}}}}}};
    } else {
      for (const auto& p : r.params) {
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
  // Registered first so the document lists itself; built on first use, when every route is in.
  auto doc = std::make_shared<std::string>();
  auto once = std::make_shared<std::once_flag>();
  server.add("GET", "/openapi.json", "openapi", [doc, once, &server](const http_request&, http_response& res) {
    std::call_once(*once, [&] {
      for (const auto& r : documented_routes(server)) {
        if (!r.documented) spdlog::warn("route {} {} has no entry in the OpenAPI table", r.doc.method, r.doc.name);
      }
      *doc = build_openapi(server).dump(2);
    });
    res.set_content(*doc, "application/json");
  }, route_access::open);
}

}  // namespace acg2vec::server