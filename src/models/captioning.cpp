#include "models/captioning.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fmt/format.h>
#include <set>
#include <unordered_map>

#include "core/files.h"
#include "core/error.h"

namespace acg2vec::models {

namespace fs = std::filesystem;

existing_policy parse_existing_policy(std::string_view text) {
  if (text == "skip") return existing_policy::skip;
  if (text == "overwrite") return existing_policy::overwrite;
  if (text == "append") return existing_policy::append;
  fail(errc::bad_parameter, "--on-existing must be skip, overwrite or append, not '{}'", text);
}

ensemble_mode parse_ensemble_mode(std::string_view text) {
  if (text == "mean") return ensemble_mode::mean;
  if (text == "max") return ensemble_mode::max;
  if (text == "vote") return ensemble_mode::vote;
  fail(errc::bad_parameter, "--ensemble must be mean, max or vote, not '{}'", text);
}

float category_thresholds::of(tag_category c) const {
  if (c == tag_category::general) return general;
  if (c == tag_category::character) return character;
  if (auto it = other.find(c); it != other.end()) return it->second;
  return general;
}

category_thresholds resolve_thresholds(const threshold_options& options, const model_manifest& manifest) {
  auto from_manifest = [&](tag_category c) {
    if (auto it = manifest.thresholds.find(c); it != manifest.thresholds.end()) return it->second;
    return manifest.default_threshold;
  };
  auto pick = [&](const std::optional<float>& specific, tag_category c) {
    if (specific) return *specific;
    if (options.thresh) return *options.thresh;
    return from_manifest(c);
  };
  category_thresholds t;
  t.general = pick(options.general, tag_category::general);
  t.character = pick(options.character, tag_category::character);
  for (auto c : {tag_category::artist, tag_category::copyright, tag_category::meta}) t.other[c] = pick({}, c);
  return t;
}

std::optional<float> mcut_threshold(std::vector<float> scores) {
  if (scores.size() < 2) return std::nullopt;
  std::sort(scores.begin(), scores.end(), std::greater<>());
  std::size_t best = 0;
  float gap = -1;
  for (std::size_t i = 0; i + 1 < scores.size(); ++i) {
    // The first largest gap wins, as numpy's argmax picks the first maximum.
    if (scores[i] - scores[i + 1] > gap) {
      gap = scores[i] - scores[i + 1];
      best = i;
    }
  }
  return (scores[best] + scores[best + 1]) / 2;
}

namespace {

// SmilingWolf's reference app uses the kaomoji list of the A1111 WD14 tagger extension.
constexpr std::array<std::string_view, 19> kKaomoji = {
    "0_0", "(o)_(o)", "+_+", "+_-", "._.", "<o>_<o>", "<|>_<|>", "=_=", ">_<", "3_3",
    "6_9", ">_o",     "@_@", "^_^", "o_o", "u_u",     "x_x",     "|_|", "||_||"};

// The character threshold MCut gives is raised to this, as in SmilingWolf's app: character
// scores are sparse, and the largest gap often lies among the near-zero ones.
constexpr float kMcutCharacterFloor = 0.15f;

// A tag is kept by the vote ensemble when at least this share of the models knowing it keep it.
constexpr float kVoteMajority = 0.5f;

std::string trim(std::string_view s) {
  auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  auto e = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(b, e - b + 1));
}

}  // namespace

category_thresholds effective_thresholds(const std::vector<scored_tag>& tags, const category_thresholds& base,
                                         bool mcut) {
  if (!mcut) return base;
  std::vector<float> general, character;
  for (const auto& t : tags) {
    if (t.category == tag_category::general) general.push_back(t.score);
    if (t.category == tag_category::character) character.push_back(t.score);
  }
  category_thresholds out = base;
  if (auto g = mcut_threshold(general)) out.general = *g;
  if (auto c = mcut_threshold(character)) out.character = std::max(kMcutCharacterFloor, *c);
  return out;
}

