// The A1111 WD14 tagger extension's API (/tagger/v1), so that clients written for it (booru
// software, sdwebuiapi scripts) can be pointed at acg2vec. Two versions of the extension exist;
// docs/tagger-api.md lists what each sends and gets and how acg2vec answers both:
// - toriato's original: {"image", "model", "threshold" (default 0.35)} → {"caption": {name: score}},
//   the ratings and the tags with score >= threshold in one flat object, by score;
// - picobyte's maintained fork: {"image", "model", "threshold" (default 0), "queue", "name_in_queue"}
//   → {"caption": {"tag": {name: score > threshold}, "rating": {name: score}}}, plus named queues
//   that collect several images and return them together.
#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <random>

#include "core/hash.h"
#include "core/base64.h"
#include "image/decode.h"
#include "models/captioning.h"
#include "models/postprocess.h"
#include "models/registry.h"
#include "server/routes.h"

namespace acg2vec::server {

using json = nlohmann::json;

namespace {

using ordered = nlohmann::ordered_json;

// Bounds on what named queues may hold, so that a client cannot grow the server without limit.
constexpr std::size_t kMaxQueues = 64;
constexpr std::size_t kMaxQueuedImages = 1024;

struct interrogate_request {
  std::string image_b64;
  std::string model;
  std::optional<float> threshold;
  std::string queue;
  std::string name_in_queue;
  bool flat = false;
  bool replace_underscore = false;
  bool escape_tag = false;
};

std::string string_field(const json& body, const char* key) {
  if (!body.contains(key) || body[key].is_null()) return {};
  if (!body[key].is_string()) fail(errc::bad_parameter, "\"{}\" must be a string", key);
  return body[key].get<std::string>();
}

bool bool_field(const json& body, const char* key) {
  if (!body.contains(key) || body[key].is_null()) return false;
  if (!body[key].is_boolean()) fail(errc::bad_parameter, "\"{}\" must be true or false", key);
  return body[key].get<bool>();
}

interrogate_request parse_interrogate(const http_request& req) {
  auto body = parse_json_body(req);
  if (!body.is_object()) fail(errc::bad_parameter, "expected a JSON object with \"image\" and \"model\"");
  interrogate_request r;
  r.image_b64 = string_field(body, "image");
  r.model = string_field(body, "model");
  if (body.contains("threshold") && !body["threshold"].is_null()) {
    if (!body["threshold"].is_number()) fail(errc::bad_parameter, "\"threshold\" must be a number in [0, 1]");
    double t = body["threshold"].get<double>();
    if (!(t >= 0 && t <= 1)) fail(errc::bad_parameter, "\"threshold\" must be a number in [0, 1]");
    r.threshold = static_cast<float>(t);
  }
  r.queue = string_field(body, "queue");
  r.name_in_queue = string_field(body, "name_in_queue");
  auto format = string_field(body, "caption_format");
  if (auto q = find_param(req, "caption_format")) format = *q;
  if (!format.empty() && format != "flat" && format != "grouped") {
    fail(errc::bad_parameter, "\"caption_format\" must be \"grouped\" or \"flat\"");
  }
  r.flat = format == "flat";
  r.replace_underscore = bool_field(body, "replace_underscore");
  r.escape_tag = bool_field(body, "escape_tag");
  return r;
}

// A1111 accepts a bare base64 string or a data URL; URLs to fetch are not accepted here.
image::image_rgb8 decode_b64_image(const std::string& text, const model_route_context& ctx) {
  if (text.empty()) fail(errc::bad_parameter, "\"image\" is missing: send the image as base64");
  std::string_view b64 = text;
  if (b64.rfind("data:", 0) == 0) {
    auto comma = b64.find(',');
    if (comma == std::string_view::npos || b64.substr(0, comma).find(";base64") == std::string_view::npos) {
      fail(errc::bad_parameter, "\"image\" is a data URL without base64 data");
    }
    b64.remove_prefix(comma + 1);
  } else if (b64.rfind("http://", 0) == 0 || b64.rfind("https://", 0) == 0) {
    fail(errc::bad_parameter, "\"image\" must be base64 image data, not a URL");
  }
  if (b64.size() / 4 * 3 > ctx.max_upload_bytes + 3) {
    fail(errc::too_large, "\"image\" is over the upload limit of {} bytes", ctx.max_upload_bytes);
  }
  auto bytes = base64_decode(b64);
  if (!bytes) fail(errc::bad_parameter, "\"image\" is not valid base64");
  return image::decode_image(*bytes, decode_limits_of(ctx));
}

std::string tag_name(const std::string& raw, const interrogate_request& r) {
  std::string name = r.replace_underscore ? models::remove_underscore(raw) : raw;
  if (r.escape_tag) {
    // A1111's prompt escaping: a backslash before '\', '(' and ')'.
    std::string out;
    for (char c : name) {
      if (c == '\\' || c == '(' || c == ')') out += '\\';
      out += c;
    }
    name = std::move(out);
  }
  return name;
}

struct interrogation {
  ordered ratings = ordered::object();
  ordered tags = ordered::object();
};

interrogation interrogate(const models::model_entry& e, const image::image_rgb8& img, const interrogate_request& r) {
  auto scores = models::label_scores(e.manifest, e.graph->run_image(img).at(0));
  std::stable_sort(scores.begin(), scores.end(), [](const auto& a, const auto& b) { return a.score > b.score; });
  // toriato keeps score >= threshold (default 0.35); picobyte score > threshold (default 0).
  const float threshold = r.threshold.value_or(r.flat ? 0.35f : 0.0f);
  interrogation out;
  for (const auto& t : scores) {
    if (t.category == models::tag_category::rating) {
      out.ratings[tag_name(t.name, r)] = t.score;
    } else if (r.flat ? t.score >= threshold : t.score > threshold) {
      out.tags[tag_name(t.name, r)] = t.score;
    }
  }
  return out;
}

// picobyte's named queues: images added under a queue name are interrogated at once and their
// results kept until a request names the queue without an image name, which returns them all.
class queue_book {
 public:
  // Returns the per-model count of images queued so far (picobyte's answer to an add).
  ordered add(const std::string& model, std::string queue, std::string name, const std::string& image_b64,
              const std::function<ordered()>& run) {
    ordered result = run();  // outside the lock: queued requests still share forward passes
    std::lock_guard lock(mutex_);
    if (queue.empty()) {
      // picobyte invents a queue name when only an image name is given.
      static const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
      std::uniform_int_distribution<int> pick(0, 35);
      do {
        queue.clear();
        for (int i = 0; i < 8; ++i) queue += alphabet[pick(rng_)];
      } while (queues_.count(queue));
    }
    if (!queues_.count(queue) && queues_.size() >= kMaxQueues) {
      fail(errc::too_large, "too many open queues ({}); finish one first", kMaxQueues);
    }
    auto& q = queues_[queue];
    if (q.results.size() >= kMaxQueuedImages) {
      fail(errc::too_large, "queue '{}' already holds {} images; finish it first", queue, kMaxQueuedImages);
    }
    if (name == "<sha256>") {
      name = sha256_hex(image_b64);  // picobyte names the image by the hash of its base64 text
      if (q.results.contains(name)) return counts_locked();
    } else if (q.results.contains(name)) {
      int j = 0;
      while (q.results.contains(fmt::format("{}#{}", name, j))) ++j;
      name = fmt::format("{}#{}", name, j);
    }
    q.results[name] = std::move(result);
    q.per_model[model] += 1;
    return counts_locked();
  }

