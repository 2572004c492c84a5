#include "models/layouts.h"

#include <fstream>
#include <optional>

#include "core/error.h"

namespace acg2vec::models {

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

json read_json(const fs::path& p) {
  std::ifstream in(p);
  json j = json::parse(in, nullptr, false);
  if (j.is_discarded()) fail(errc::bad_parameter, "{} is not valid JSON", p.string());
  return j;
}

std::string folder_name(const fs::path& dir) {
  auto d = fs::absolute(dir).lexically_normal();
  if (d.filename().empty()) d = d.parent_path();
  return d.filename().string();
}

// WD v3 taggers as published by SmilingWolf: 448 x 448 NHWC BGR 0..255, padded to a white square
// and resized with PIL bicubic (the reference app); thresholds those of the model cards.
json wd_tagger(const std::string& name) {
  return {{"name", name},
          {"task", "tagger"},
          {"format", "onnx"},
          {"file", "model.onnx"},
          {"input",
           {{"size", {448, 448}}, {"resize", "pad_square_bicubic"}, {"layout", "NHWC"}, {"scale", 1},
            {"channels", "BGR"}, {"pad", 255}}},
          {"labels", {{"file", "selected_tags.csv"}, {"format", "csv"}}},
          {"thresholds", {{"general", 0.35}, {"character", 0.85}, {"rating", "argmax"}}}};
}

// A DeepDanbooru project folder: project.json gives the input size and the network's name.
std::optional<json> deepdanbooru(const fs::path& dir, const std::string& name) {
  if (!is_file(dir / "project.json") || !is_file(dir / "tags.txt")) return std::nullopt;
  json project = read_json(dir / "project.json");
  std::string model = project.value("model", "");
  fs::path weights;
  if (!model.empty() && is_file(dir / ("model-" + model + ".h5"))) {
    weights = "model-" + model + ".h5";
  } else {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      if (e.path().extension() == ".h5") weights = e.path().filename();
    }
  }
  if (weights.empty()) return std::nullopt;
  json labels{{"file", "tags.txt"}, {"format", "lines"}};
  if (is_file(dir / "tags-character.txt")) labels["character_file"] = "tags-character.txt";
  json m{{"name", name},
         {"task", "tagger"},
         {"format", "keras_h5"},
         {"file", weights.string()},
         {"input",
          {{"size", {project.value("image_height", 512), project.value("image_width", 512)}},
           {"resize", "stretch_bilinear_tf"}, {"layout", "NHWC"}, {"scale", 255}, {"channels", "RGB"}}},
         {"labels", labels},
         {"thresholds", {{"general", 0.5}, {"character", 0.5}, {"rating", "argmax"}}}};
  // illust2vec is resnet_custom_v3 cut at add_43 (seed-spec); other networks have no known cut.
  if (model == "resnet_custom_v3") m["embedding"] = {{"layer", "add_43"}, {"pool", "gap"}};
  return m;
}

// immich's CLIP repos: preprocess_cfg.json beside the visual model says size, mean and std.
json immich_visual(const fs::path& visual, const std::string& name) {
  json input{{"size", {224, 224}}, {"resize", "clip_center_crop_bicubic"}, {"layout", "NCHW"}, {"scale", 255},
             {"channels", "RGB"}, {"mean", {0.48145466, 0.4578275, 0.40821073}},
             {"std", {0.26862954, 0.26130258, 0.27577711}}};
  if (is_file(visual / "preprocess_cfg.json")) {
    json cfg = read_json(visual / "preprocess_cfg.json");
    if (cfg.contains("size")) {
      const auto& s = cfg["size"];
      input["size"] = s.is_array() ? s : json::array({s, s});
    }
    if (cfg.contains("mean")) input["mean"] = cfg["mean"];
    if (cfg.contains("std")) input["std"] = cfg["std"];
  }
  return {{"name", name}, {"task", "clip_image"}, {"format", "onnx"}, {"file", "model.onnx"}, {"input", input}};
}

bool names_clip(const json& config) {
  if (config.value("model_type", "") == "clip") return true;
  if (config.contains("architectures") && config["architectures"].is_array()) {
    for (const auto& a : config["architectures"]) {
      if (a.is_string() && a.get<std::string>() == "CLIPModel") return true;
    }
  }
  return false;
}

}  // namespace

std::vector<inferred_pack> infer_packs(const fs::path& dir) {
  std::vector<inferred_pack> out;
  const std::string name = folder_name(dir);
  if (is_file(dir / "model.onnx") && is_file(dir / "selected_tags.csv")) {
    out.push_back({"wd_tagger", dir, wd_tagger(name)});
    return out;
  }
  if (auto m = deepdanbooru(dir, name)) {
    out.push_back({"deepdanbooru", dir, *m});
    return out;
  }
  if (is_file(dir / "visual" / "model.onnx") && is_file(dir / "textual" / "model.onnx")) {
    out.push_back({"immich_clip", dir / "visual", immich_visual(dir / "visual", name + "-visual")});
    json text{{"name", name + "-textual"}, {"task", "clip_text"}, {"format", "onnx"}, {"file", "model.onnx"},
              {"max_length", 77}, {"space", name + "-visual"}};
    if (is_file(dir / "textual" / "tokenizer.json")) text["tokenizer"] = "tokenizer.json";
    out.push_back({"immich_clip", dir / "textual", text});
    return out;
  }
  if (is_file(dir / "modules.json")) {
    out.push_back({"sentence_transformers", dir, {{"name", name}, {"task", "text_embedding"},
                                                   {"format", "sentence_transformers"}}});
    return out;
  }
  if (is_file(dir / "config.json") &&
      (is_file(dir / "model.safetensors") || is_file(dir / "pytorch_model.bin")) && names_clip(read_json(dir / "config.json"))) {
    out.push_back({"hf_clip", dir, {{"name", name}, {"task", "clip_text"}, {"format", "hf_clip"}}});
    return out;
  }
  return out;
}

bool is_pack_dir(const fs::path& dir) {
  if (is_file(dir / "manifest.json")) return true;
  try {
    return !infer_packs(dir).empty();
  } catch (const std::exception&) {
    return true;  // a layout was recognised but is broken: load_packs reports why
  }
}

std::vector<model_manifest> load_packs(const fs::path& dir) {
  if (is_file(dir / "manifest.json")) return {load_manifest(dir)};
  auto inferred = infer_packs(dir);
  if (inferred.empty()) {
    fail(errc::not_found,
         "{} has no manifest.json and is none of the known layouts (WD tagger: model.onnx + selected_tags.csv; "
         "DeepDanbooru: project.json + .h5 + tags.txt; immich CLIP: visual/ + textual/; Hugging Face CLIPModel: "
         "config.json + model.safetensors; sentence-transformers: modules.json)",
         dir.string());
  }
  std::vector<model_manifest> out;
  for (const auto& p : inferred) out.push_back(manifest_from_json(p.manifest, p.dir));
  return out;
}

}  // namespace acg2vec::models