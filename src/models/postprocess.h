#pragma once
// Turning raw model outputs into answers: tags with scores and thresholds per category,
// class probabilities, embeddings. Pure functions over the manifest and a score tensor.

#include <ATen/ATen.h>

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "models/manifest.h"

namespace acg2vec::models {

struct scored_tag {
  std::string name;
  tag_category category = tag_category::general;
  float score = 0;
};

struct tag_options {
  std::map<tag_category, float> thresholds;  ///< overrides of the manifest's thresholds
  bool include_all = false;                  ///< every tag with its score, not only those kept
};

/// @brief Scores (one per label) → tags in label order with their categories.
std::vector<scored_tag> label_scores(const model_manifest& m, const at::Tensor& scores);

/// @brief The seed's /images/labelsByDeepDanbooru answer: names with score ≥ threshold, label order.
std::vector<std::string> tags_above(const model_manifest& m, const at::Tensor& scores, float threshold = 0.5f);

/// @brief The /v1/tag answer: tags grouped by category, sorted by score, thresholds applied per
/// category, the rating chosen by argmax when the manifest says so.
nlohmann::json tag_report(const model_manifest& m, const at::Tensor& scores, const tag_options& options);

/// @brief Class probabilities sorted by score: [{"name":..,"score":..}].
nlohmann::json class_report(const model_manifest& m, const at::Tensor& probabilities);

/// @brief A float tensor as a JSON array (flattened).
nlohmann::json to_json_array(const at::Tensor& t);

/// @brief A tensor as nested JSON arrays following its shape (TF-Serving style).
nlohmann::json to_nested_json(const at::Tensor& t);

/// @brief Nested JSON numbers → a tensor of the given dtype; shape inferred, ragged → bad_parameter.
at::Tensor tensor_from_json(const nlohmann::json& j, at::ScalarType dtype);

}  // namespace acg2vec::models