#include "models/manifest.h"

#include "core/files.h"
#include "core/json_guard.h"

#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "core/error.h"
#include "image/preprocess.h"

namespace acg2vec::models {

namespace {

using json = nlohmann::json;

model_task parse_task(const std::string& s, const std::string& pack) {
  if (s == "tagger") return model_task::tagger;
  if (s == "image_embedding") return model_task::image_embedding;
  if (s == "text_embedding") return model_task::text_embedding;
  if (s == "scores") return model_task::scores;
  if (s == "classifier") return model_task::classifier;
  if (s == "clip_image") return model_task::clip_image;
  if (s == "clip_text") return model_task::clip_text;
  if (s == "upscaler") return model_task::upscaler;
  fail(errc::bad_parameter, "pack '{}': unknown task '{}' (tagger, image_embedding, text_embedding, scores, "
       "classifier, clip_image, clip_text, upscaler)", pack, s);
}

model_format parse_format(const std::string& s, const std::string& pack) {
  if (s == "onnx") return model_format::onnx;
  if (s == "keras_h5") return model_format::keras_h5;
  if (s == "tfjs_layers") return model_format::tfjs_layers;
  if (s == "sentence_transformers") return model_format::sentence_transformers;
  if (s == "hf_clip") return model_format::hf_clip;
  if (s == "ncnn") return model_format::ncnn;
  fail(errc::bad_parameter, "pack '{}': unknown format '{}' (onnx, keras_h5, tfjs_layers, sentence_transformers, "
       "hf_clip, ncnn)", pack, s);
}

// Splits one CSV line with double-quoted fields ("a,b" and "" escapes).
std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> out(1);
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        out.back() += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        out.back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      out.emplace_back();
    } else if (c != '\r') {
      out.back() += c;
    }
  }
  return out;
}

// Every key a manifest may hold, per object. A misspelt key would otherwise be dropped silently
// and the pack would run with a default the author did not mean (e.g. "pad" vs "pad_fill").
const std::set<std::string>& known_keys(std::string_view where) {
  static const std::map<std::string_view, std::set<std::string>> keys{
      {"", {"name", "task", "format", "file", "base", "input", "labels", "thresholds", "cut", "embedding", "outputs",
            "aliases", "max_batch", "max_wait_ms", "tokenizer", "max_length", "space", "image_aliases", "vocabulary",
            "description", "license", "source", "weights", "upscale"}},
      {"upscale", {"scale", "pre_padding", "multiple", "tile", "overlap", "in_scale", "in_offset", "out_scale",
                   "out_offset", "max_input_pixels", "max_output_pixels"}},
      {"labels", {"file", "format", "character_file", "character_range"}},
      {"cut", {"layer", "pool"}},
      {"embedding", {"layer", "pool"}},
      {"outputs[]", {"name", "value", "labels", "tf_name"}},
      {"vocabulary", {"file", "format", "limit"}},
  };
  return keys.at(where);
}

void check_keys(const json& obj, std::string_view where, const std::string& pack) {
  if (!obj.is_object()) return;
  const auto& allowed = known_keys(where);
  for (const auto& [key, _] : obj.items()) {
    if (allowed.count(key) == 0) {
      std::string list;
      for (const auto& k : allowed) list += (list.empty() ? "" : ", ") + k;
      fail(errc::bad_parameter, "pack '{}': unknown manifest key \"{}{}{}\" (known: {})", pack, where,
           where.empty() ? "" : ".", key, list);
    }
  }
}

tag_category category_from_int(long v) {
  switch (v) {
    case 0: return tag_category::general;
    case 1: return tag_category::artist;
    case 3: return tag_category::copyright;
    case 4: return tag_category::character;
    case 5: return tag_category::meta;
    case 9: return tag_category::rating;
    default: fail(errc::bad_parameter, "unknown tag category {}", v);
  }
}

}  // namespace