std::vector<combined_tag> combine(const std::vector<model_scores>& models, ensemble_mode mode, bool mcut) {
  struct acc {
    tag_category category;
    double sum = 0;
    float max = 0;
    int known = 0;
    int kept = 0;
  };
  std::vector<std::string> order;
  std::unordered_map<std::string, acc> by_name;
  for (const auto& m : models) {
    auto thr = effective_thresholds(m.tags, m.thresholds, mcut);
    for (const auto& t : m.tags) {
      auto [it, added] = by_name.try_emplace(t.name, acc{t.category});
      if (added) order.push_back(t.name);
      auto& a = it->second;
      a.sum += t.score;
      a.max = a.known == 0 ? t.score : std::max(a.max, t.score);
      ++a.known;
      if (t.category != tag_category::rating && t.score >= thr.of(t.category)) ++a.kept;
    }
  }
  std::vector<combined_tag> out;
  out.reserve(order.size());
  for (const auto& name : order) {
    const auto& a = by_name.at(name);
    combined_tag c{name, a.category, 0, -1};
    c.score = mode == ensemble_mode::max ? a.max : static_cast<float>(a.sum / a.known);
    if (mode == ensemble_mode::vote) c.votes = static_cast<float>(a.kept) / static_cast<float>(a.known);
    out.push_back(std::move(c));
  }
  return out;
}

caption build_caption(const std::vector<combined_tag>& tags, const category_thresholds& thresholds,
                      const caption_options& options) {
  std::vector<scored_tag> plain;
  plain.reserve(tags.size());
  for (const auto& t : tags) plain.push_back({t.name, t.category, t.score});
  caption out;
  out.thresholds = effective_thresholds(plain, thresholds, options.mcut);

  std::set<std::string, std::less<>> undesired(options.undesired.begin(), options.undesired.end());
  // The name as written, before escaping and scores: underscores, then replacements.
  auto output_name = [&](const std::string& raw) {
    std::string name = options.remove_underscore ? remove_underscore(raw) : raw;
    for (const auto& [from, to] : options.replacements) {
      if (name == from || raw == from) return to;
    }
    return name;
  };
  auto unwanted = [&](const std::string& raw, const std::string& name) {
    return undesired.count(raw) > 0 || undesired.count(name) > 0;
  };

  std::vector<caption_tag> kept;
  const combined_tag* rating = nullptr;
  for (const auto& t : tags) {
    if (t.category == tag_category::rating) {
      if (!rating || t.score > rating->score) rating = &t;
      continue;
    }
    bool selected = t.votes >= 0 ? t.votes >= kVoteMajority : t.score >= out.thresholds.of(t.category);
    if (!selected) continue;
    auto name = output_name(t.name);
    if (unwanted(t.name, name)) continue;
    kept.push_back({t.name, name, t.category, t.score});
  }
  std::stable_sort(kept.begin(), kept.end(), [&](const caption_tag& a, const caption_tag& b) {
    if (options.character_tags_first) {
      bool ca = a.category == tag_category::character, cb = b.category == tag_category::character;
      if (ca != cb) return ca;
    }
    return a.score > b.score;
  });
  // A replacement may map two labels onto one name: the caption keeps the first.
  {
    std::set<std::string> seen;
    std::vector<caption_tag> unique;
    for (auto& t : kept) {
      if (seen.insert(t.text).second) unique.push_back(std::move(t));
    }
    kept = std::move(unique);
  }
  if (options.max_tags > 0 && kept.size() > static_cast<std::size_t>(options.max_tags)) {
    kept.resize(static_cast<std::size_t>(options.max_tags));
  }
  if (rating && (options.rating_first || options.rating_last)) {
    auto name = output_name(rating->name);
    if (!unwanted(rating->name, name)) {
      caption_tag r{rating->name, name, rating->category, rating->score};
      if (options.rating_last) {
        kept.push_back(std::move(r));
      } else {
        kept.insert(kept.begin(), std::move(r));
      }
    }
  }
  // Listed last is moved first, so the tags end up in the order they were listed.
  for (auto it = options.always_first.rbegin(); it != options.always_first.rend(); ++it) {
    auto found = std::find_if(kept.begin(), kept.end(), [&](const caption_tag& t) { return t.text == *it || t.raw == *it; });
    if (found != kept.end()) std::rotate(kept.begin(), found, found + 1);
  }
  for (auto& t : kept) {
    if (options.escape_parentheses) t.text = escape_parentheses(t.text);
    if (options.with_scores) t.text = fmt::format("({}:{:.2f})", t.text, t.score);
    if (!out.text.empty()) out.text += options.separator;
    out.text += t.text;
  }
  out.tags = std::move(kept);
  return out;
}

caption caption_for(const model_manifest& manifest, const std::vector<scored_tag>& tags,
                     const caption_options& options) {
  auto thr = resolve_thresholds(options.thresholds, manifest);
  auto combined = combine({model_scores{tags, thr}}, ensemble_mode::mean, options.mcut);
  return build_caption(combined, thr, options);
}

bool is_kaomoji(std::string_view tag) {
  return std::find(kKaomoji.begin(), kKaomoji.end(), tag) != kKaomoji.end();
}