  ordered finish(const std::string& queue) {
    std::lock_guard lock(mutex_);
    auto it = queues_.find(queue);
    if (it == queues_.end()) return counts_locked();
    ordered out = std::move(it->second.results);
    queues_.erase(it);
    return out;
  }

 private:
  struct book {
    ordered results = ordered::object();
    std::map<std::string, int> per_model;
  };
  ordered counts_locked() const {
    ordered out = ordered::object();
    for (const auto& [qname, q] : queues_) {
      for (const auto& [model, n] : q.per_model) out[model][qname] = n;
    }
    return out;
  }
  std::mutex mutex_;
  std::map<std::string, book> queues_;
  std::mt19937 rng_{std::random_device{}()};
};

void reply_ordered(http_response& res, const ordered& body) {
  res.status = 200;
  res.set_content(body.dump(-1, ' ', false, ordered::error_handler_t::replace), "application/json");
}

std::shared_ptr<const models::model_entry> tagger_for(const models::model_registry& reg, const std::string& name) {
  auto e = reg.resolve(name, models::model_task::tagger);
  if (!e->graph || !e->graph->takes_images()) fail(errc::bad_parameter, "model '{}' does not take images", e->manifest.name);
  return e;
}

}  // namespace

void register_tagger_routes(http_server& server, model_route_context ctx) {
  auto& reg = *ctx.registry;
  auto queues = std::make_shared<queue_book>();

  server.add("POST", "/tagger/v1/interrogate", "tagger.interrogate",
             [&reg, ctx, queues](const http_request& req, http_response& res) {
               auto r = parse_interrogate(req);
               if (!r.queue.empty() && r.name_in_queue.empty()) {
                 reply_ordered(res, ordered{{"caption", queues->finish(r.queue)}});
                 return;
               }
               auto e = tagger_for(reg, r.model);
               auto img = decode_b64_image(r.image_b64, ctx);
               if (!r.name_in_queue.empty()) {
                 auto counts = queues->add(e->manifest.name, r.queue, r.name_in_queue, r.image_b64, [&] {
                   // A queued result is the tags with the ratings as "rating:<name>", as picobyte keeps it.
                   auto i = interrogate(*e, img, r);
                   ordered merged = i.tags;
                   for (const auto& [k, v] : i.ratings.items()) merged["rating:" + k] = v;
                   return merged;
                 });
                 reply_ordered(res, ordered{{"caption", counts}});
                 return;
               }
               auto i = interrogate(*e, img, r);
               ordered caption;
               if (r.flat) {
                 caption = i.ratings;
                 for (const auto& [k, v] : i.tags.items()) caption[k] = v;
               } else {
                 caption = ordered{{"tag", i.tags}, {"rating", i.ratings}};
               }
               reply_ordered(res, ordered{{"caption", caption}});
             },
             route_access::read);

  server.add("GET", "/tagger/v1/interrogators", "tagger.interrogators",
             [&reg](const http_request&, http_response& res) {
               json names = json::array();
               for (const auto& e : reg.entries()) {
                 if (e->state == models::model_state::ready && e->manifest.task == models::model_task::tagger && e->graph &&
                     e->graph->takes_images()) {
                   names.push_back(e->manifest.name);
                 }
               }
               reply_json(res, json{{"models", names}});
             },
             route_access::read);

  // The extension frees its models here. acg2vec's packs stay loaded for every route, so nothing
  // is unloaded, and the answer (a JSON string, as the extension's) says so.
  server.add("POST", "/tagger/v1/unload-interrogators", "tagger.unload",
             [](const http_request&, http_response& res) { reply_json(res, json("Successfully unload 0 model(s)")); },
             route_access::read);
}

}  // namespace acg2vec::server