#include "models/postprocess.h"

#include <algorithm>

#include "core/error.h"

namespace acg2vec::models {

using json = nlohmann::json;

namespace {
std::vector<float> as_floats(const at::Tensor& t) {
  auto c = t.detach().to(at::kFloat).contiguous().flatten();
  return {c.data_ptr<float>(), c.data_ptr<float>() + c.numel()};
}
}  // namespace

std::vector<scored_tag> label_scores(const model_manifest& m, const at::Tensor& scores) {
  auto v = as_floats(scores);
  if (v.size() != m.labels.size()) {
    fail(errc::internal, "model '{}' returned {} scores for {} labels", m.name, v.size(), m.labels.size());
  }
  std::vector<scored_tag> out;
  out.reserve(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out.push_back({m.labels[i].name, m.labels[i].category, v[i]});
  return out;
}

std::vector<std::string> tags_above(const model_manifest& m, const at::Tensor& scores, float threshold) {
  std::vector<std::string> out;
  for (auto& t : label_scores(m, scores)) {
    if (t.score >= threshold) out.push_back(std::move(t.name));
  }
  return out;
}

json tag_report(const model_manifest& m, const at::Tensor& scores, const tag_options& options) {
  auto tags = label_scores(m, scores);
  auto threshold_for = [&](tag_category c) {
    if (auto it = options.thresholds.find(c); it != options.thresholds.end()) return it->second;
    if (auto it = m.thresholds.find(c); it != m.thresholds.end()) return it->second;
    return m.default_threshold;
  };
  std::map<tag_category, std::vector<const scored_tag*>> groups;
  const scored_tag* best_rating = nullptr;
  for (const auto& t : tags) {
    if (t.category == tag_category::rating) {
      if (!best_rating || t.score > best_rating->score) best_rating = &t;
      groups[t.category].push_back(&t);
      continue;
    }
    if (options.include_all || t.score >= threshold_for(t.category)) groups[t.category].push_back(&t);
  }
  json by_category = json::object();
  json thresholds = json::object();
  for (auto& [cat, list] : groups) {
    std::stable_sort(list.begin(), list.end(), [](auto* a, auto* b) { return a->score > b->score; });
    json arr = json::array();
    for (const auto* t : list) arr.push_back({{"name", t->name}, {"score", t->score}});
    by_category[std::string(to_string(cat))] = arr;
  }
  for (auto cat : {tag_category::general, tag_category::character, tag_category::copyright, tag_category::artist,
                   tag_category::meta}) {
    thresholds[std::string(to_string(cat))] = threshold_for(cat);
  }
  json out{{"model", m.name}, {"tags", by_category}, {"thresholds", thresholds}};
  if (best_rating) {
    if (m.rating_argmax) {
      out["rating"] = {{"name", best_rating->name}, {"score", best_rating->score}};
    } else {
      thresholds["rating"] = threshold_for(tag_category::rating);
    }
  }
  return out;
}

json class_report(const model_manifest& m, const at::Tensor& probabilities) {
  auto v = as_floats(probabilities);
  if (!m.labels.empty() && v.size() != m.labels.size()) {
    fail(errc::internal, "model '{}' returned {} classes for {} labels", m.name, v.size(), m.labels.size());
  }
  std::vector<std::size_t> order(v.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](auto a, auto b) { return v[a] > v[b]; });
  json classes = json::array();
  for (auto i : order) {
    classes.push_back({{"name", m.labels.empty() ? std::to_string(i) : m.labels[i].name}, {"score", v[i]}});
  }
  return classes;
}

json to_json_array(const at::Tensor& t) {
  auto v = as_floats(t);
  return json(v);
}

json to_nested_json(const at::Tensor& t) {
  if (t.dim() == 0) {
    if (t.is_floating_point()) return t.item<double>();
    if (t.scalar_type() == at::kBool) return t.item<bool>();
    return t.item<std::int64_t>();
  }
  json arr = json::array();
  if (t.dim() == 1 && t.is_floating_point()) {
    auto c = t.to(at::kFloat).contiguous();
    const float* p = c.data_ptr<float>();
    for (std::int64_t i = 0; i < c.numel(); ++i) arr.push_back(p[i]);
    return arr;
  }
  for (std::int64_t i = 0; i < t.size(0); ++i) arr.push_back(to_nested_json(t[i]));
  return arr;
}

at::Tensor tensor_from_json(const json& j, at::ScalarType dtype) {
  std::vector<std::int64_t> shape;
  const json* cur = &j;
  while (cur->is_array()) {
    if (cur->empty()) fail(errc::bad_parameter, "tensor has an empty dimension");
    shape.push_back(static_cast<std::int64_t>(cur->size()));
    cur = &(*cur)[0];
  }
  std::int64_t total = 1;
  for (auto d : shape) {
    total *= d;
    if (total > (std::int64_t{1} << 28)) fail(errc::too_large, "tensor has more than 2^28 elements");
  }
  std::vector<double> flat;
  flat.reserve(static_cast<std::size_t>(total));
  std::function<void(const json&, std::size_t)> walk = [&](const json& node, std::size_t depth) {
    if (depth == shape.size()) {
      if (!node.is_number() && !node.is_boolean()) fail(errc::bad_parameter, "tensor element is not a number");
      flat.push_back(node.is_boolean() ? (node.get<bool>() ? 1.0 : 0.0) : node.get<double>());
      return;
    }
    if (!node.is_array() || static_cast<std::int64_t>(node.size()) != shape[depth]) {
      fail(errc::bad_parameter, "ragged tensor: dimension {} should have {} entries", depth, shape[depth]);
    }
    for (const auto& e : node) walk(e, depth + 1);
  };
  walk(j, 0);
  auto t = at::from_blob(flat.data(), shape, at::kDouble).clone();
  return t.to(dtype);
}

}  // namespace acg2vec::models