std::string remove_underscore(std::string_view tag) {
  std::string out(tag);
  if (is_kaomoji(tag)) return out;
  std::replace(out.begin(), out.end(), '_', ' ');
  return out;
}

std::string escape_parentheses(std::string_view tag) {
  std::string out;
  out.reserve(tag.size() + 4);
  for (char c : tag) {
    if (c == '(' || c == ')') out += '\\';
    out += c;
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> parse_tag_replacement(std::string_view text) {
  // Split on unescaped ';' into pairs and on unescaped ',' within a pair; "\," and "\;" are literal.
  std::vector<std::vector<std::string>> groups{{""}};
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\\' && i + 1 < text.size() && (text[i + 1] == ',' || text[i + 1] == ';')) {
      groups.back().back() += text[++i];
    } else if (c == ';') {
      groups.push_back({""});
    } else if (c == ',') {
      groups.back().emplace_back();
    } else {
      groups.back().back() += c;
    }
  }
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& g : groups) {
    if (g.size() == 1 && trim(g[0]).empty()) continue;  // "a,b;" — an empty trailing entry
    if (g.size() != 2 || trim(g[0]).empty()) {
      fail(errc::bad_parameter, "--tag-replacement must be 'source,target;source,target' (escape ',' and ';' as \\, \\;)");
    }
    out.emplace_back(trim(g[0]), trim(g[1]));
  }
  return out;
}

std::vector<std::string> split_tags(std::string_view text, std::string_view separator) {
  std::string sep = trim(separator);
  if (sep.empty()) sep = ",";
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    auto end = text.find(sep, start);
    if (end == std::string_view::npos) end = text.size();
    auto tag = trim(text.substr(start, end - start));
    if (!tag.empty()) out.push_back(std::move(tag));
    start = end + sep.size();
  }
  return out;
}

std::string merge_caption(std::string_view existing, const std::vector<std::string>& new_tags,
                          std::string_view separator) {
  auto tags = split_tags(existing, separator);
  std::set<std::string> have(tags.begin(), tags.end());
  for (const auto& t : new_tags) {
    if (have.insert(t).second) tags.push_back(t);
  }
  std::string out;
  for (const auto& t : tags) {
    if (!out.empty()) out += separator;
    out += t;
  }
  return out;
}

bool is_image_name(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  static const std::set<std::string> known = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"};
  return known.count(ext) > 0;
}

std::vector<fs::path> find_images(const fs::path& root, bool recursive) {
  std::vector<fs::path> out;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) fail(errc::not_found, "{} is not a directory", root.string());
  auto take = [&](const fs::directory_entry& e) {
    if (e.is_regular_file(ec) && is_image_name(e.path()) && e.path().filename().string().front() != '.') {
      out.push_back(e.path());
    }
  };
  if (recursive) {
    fs::recursive_directory_iterator it(root, fs::directory_options::skip_permission_denied, ec), end;
    if (ec) fail(errc::not_found, "cannot read {}: {}", root.string(), ec.message());
    for (; it != end; it.increment(ec)) {
      if (ec) fail(errc::internal, "cannot read {}: {}", root.string(), ec.message());
      if (it->is_directory(ec) && it->path().filename().string().front() == '.') {
        it.disable_recursion_pending();
        continue;
      }
      take(*it);
    }
  } else {
    for (const auto& e : fs::directory_iterator(root, ec)) take(e);
    if (ec) fail(errc::not_found, "cannot read {}: {}", root.string(), ec.message());
  }
  std::sort(out.begin(), out.end());
  return out;
}

fs::path caption_path(const fs::path& image, const fs::path& root, const fs::path& output_dir,
                      std::string_view extension) {
  auto name = image.stem().string() + std::string(extension);
  if (output_dir.empty()) return image.parent_path() / name;
  auto rel = image.parent_path().lexically_relative(root);
  if (rel.empty() || rel == ".") return output_dir / name;
  if (*rel.begin() == "..") fail(errc::bad_parameter, "{} is not under {}", image.string(), root.string());
  return output_dir / rel / name;
}

fs::path temporary_path(const fs::path& target) {
  // One fixed name per caption: a run killed mid-write leaves at most this file, and the next run
  // that writes the caption reuses and renames it.
  return target.parent_path() / ("." + target.filename().string() + ".acg2vec-tmp");
}

void write_atomic(const fs::path& path, std::string_view text) {
  write_file_atomic(path, text, temporary_path(path));
}

}  // namespace acg2vec::models