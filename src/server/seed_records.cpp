#include "server/seed_records.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>
#include <map>

namespace acg2vec::server {

using json = nlohmann::json;

std::string path_segment(std::string_view id) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : id) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

namespace {

// The file name of a path or URL without its directory, query and extension.
std::string title_of(const store::item& it) {
  std::string_view s = it.source;
  s = s.substr(0, std::min(s.find('?'), s.find('#')));
  while (!s.empty() && (s.back() == '/' || s.back() == '\\')) s.remove_suffix(1);
  if (auto slash = s.find_last_of("/\\"); slash != std::string_view::npos) s.remove_prefix(slash + 1);
  if (auto dot = s.rfind('.'); dot != std::string_view::npos && dot > 0) s = s.substr(0, dot);
  return s.empty() ? it.id : std::string(s);
}

std::string iso_date(std::int64_t ms) {
  std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &utc);
  char out[48];
  std::snprintf(out, sizeof out, "%s.%03dZ", buf, static_cast<int>(ms % 1000));
  return out;
}

bool is_rating(std::string_view name) { return sanity_level_of_rating(name).has_value(); }

}  // namespace

json seed_id_json(std::string_view id) {
  constexpr std::uint64_t js_safe = 1ull << 53;
  bool canonical = !id.empty() && id.size() <= 16 && (id.size() == 1 || id[0] != '0') &&
                   std::all_of(id.begin(), id.end(), [](unsigned char c) { return c >= '0' && c <= '9'; });
  if (canonical) {
    std::uint64_t v = 0;
    for (char c : id) v = v * 10 + static_cast<std::uint64_t>(c - '0');
    if (v < js_safe) return static_cast<std::int64_t>(v);
  }
  return std::string(id);
}

std::string public_base_url(const http_request& req) {
  auto first = [](std::string v) {  // a proxy chain lists several values; the first is the client's
    if (auto comma = v.find(','); comma != std::string::npos) v.resize(comma);
    v.erase(0, v.find_first_not_of(" \t"));
    v.erase(v.find_last_not_of(" \t") + 1);
    return v;
  };
  std::string host = first(req.get_header_value("X-Forwarded-Host"));
  if (host.empty()) host = first(req.get_header_value("Host"));
  // A host is letters, digits, '.', '-', ':' and IPv6 brackets; anything else is not echoed back.
  bool valid = !host.empty() && host.size() <= 255 && std::all_of(host.begin(), host.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '.' || c == '-' || c == ':' || c == '[' || c == ']';
  });
  if (!valid) return {};
  std::string proto = first(req.get_header_value("X-Forwarded-Proto"));
  if (proto != "https") proto = "http";
  return proto + "://" + host;
}

std::optional<int> sanity_level_of_rating(std::string_view rating) {
  if (rating.rfind("rating:", 0) == 0) rating.remove_prefix(7);
  // DeepDanbooru's rating:safe and the WD taggers' general are pixiv's all-ages level 2;
  // sensitive is 4; questionable and explicit are 6 (explicit also sets xrestrict).
  static const std::map<std::string_view, int> levels{
      {"safe", 2}, {"general", 2}, {"sensitive", 4}, {"questionable", 6}, {"explicit", 6}};
  if (auto it = levels.find(rating); it != levels.end()) return it->second;
  return std::nullopt;
}

json seed_illust(const store::item& it, std::string_view base_url) {
  std::string thumb = std::string(base_url) + "/v1/items/" + path_segment(it.id) + "/thumbnail";
  // acg2vec keeps one image per item (its thumbnail); every size names it.
  json urls{{"squareMedium", thumb}, {"medium", thumb}, {"large", thumb}, {"original", thumb}};

  // Tags: the best score per name over every tagger, ratings apart.
  std::map<std::string, float> best;
  std::string rating;
  float rating_score = -1.0f;
  for (const auto& [tagger, list] : it.tags) {
    for (const auto& [name, score] : list) {
      if (is_rating(name)) {
        if (score > rating_score) {
          rating = name;
          rating_score = score;
        }
        continue;
      }
      if (score < seed_tag_threshold) continue;
      auto [pos, fresh] = best.emplace(name, score);
      if (!fresh) pos->second = std::max(pos->second, score);
    }
  }
  std::vector<std::pair<std::string, float>> ranked(best.begin(), best.end());
  std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  if (ranked.size() > seed_max_tags) ranked.resize(seed_max_tags);
  json tags = json::array();
  for (const auto& [name, score] : ranked) tags.push_back({{"name", name}});

  json out{{"id", seed_id_json(it.id)},
           {"title", title_of(it)},
           {"imageUrls", json::array({urls})},
           {"width", it.width},
           {"height", it.height},
           {"tags", tags},
           {"createDate", iso_date(it.created_at)}};
  if (auto level = sanity_level_of_rating(rating)) {
    out["sanityLevel"] = *level;
    out["xrestrict"] = rating == "explicit" || rating == "rating:explicit" ? 1 : 0;
  }
  if (it.metadata.is_object()) {
    for (const auto& [key, value] : it.metadata.items()) out[key] = value;
  }
  return out;
}

void reply_seed(http_response& res, const json& data, std::string_view message) {
  // json::empty() is false for every string, so an empty string is checked apart.
  bool empty = data.is_null() || ((data.is_array() || data.is_object()) && data.empty()) ||
               (data.is_string() && data.get_ref<const std::string&>().empty());
  reply(res, empty ? json() : data, message);
}

}  // namespace acg2vec::server