std::string_view to_string(model_task t) noexcept {
  switch (t) {
    case model_task::tagger: return "tagger";
    case model_task::image_embedding: return "image_embedding";
    case model_task::text_embedding: return "text_embedding";
    case model_task::scores: return "scores";
    case model_task::classifier: return "classifier";
    case model_task::clip_image: return "clip_image";
    case model_task::clip_text: return "clip_text";
    case model_task::upscaler: return "upscaler";
  }
  return "?";
}

std::string_view to_string(model_format f) noexcept {
  switch (f) {
    case model_format::onnx: return "onnx";
    case model_format::keras_h5: return "keras_h5";
    case model_format::tfjs_layers: return "tfjs_layers";
    case model_format::sentence_transformers: return "sentence_transformers";
    case model_format::hf_clip: return "hf_clip";
    case model_format::ncnn: return "ncnn";
  }
  return "?";
}

std::string_view to_string(tag_category c) noexcept {
  switch (c) {
    case tag_category::general: return "general";
    case tag_category::artist: return "artist";
    case tag_category::copyright: return "copyright";
    case tag_category::character: return "character";
    case tag_category::meta: return "meta";
    case tag_category::rating: return "rating";
  }
  return "general";
}

tag_category parse_tag_category(std::string_view s) {
  for (auto c : {tag_category::general, tag_category::artist, tag_category::copyright, tag_category::character,
                 tag_category::meta, tag_category::rating}) {
    if (to_string(c) == s) return c;
  }
  fail(errc::bad_parameter, "unknown tag category '{}' (general, artist, copyright, character, meta, rating)", s);
}

std::vector<tag_label> load_labels(const std::filesystem::path& file, const std::string& format) {
  std::string text = read_file(file);
  std::vector<tag_label> out;
  if (format == "lines") {
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty()) continue;
      // DeepDanbooru marks its rating outputs with a "rating:" prefix.
      tag_category cat = line.rfind("rating:", 0) == 0 ? tag_category::rating : tag_category::general;
      out.push_back({line, cat});
    }
  } else if (format == "csv") {
    std::istringstream in(text);
    std::string line;
    int name_col = -1, cat_col = -1;
    while (std::getline(in, line)) {
      if (line.empty() || line == "\r") continue;
      auto cols = split_csv(line);
      if (name_col < 0) {
        for (std::size_t i = 0; i < cols.size(); ++i) {
          if (cols[i] == "name") name_col = static_cast<int>(i);
          if (cols[i] == "category") cat_col = static_cast<int>(i);
        }
        if (name_col < 0) fail(errc::bad_parameter, "{}: CSV header has no 'name' column", file.string());
        continue;
      }
      if (static_cast<int>(cols.size()) <= name_col) fail(errc::bad_parameter, "{}: short CSV row", file.string());
      tag_label l{cols[name_col], tag_category::general};
      if (cat_col >= 0 && static_cast<int>(cols.size()) > cat_col) l.category = category_from_int(std::stol(cols[cat_col]));
      out.push_back(std::move(l));
    }
  } else if (format == "json") {
    json j = parse_json_guarded(text, file.string());
    if (!j.is_array()) fail(errc::bad_parameter, "{}: expected a JSON array of tags", file.string());
    for (const auto& e : j) {
      if (e.is_string()) {
        out.push_back({e.get<std::string>(), tag_category::general});
      } else {
        out.push_back({e.at("name").get<std::string>(), category_from_int(e.value("category", 0))});
      }
    }
  } else {
    fail(errc::bad_parameter, "unknown label format '{}' (lines, csv, json)", format);
  }
  return out;
}

model_manifest load_manifest(const std::filesystem::path& dir) {
  auto path = dir / "manifest.json";
  json j = parse_json_guarded(read_file(path), path.string());
  if (!j.is_object()) fail(errc::bad_parameter, "{} is not a JSON object", path.string());
  return manifest_from_json(j, dir);
}

