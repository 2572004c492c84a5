#pragma once
// A model pack is a directory holding the weights and manifest.json, which says what the model
// is for, how to feed it and how to read its outputs. See docs/model-packs.md for every field.

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace acg2vec::models {

enum class model_task { tagger, image_embedding, text_embedding, scores, classifier, clip_image, clip_text, upscaler };
enum class model_format { onnx, keras_h5, tfjs_layers, sentence_transformers, hf_clip, ncnn };

/// Danbooru categories plus the WD convention of 9 for ratings.
enum class tag_category { general = 0, artist = 1, copyright = 3, character = 4, meta = 5, rating = 9 };

struct tag_label {
  std::string name;
  tag_category category = tag_category::general;
};

/// Expose an intermediate value as the model's embedding (e.g. DeepDanbooru cut at add_43 = illust2vec).
struct cut_spec {
  std::string layer;
  std::string pool = "gap";  ///< "gap" (mean over H, W of NCHW) or "none"
};

/// One named output of a multi-head model (pix2score's bookmark/view/sanity heads).
struct output_spec {
  std::string name;                 ///< name in our API (e.g. "bookmarkPredict")
  std::string value;                ///< graph value to read; empty = the graph output at the same index
  std::vector<std::string> labels;  ///< optional class labels (bucket names)
  std::string tf_name;              ///< name in TF-Serving answers (pix2score, pix2score_1, ...)
};

struct model_manifest {
  std::string name;
  model_task task = model_task::tagger;
  model_format format = model_format::onnx;
  std::filesystem::path dir;   ///< the pack directory
  std::filesystem::path file;  ///< weights, absolute (ncnn: the .param file)
  std::filesystem::path weights;  ///< ncnn only: the .bin file (manifest "weights", default file with .bin)
  std::string base;            ///< another pack whose weights this one reuses (by name)
  nlohmann::json input;        ///< preprocessing, parsed by image/preprocess
  std::vector<tag_label> labels;
  std::map<tag_category, float> thresholds;  ///< per category; missing → default_threshold
  float default_threshold = 0.5f;
  bool rating_argmax = true;  ///< rating tags: only the best one is reported as chosen
  std::optional<cut_spec> cut;
  /// A classifier's penultimate layer offered as an image embedding: the registry adds a derived
  /// pack "<name>-embedding" (task image_embedding, base this pack, cut at this layer).
  std::optional<cut_spec> embedding;
  std::vector<output_spec> outputs;
  std::vector<std::string> aliases;  ///< other names (e.g. the seed's TF-Serving names)
  int max_batch = 8;
  int max_wait_ms = 2;
  nlohmann::json raw;
};

/// @brief Reads DIR/manifest.json (and the label file it names). Errors name the pack and field.
model_manifest load_manifest(const std::filesystem::path& dir);

/// @brief The manifest described by J for the pack directory DIR (file names are relative to it).
/// Unknown keys are an error naming the key and the pack.
model_manifest manifest_from_json(const nlohmann::json& j, const std::filesystem::path& dir);

/// @brief Reads a tag list: "lines" (one tag per line; DeepDanbooru tags.txt), "csv" (WD
/// selected_tags.csv: tag_id,name,category,count) or "json" (array of names or {name,category}).
std::vector<tag_label> load_labels(const std::filesystem::path& file, const std::string& format);

std::string_view to_string(model_task task) noexcept;
std::string_view to_string(model_format format) noexcept;
std::string_view to_string(tag_category category) noexcept;
tag_category parse_tag_category(std::string_view name);

}  // namespace acg2vec::models