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

#include "core/base64.h"
#include "image/decode.h"
#include "models/captioning.h"
#include "models/postprocess.h"
#include "models/registry.h"
#include "server/routes.h"

namespace acg2vec {

namespace {

using ordered = nlohmann::ordered_json;

// Bounds on what named queues may hold, so that a client cannot grow the server without limit.
constexpr std::size_t kMaxQueues = 64;
constexpr std::size_t kMaxQueuedImages = 1024;

// SHA-256 (FIPS 180-4), for picobyte's name_in_queue "<sha256>": the image is named by the hash of
// the base64 text it was sent as.
std::string sha256_hex(std::string_view data) {
  static constexpr std::array<std::uint32_t, 64> k = {
      0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
      0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
      0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
      0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
      0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
      0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
      0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
      0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
  std::array<std::uint32_t, 8> h = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  std::string msg(data);
  const std::uint64_t bits = static_cast<std::uint64_t>(data.size()) * 8;
  msg += static_cast<char>(0x80);
  while (msg.size() % 64 != 56) msg += '\0';
  for (int i = 7; i >= 0; --i) msg += static_cast<char>((bits >> (i * 8)) & 0xff);
  auto rotr = [](std::uint32_t x, int n) { return (x >> n) | (x << (32 - n)); };
  for (std::size_t off = 0; off < msg.size(); off += 64) {
    std::array<std::uint32_t, 64> w{};
    for (int i = 0; i < 16; ++i) {
      const auto* p = reinterpret_cast<const unsigned char*>(msg.data() + off + static_cast<std::size_t>(i) * 4);
      w[i] = (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
    }
    for (int i = 16; i < 64; ++i) {
      std::uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      std::uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    auto v = h;
    for (int i = 0; i < 64; ++i) {
      std::uint32_t s1 = rotr(v[4], 6) ^ rotr(v[4], 11) ^ rotr(v[4], 25);
      std::uint32_t ch = (v[4] & v[5]) ^ (~v[4] & v[6]);
      std::uint32_t t1 = v[7] + s1 + ch + k[i] + w[i];
      std::uint32_t s0 = rotr(v[0], 2) ^ rotr(v[0], 13) ^ rotr(v[0], 22);
      std::uint32_t maj = (v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]);
      std::uint32_t t2 = s0 + maj;
      v = {t1 + t2, v[0], v[1], v[2], v[3] + t1, v[4], v[5], v[6]};
    }
    for (int i = 0; i < 8; ++i) h[i] += v[i];
  }
  std::string hex;
  for (auto x : h) hex += fmt::format("{:08x}", x);
  return hex;
}

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
  std::string name = r.replace_underscore ? captioning::remove_underscore(raw) : raw;
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

interrogation interrogate(const model_entry& e, const image::image_rgb8& img, const interrogate_request& r) {
  auto scores = label_scores(e.manifest, e.graph->run_image(img).at(0));
  std::stable_sort(scores.begin(), scores.end(), [](const auto& a, const auto& b) { return a.score > b.score; });
  // toriato keeps score >= threshold (default 0.35); picobyte score > threshold (default 0).
  const float threshold = r.threshold.value_or(r.flat ? 0.35f : 0.0f);
  interrogation out;
  for (const auto& t : scores) {
    if (t.category == tag_category::rating) {
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
      name = sha256_hex(image_b64);
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

std::shared_ptr<const model_entry> tagger_for(const model_registry& reg, const std::string& name) {
  auto e = reg.resolve(name, model_task::tagger);
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
                 if (e->state == model_state::ready && e->manifest.task == model_task::tagger && e->graph &&
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

}  // namespace acg2vec