model_manifest manifest_from_json(const nlohmann::json& j, const std::filesystem::path& dir) {
  if (!j.is_object()) fail(errc::bad_parameter, "the manifest of {} is not a JSON object", dir.string());
  model_manifest m;
  m.raw = j;
  m.dir = std::filesystem::absolute(dir);
  m.name = j.contains("name") && j["name"].is_string() ? j["name"].get<std::string>() : dir.filename().string();
  check_keys(j, "", m.name);
  // "input" keys are checked by image::parse_preprocess_spec below.
  for (const char* sub : {"labels", "cut", "embedding", "vocabulary", "upscale"}) {
    if (j.contains(sub)) check_keys(j[sub], sub, m.name);
  }
  if (j.contains("outputs") && j["outputs"].is_array()) {
    for (const auto& o : j["outputs"]) check_keys(o, "outputs[]", m.name);
  }
  try {
    m.task = parse_task(j.at("task").get<std::string>(), m.name);
    m.base = j.value("base", "");
    if (m.base.empty()) {
      m.format = parse_format(j.at("format").get<std::string>(), m.name);
      m.file = m.dir / j.value("file", std::string());
      if (m.format == model_format::ncnn) {
        auto bin = m.file;
        m.weights = j.contains("weights") ? m.dir / j["weights"].get<std::string>() : bin.replace_extension(".bin");
      }
    }
    m.input = j.value("input", json::object());
    if (j.contains("labels")) {
      const auto& l = j["labels"];
      if (l.is_array()) {
        for (const auto& name : l) m.labels.push_back({name.get<std::string>(), tag_category::general});
      } else {
        m.labels = load_labels(m.dir / l.at("file").get<std::string>(), l.value("format", "lines"));
        // DeepDanbooru's release ships the character tags separately; mark them by membership.
        if (l.contains("character_file")) {
          auto chars = load_labels(m.dir / l["character_file"].get<std::string>(), "lines");
          std::set<std::string> names;
          for (auto& c : chars) names.insert(c.name);
          for (auto& t : m.labels) {
            if (names.count(t.name)) t.category = tag_category::character;
          }
        }
        if (l.contains("character_range")) {
          auto r = l["character_range"].get<std::vector<std::size_t>>();
          if (r.size() != 2 || r[0] > r[1] || r[1] > m.labels.size()) {
            fail(errc::bad_parameter, "character_range must be [first, end) within the label list");
          }
          for (std::size_t i = r[0]; i < r[1]; ++i) m.labels[i].category = tag_category::character;
        }
      }
    }
    if (j.contains("thresholds")) {
      for (const auto& [k, v] : j["thresholds"].items()) {
        if (k == "rating" && v.is_string()) {
          m.rating_argmax = v.get<std::string>() == "argmax";
        } else if (k == "default") {
          m.default_threshold = v.get<float>();
        } else {
          m.thresholds[parse_tag_category(k)] = v.get<float>();
        }
      }
    }
    if (j.contains("cut")) m.cut = cut_spec{j["cut"].at("layer").get<std::string>(), j["cut"].value("pool", "gap")};
    if (j.contains("embedding")) {
      m.embedding = cut_spec{j["embedding"].at("layer").get<std::string>(), j["embedding"].value("pool", "none")};
    }
    if (j.contains("outputs")) {
      for (const auto& o : j["outputs"]) {
        output_spec s;
        s.name = o.at("name").get<std::string>();
        s.value = o.value("value", "");
        s.labels = o.value("labels", std::vector<std::string>{});
        s.tf_name = o.value("tf_name", s.name);
        m.outputs.push_back(std::move(s));
      }
    }
    m.aliases = j.value("aliases", std::vector<std::string>{});
    m.max_batch = j.value("max_batch", 8);
    m.max_wait_ms = j.value("max_wait_ms", 2);
  } catch (const json::exception& e) {
    fail(errc::bad_parameter, "pack '{}': invalid manifest field: {}", m.name, e.what());
  }
  if (m.max_batch < 1 || m.max_batch > 1024) fail(errc::bad_parameter, "pack '{}': max_batch out of range", m.name);
  // Preprocessing errors surface at load time, with the pack's name, not at the first request.
  if (!m.input.empty()) {
    try {
      (void)image::parse_preprocess_spec(m.input);
    } catch (const error& e) {
      fail(e.code(), "pack '{}': {}", m.name, e.what());
    }
  }
  return m;
}

}  // namespace acg2vec::models