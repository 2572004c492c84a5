// One file because one translator walks the Keras layer list with the graph being built and the
// weight table in hand; each layer family is one method of it (Conv, Dense, BatchNorm, pooling,
// activations, merges, reshapes), and they share the NHWC/NCHW views.
#include "runtime/keras_layers.h"

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <optional>
#include <set>
#include <unordered_map>
#include <utility>

#include "core/error.h"
#include "core/log.h"

namespace acg2vec::runtime {

using nlohmann::json;

std::string keras_weight_short_name(std::string_view full_name) {
  auto slash = full_name.rfind('/');
  std::string_view s = slash == std::string_view::npos ? full_name : full_name.substr(slash + 1);
  auto colon = s.rfind(':');
  if (colon != std::string_view::npos) s = s.substr(0, colon);
  return std::string(s);
}

std::string keras_weight_owner(std::string_view full_name) {
  auto last = full_name.rfind('/');
  if (last == std::string_view::npos) return {};
  std::string_view head = full_name.substr(0, last);
  auto prev = head.rfind('/');
  return std::string(prev == std::string_view::npos ? head : head.substr(prev + 1));
}

namespace {

std::string shape_str(const std::vector<std::int64_t>& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i) out += ",";
    out += s[i] < 0 ? std::string("?") : std::to_string(s[i]);
  }
  return out + "]";
}

std::vector<std::int64_t> tensor_shape(const at::Tensor& t) { return {t.sizes().begin(), t.sizes().end()}; }

// Keras spells 2-D hyper-parameters as an int or a pair.
std::vector<std::int64_t> pair_param(const json& cfg, const char* key, std::vector<std::int64_t> fallback) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return fallback;
  if (it->is_number()) return {it->get<std::int64_t>(), it->get<std::int64_t>()};
  auto pair = it->get<std::vector<std::int64_t>>();
  // Callers index [0] and [1]: anything but a pair is a malformed config, not an overread.
  if (pair.size() != 2) fail(errc::bad_parameter, "'{}' must be an int or a pair, not {} values", key, pair.size());
  return pair;
}

// Output extent and (begin, end) padding of one spatial dimension, TF semantics: 'same' puts the
// odd extra padding at the end (bottom/right), 'valid' pads nothing.
struct window_dim {
  std::int64_t out;
  std::int64_t pad_begin;
  std::int64_t pad_end;
};

window_dim window(std::int64_t in, std::int64_t k, std::int64_t s, std::int64_t d, bool same) {
  // Sizes come from the model file; a zero stride would divide by zero below.
  if (k < 1 || s < 1 || d < 1 || k > (std::int64_t{1} << 20) || d > (std::int64_t{1} << 20)) {
    fail(errc::bad_parameter, "window of kernel {}, stride {}, dilation {} is invalid", k, s, d);
  }
  const std::int64_t effective = (k - 1) * d + 1;
  if (in < 0) return {-1, 0, 0};
  if (!same) return {(in - effective) / s + 1, 0, 0};
  const std::int64_t out = (in + s - 1) / s;
  const std::int64_t total = std::max<std::int64_t>((out - 1) * s + effective - in, 0);
  return {out, total / 2, total - total / 2};
}

class translator {
 public:
  translator(keras_weights weights, const std::string& source) : weights_(std::move(weights)), source_(source) {}

  graph run(const json& model) {
    g_.name = model.contains("config") && model["config"].is_object() ? model["config"].value("name", "") : "";
    auto outputs = build(model, {});
    for (const auto& [name, t] : outputs) {
      g_.outputs.push_back({t.keras_value, at::kFloat, t.shape, true, {}});
    }
    return std::move(g_);
  }

 private:
  // A Keras tensor: `value` is what the IR computes with (NCHW for rank 4), `keras_value` the same
  // data in Keras layout, `shape` the Keras shape with -1 for unknown dimensions.
  struct tensor {
    std::string value;
    std::string keras_value;
    std::vector<std::int64_t> shape;
  };
  using named_tensors = std::vector<std::pair<std::string, tensor>>;

  keras_weights weights_;  // entries are released as layers consume them, to bound peak memory
  const std::string& source_;
  graph g_;
  std::set<std::string> used_;
  std::unordered_map<std::string, std::size_t> producer_;
  std::string layer_;  // the layer being translated, for names and messages

  [[noreturn]] void bad(const std::string& what) const {
    fail(errc::bad_parameter, "{}: layer '{}': {}", source_, layer_, what);
  }

  std::string fresh(const std::string& base) {
    std::string name = base;
    for (int i = 1; used_.count(name); ++i) name = base + "_" + std::to_string(i);
    used_.insert(name);
    return name;
  }

  std::string node(const std::string& op, std::vector<std::string> inputs,
                   std::map<std::string, attribute> attrs = {}, std::string out = {}) {
    if (out.empty()) out = fresh(layer_ + "/" + op);
    else used_.insert(out);
    runtime::node n;
    n.name = fresh(layer_ + "/" + op + "#node");
    n.op_type = op;
    n.inputs = std::move(inputs);
    n.outputs = {out};
    n.attributes = std::move(attrs);
    producer_[out] = g_.nodes.size();
    g_.nodes.push_back(std::move(n));
    return out;
  }

  std::string constant(const std::string& what, at::Tensor value) {
    auto name = fresh(layer_ + "/" + what);
    g_.initializers[name] = value.contiguous();
    return name;
  }
  std::string scalar(const std::string& what, double v) {
    return constant(what, at::scalar_tensor(to_float(v, what), at::kFloat));
  }

  /// A layer constant from model.json as float32: NaN, infinities and values beyond float32's
  /// range are a malformed model, not something to convert (the conversion is undefined).
  static float to_float(double v, const std::string& what) {
    if (!std::isfinite(v) || std::abs(v) > static_cast<double>(std::numeric_limits<float>::max())) {
      fail(errc::bad_parameter, "layer constant {} = {} is not a finite float32", what, v);
    }
    return static_cast<float>(v);
  }
  std::string ints(const std::string& what, std::vector<std::int64_t> v) {
    return constant(what, at::tensor(v, at::kLong));
  }

  // Weights of the current layer, by short name, falling back to file order when a file uses
  // other names. Shapes are checked here so a mismatched file fails at load time.
  std::vector<at::Tensor> take_weights(const std::vector<std::string>& names,
                                       const std::vector<std::vector<std::int64_t>>& shapes) {
    auto it = weights_.find(layer_);
    if (it == weights_.end() || it->second.empty()) bad(fmt::format("weights missing (expected {})", fmt::join(names, ", ")));
    const auto& have = it->second;
    std::vector<at::Tensor> out;
    for (const auto& n : names) {
      auto w = std::find_if(have.begin(), have.end(), [&](const keras_weight& k) { return k.name == n; });
      if (w == have.end()) break;
      out.push_back(w->value);
    }
    if (out.size() != names.size()) {
      out.clear();
      if (have.size() != names.size()) {
        std::vector<std::string> got;
        for (const auto& k : have) got.push_back(k.name);
        bad(fmt::format("expected weights [{}], the file has [{}]", fmt::join(names, ", "), fmt::join(got, ", ")));
      }
      for (const auto& k : have) out.push_back(k.value);
    }
    for (std::size_t i = 0; i < names.size(); ++i) {
      if (tensor_shape(out[i]) != shapes[i]) {
        bad(fmt::format("weight '{}' has shape {}, the layer needs {}", names[i], shape_str(tensor_shape(out[i])),
                        shape_str(shapes[i])));
      }
      out[i] = out[i].to(at::kFloat).contiguous();
    }
    weights_.erase(it);
    return out;
  }

  at::Tensor peek_weight(const std::string& name) const {
    auto it = weights_.find(layer_);
    if (it == weights_.end()) return {};
    for (const auto& w : it->second) {
      if (w.name == name) return w.value;
    }
    return {};
  }

  static std::int64_t internal_axis(std::int64_t keras_axis, std::size_t rank) {
    if (keras_axis < 0) keras_axis += static_cast<std::int64_t>(rank);
    if (rank != 4) return keras_axis;
    static constexpr std::int64_t map[] = {0, 2, 3, 1};
    return map[keras_axis];
  }

  std::int64_t channels(const tensor& x) {
    auto c = x.shape.back();
    if (c < 0) bad("the channel dimension of the input is unknown");
    return c;
  }

  void require_rank(const tensor& x, std::size_t rank) {
    if (x.shape.size() != rank) bad(fmt::format("expects a rank-{} input, got shape {}", rank, shape_str(x.shape)));
  }

  // ---- activations -----------------------------------------------------------------------

  std::string activation(const std::string& name, const std::string& x, std::size_t rank) {
    if (name == "linear" || name.empty()) return x;
    if (name == "relu") return node("Relu", {x});
    if (name == "relu6") return node("Clip", {x, scalar("min", 0.f), scalar("max", 6.f)});
    if (name == "sigmoid") return node("Sigmoid", {x});
    if (name == "tanh") return node("Tanh", {x});
    if (name == "softmax") return node("Softmax", {x}, {{"axis", internal_axis(-1, rank)}});
    if (name == "swish" || name == "silu") return node("Mul", {x, node("Sigmoid", {x})});
    if (name == "elu") return node("Elu", {x}, {{"alpha", 1.0}});
    if (name == "selu") {
      return node("Selu", {x}, {{"alpha", 1.6732632423543772}, {"gamma", 1.0507009873554805}});
    }
    if (name == "softplus") return node("Softplus", {x});
    if (name == "softsign") return node("Softsign", {x});
    if (name == "exponential") return node("Exp", {x});
    if (name == "hard_sigmoid" || name == "hardSigmoid") return node("HardSigmoid", {x}, {{"alpha", 0.2}, {"beta", 0.5}});
    fail(errc::not_implemented, "{}: layer '{}': unsupported activation '{}'", source_, layer_, name);
  }

  static std::string activation_name(const json& cfg) {
    auto it = cfg.find("activation");
    if (it == cfg.end() || it->is_null()) return "linear";
    if (it->is_string()) return it->get<std::string>();
    // Keras 3 may serialise a registered activation as {"class_name": ..., "config": {"name": ...}}.
    if (it->is_object()) {
      if (it->contains("config") && (*it)["config"].is_object() && (*it)["config"].contains("name")) {
        return (*it)["config"]["name"].get<std::string>();
      }
      return it->value("class_name", "linear");
    }
    return "linear";
  }

  // ---- layers ----------------------------------------------------------------------------

  tensor conv2d(const json& cfg, const tensor& x, bool depthwise) {
    require_rank(x, 4);
    const auto k = pair_param(cfg, "kernel_size", {1, 1});
    const auto s = pair_param(cfg, "strides", {1, 1});
    const auto d = pair_param(cfg, "dilation_rate", {1, 1});
    const std::string padding = cfg.value("padding", "valid");
    if (padding != "same" && padding != "valid") bad("unsupported padding '" + padding + "'");
    if (cfg.value("data_format", "channels_last") != "channels_last") bad("only channels_last is supported");
    const bool same = padding == "same";
    const bool use_bias = cfg.value("use_bias", true);
    const std::int64_t cin = channels(x);
    std::int64_t cout = 0;
    std::int64_t groups = 1;
    at::Tensor kernel;
    at::Tensor bias;
    if (depthwise) {
      const std::int64_t mult = cfg.value("depth_multiplier", 1);
      cout = cin * mult;
      groups = cin;
      std::vector<std::string> names = {"depthwise_kernel"};
      std::vector<std::vector<std::int64_t>> shapes = {{k[0], k[1], cin, mult}};
      if (use_bias) names.push_back("bias"), shapes.push_back({cout});
      auto w = take_weights(names, shapes);
      // Keras orders depthwise outputs channel-major: output c*mult + m reads input channel c.
      kernel = w[0].reshape({k[0], k[1], cout}).permute({2, 0, 1}).unsqueeze(1);
      if (use_bias) bias = w[1];
    } else {
      cout = cfg.at("filters").get<std::int64_t>();
      groups = cfg.value("groups", 1);
      if (groups < 1 || cin % groups) bad("input channels are not divisible by groups");
      std::vector<std::string> names = {"kernel"};
      std::vector<std::vector<std::int64_t>> shapes = {{k[0], k[1], cin / groups, cout}};
      if (use_bias) names.push_back("bias"), shapes.push_back({cout});
      auto w = take_weights(names, shapes);
      kernel = w[0].permute({3, 2, 0, 1});  // HWIO -> OIHW
      if (use_bias) bias = w[1];
    }
    const auto h = window(x.shape[1], k[0], s[0], d[0], same);
    const auto wd = window(x.shape[2], k[1], s[1], d[1], same);
    std::map<std::string, attribute> attrs = {{"kernel_shape", std::vector<std::int64_t>{k[0], k[1]}},
                                              {"strides", s},
                                              {"dilations", d},
                                              {"group", groups}};
    set_pads(attrs, same, x, h, wd);
    std::vector<std::string> inputs = {x.value, constant(depthwise ? "depthwise_kernel" : "kernel", kernel)};
    if (use_bias) inputs.push_back(constant("bias", bias));
    auto y = node("Conv", inputs, attrs);
    y = activation(activation_name(cfg), y, 4);
    return {y, {}, {x.shape[0], h.out, wd.out, cout}};
  }

  // Static spatial sizes give explicit (possibly asymmetric) pads; unknown sizes fall back to
  // ONNX SAME_UPPER, which is TF's rule too.
  void set_pads(std::map<std::string, attribute>& attrs, bool same, const tensor& x, const window_dim& h,
                const window_dim& w) {
    if (same && (x.shape[1] < 0 || x.shape[2] < 0)) {
      attrs["auto_pad"] = std::string("SAME_UPPER");
      return;
    }
    attrs["pads"] = std::vector<std::int64_t>{h.pad_begin, w.pad_begin, h.pad_end, w.pad_end};
  }

  tensor pool2d(const json& cfg, const tensor& x, bool max) {
    require_rank(x, 4);
    const auto k = pair_param(cfg, "pool_size", {2, 2});
    const auto s = pair_param(cfg, "strides", k);
    const std::string padding = cfg.value("padding", "valid");
    if (padding != "same" && padding != "valid") bad("unsupported padding '" + padding + "'");
    if (cfg.value("data_format", "channels_last") != "channels_last") bad("only channels_last is supported");
    const bool same = padding == "same";
    const auto h = window(x.shape[1], k[0], s[0], 1, same);
    const auto w = window(x.shape[2], k[1], s[1], 1, same);
    std::map<std::string, attribute> attrs = {{"kernel_shape", k}, {"strides", s}};
    set_pads(attrs, same, x, h, w);
    // TF averages over the valid (unpadded) cells only.
    if (!max) attrs["count_include_pad"] = std::int64_t{0};
    auto y = node(max ? "MaxPool" : "AveragePool", {x.value}, attrs);
    return {y, {}, {x.shape[0], h.out, w.out, x.shape[3]}};
  }

  tensor zero_padding(const json& cfg, const tensor& x) {
    require_rank(x, 4);
    std::int64_t t = 1, b = 1, l = 1, r = 1;
    auto p = cfg.find("padding");
    if (p != cfg.end()) {
      if (p->is_number()) {
        t = b = l = r = p->get<std::int64_t>();
      } else if (p->size() == 2 && (*p)[0].is_number()) {
        t = b = (*p)[0].get<std::int64_t>();
        l = r = (*p)[1].get<std::int64_t>();
      } else if (p->size() == 2) {
        t = (*p)[0][0].get<std::int64_t>();
        b = (*p)[0][1].get<std::int64_t>();
        l = (*p)[1][0].get<std::int64_t>();
        r = (*p)[1][1].get<std::int64_t>();
      } else {
        bad("unreadable padding");
      }
    }
    auto y = node("Pad", {x.value, ints("pads", {0, 0, t, l, 0, 0, b, r})}, {{"mode", std::string("constant")}});
    auto grow = [](std::int64_t v, std::int64_t by) { return v < 0 ? v : v + by; };
    return {y, {}, {x.shape[0], grow(x.shape[1], t + b), grow(x.shape[2], l + r), x.shape[3]}};
  }

  tensor batch_norm(const json& cfg, const tensor& x) {
    std::int64_t axis = -1;
    if (cfg.contains("axis")) {
      const auto& a = cfg["axis"];
      axis = a.is_array() ? (a.size() == 1 ? a[0].get<std::int64_t>() : 99) : a.get<std::int64_t>();
    }
    const auto rank = static_cast<std::int64_t>(x.shape.size());
    if (axis < 0) axis += rank;
    if (axis != rank - 1) bad("only normalisation over the last (channel) axis is supported");
    const std::int64_t c = channels(x);
    const bool center = cfg.value("center", true);
    const bool scale = cfg.value("scale", true);
    std::vector<std::string> names;
    if (scale) names.push_back("gamma");
    if (center) names.push_back("beta");
    names.push_back("moving_mean");
    names.push_back("moving_variance");
    auto w = take_weights(names, std::vector<std::vector<std::int64_t>>(names.size(), {c}));
    std::size_t i = 0;
    at::Tensor gamma = scale ? w[i++] : at::ones({c}, at::kFloat);
    at::Tensor beta = center ? w[i++] : at::zeros({c}, at::kFloat);
    at::Tensor mean = w[i++];
    at::Tensor var = w[i++];
    const double eps = cfg.value("epsilon", 1e-3);
    std::string y;
    if (rank == 4 || rank == 2) {
      y = node("BatchNormalization",
               {x.value, constant("gamma", gamma), constant("beta", beta), constant("moving_mean", mean),
                constant("moving_variance", var)},
               {{"epsilon", eps}});
    } else {
      // Channel-last data of another rank: the folded affine form broadcasts over the last axis.
      auto mul = gamma / at::sqrt(var + eps);
      auto add = beta - mean * mul;
      y = node("Add", {node("Mul", {x.value, constant("scale", mul)}), constant("shift", add)});
    }
    return {y, {}, x.shape};
  }

  tensor relu_layer(const json& cfg, const tensor& x) {
    const double slope = cfg.contains("negative_slope") && !cfg["negative_slope"].is_null()
                             ? cfg["negative_slope"].get<double>()
                             : 0.0;
    const double threshold =
        cfg.contains("threshold") && !cfg["threshold"].is_null() ? cfg["threshold"].get<double>() : 0.0;
    const bool has_max = cfg.contains("max_value") && !cfg["max_value"].is_null();
    const double max_value = has_max ? cfg["max_value"].get<double>() : 0.0;
    std::string y;
    if (threshold == 0.0 && slope == 0.0 && has_max) {
      return {node("Clip", {x.value, scalar("min", 0.f), scalar("max", max_value)}), {}, x.shape};
    }
    if (threshold == 0.0) {
      y = slope == 0.0 ? node("Relu", {x.value}) : node("LeakyRelu", {x.value}, {{"alpha", slope}});
    } else {
      // f(x) = x for x >= threshold, slope * (x - threshold) below it.
      auto thr = scalar("threshold", threshold);
      auto below = node("Mul", {node("Sub", {x.value, thr}), scalar("negative_slope", slope)});
      y = node("Where", {node("GreaterOrEqual", {x.value, thr}), x.value, below});
    }
    if (has_max) {
      y = node("Clip", {y, scalar("min", std::numeric_limits<float>::lowest()), scalar("max", max_value)});
    }
    return {y, {}, x.shape};
  }

  tensor dense(const json& cfg, const tensor& x) {
    const std::int64_t units = cfg.at("units").get<std::int64_t>();
    const std::int64_t in = channels(x);
    const bool use_bias = cfg.value("use_bias", true);
    std::vector<std::string> names = {"kernel"};
    std::vector<std::vector<std::int64_t>> shapes = {{in, units}};
    if (use_bias) names.push_back("bias"), shapes.push_back({units});
    auto w = take_weights(names, shapes);
    auto out_shape = x.shape;
    out_shape.back() = units;
    std::string y;
    if (x.shape.size() == 2) {
      std::vector<std::string> inputs = {x.value, constant("kernel", w[0])};
      if (use_bias) inputs.push_back(constant("bias", w[1]));
      y = node("Gemm", inputs);
      y = activation(activation_name(cfg), y, 2);
      return {y, {}, out_shape};
    }
    // Dense on higher ranks acts on the last Keras axis.
    y = node("MatMul", {x.keras_value, constant("kernel", w[0])});
    if (use_bias) y = node("Add", {y, constant("bias", w[1])});
    y = activation(activation_name(cfg), y, 2);  // last axis in Keras layout
    if (out_shape.size() == 4) y = node("Transpose", {y}, {{"perm", std::vector<std::int64_t>{0, 3, 1, 2}}});
    return {y, {}, out_shape};
  }

  tensor flatten(const tensor& x) {
    std::int64_t n = 1;
    for (std::size_t i = 1; i < x.shape.size(); ++i) n = (x.shape[i] < 0 || n < 0) ? -1 : n * x.shape[i];
    // Keras flattens in NHWC order, so flatten the Keras-layout view, not the NCHW value.
    auto y = node("Flatten", {x.keras_value}, {{"axis", std::int64_t{1}}});
    return {y, {}, {x.shape[0], n}};
  }

  tensor reshape(const json& cfg, const tensor& x) {
    auto target = cfg.at("target_shape").get<std::vector<std::int64_t>>();
    std::vector<std::int64_t> spec = {0};  // 0 copies the batch dimension
    spec.insert(spec.end(), target.begin(), target.end());
    std::vector<std::int64_t> shape = {x.shape[0]};
    std::int64_t known = 1;
    bool all_known = true;
    for (std::size_t i = 1; i < x.shape.size(); ++i) all_known = all_known && x.shape[i] >= 0, known *= x.shape[i];
    std::int64_t prod = 1;
    for (auto t : target) prod *= t < 0 ? 1 : t;
    for (auto t : target) shape.push_back(t < 0 ? (all_known ? known / prod : -1) : t);
    auto y = node("Reshape", {x.keras_value, ints("shape", spec)});
    if (shape.size() == 4) y = node("Transpose", {y}, {{"perm", std::vector<std::int64_t>{0, 3, 1, 2}}});
    return {y, {}, shape};
  }

  tensor rescaling(const json& cfg, const tensor& x) {
    auto param = [&](const char* key, double fallback) -> at::Tensor {
      auto it = cfg.find(key);
      if (it == cfg.end() || it->is_null()) return at::scalar_tensor(fallback, at::kFloat);
      if (it->is_number()) return at::scalar_tensor(to_float(it->get<double>(), key), at::kFloat);
      std::vector<float> values;
      for (double d : it->get<std::vector<double>>()) values.push_back(to_float(d, key));
      auto v = at::tensor(values, at::kFloat);
      // Per-channel values broadcast over the last Keras axis, i.e. axis 1 of NCHW.
      return x.shape.size() == 4 ? v.reshape({-1, 1, 1}) : v;
    };
    auto y = node("Mul", {x.value, constant("scale", param("scale", 1.0))});
    y = node("Add", {y, constant("offset", param("offset", 0.0))});
    return {y, {}, x.shape};
  }

  tensor merge(const std::string& cls, const json& cfg, const std::vector<tensor>& xs) {
    if (xs.size() < 2) bad("a merge layer needs at least two inputs");
    for (const auto& x : xs) {
      if (x.shape.size() != xs[0].shape.size()) bad("merge inputs have different ranks");
    }
    if (cls == "Concatenate") {
      const auto rank = xs[0].shape.size();
      std::int64_t axis = cfg.value("axis", -1);
      if (axis < 0) axis += static_cast<std::int64_t>(rank);
      std::vector<std::string> inputs;
      auto shape = xs[0].shape;
      shape[axis] = 0;
      for (const auto& x : xs) {
        inputs.push_back(x.value);
        shape[axis] = (shape[axis] < 0 || x.shape[axis] < 0) ? -1 : shape[axis] + x.shape[axis];
      }
      return {node("Concat", inputs, {{"axis", internal_axis(axis, rank)}}), {}, shape};
    }
    auto shape = xs[0].shape;
    for (const auto& x : xs) {
      for (std::size_t i = 1; i < shape.size(); ++i) {
        if (shape[i] >= 0 && x.shape[i] >= 0 && shape[i] != x.shape[i] && shape[i] != 1 && x.shape[i] != 1) {
          bad(fmt::format("inputs of shapes {} and {} do not match", shape_str(shape), shape_str(x.shape)));
        }
        if (shape[i] == 1) shape[i] = x.shape[i];
      }
    }
    if (cls == "Subtract") {
      if (xs.size() != 2) bad("Subtract takes exactly two inputs");
      return {node("Sub", {xs[0].value, xs[1].value}), {}, shape};
    }
    std::string op = cls == "Add" || cls == "Average" ? "Add" : cls == "Multiply" ? "Mul" : cls == "Maximum" ? "Max" : "Min";
    std::string y = xs[0].value;
    for (std::size_t i = 1; i < xs.size(); ++i) y = node(op, {y, xs[i].value});
    if (cls == "Average") y = node("Mul", {y, scalar("inverse_count", 1.0f / static_cast<float>(xs.size()))});
    return {y, {}, shape};
  }

  tensor global_pool(const json& cfg, const tensor& x, bool max) {
    require_rank(x, 4);
    auto y = node(max ? "GlobalMaxPool" : "GlobalAveragePool", {x.value});
    if (cfg.value("keepdims", false)) return {y, {}, {x.shape[0], 1, 1, x.shape[3]}};
    return {node("Flatten", {y}, {{"axis", std::int64_t{1}}}), {}, {x.shape[0], x.shape[3]}};
  }

  tensor softmax_layer(const json& cfg, const tensor& x) {
    std::int64_t axis = -1;
    if (cfg.contains("axis")) axis = cfg["axis"].is_array() ? cfg["axis"][0].get<std::int64_t>() : cfg["axis"].get<std::int64_t>();
    return {node("Softmax", {x.value}, {{"axis", internal_axis(axis, x.shape.size())}}), {}, x.shape};
  }

  tensor separable_conv2d(const json& cfg, const tensor& x) {
    require_rank(x, 4);
    const auto k = pair_param(cfg, "kernel_size", {1, 1});
    const auto s = pair_param(cfg, "strides", {1, 1});
    const auto d = pair_param(cfg, "dilation_rate", {1, 1});
    const std::string padding = cfg.value("padding", "valid");
    if (padding != "same" && padding != "valid") bad("unsupported padding '" + padding + "'");
    const bool same = padding == "same";
    const bool use_bias = cfg.value("use_bias", true);
    const std::int64_t cin = channels(x);
    std::int64_t mult = cfg.value("depth_multiplier", 1);
    if (!cfg.contains("depth_multiplier")) {
      // tfjs leaves depth_multiplier out of SeparableConv2D configs; the kernel shape has it.
      if (auto dk = peek_weight("depthwise_kernel"); dk.defined() && dk.dim() == 4) mult = dk.size(3);
    }
    const std::int64_t filters = cfg.at("filters").get<std::int64_t>();
    std::vector<std::string> names = {"depthwise_kernel", "pointwise_kernel"};
    std::vector<std::vector<std::int64_t>> shapes = {{k[0], k[1], cin, mult}, {1, 1, cin * mult, filters}};
    if (use_bias) names.push_back("bias"), shapes.push_back({filters});
    auto w = take_weights(names, shapes);
    const auto h = window(x.shape[1], k[0], s[0], d[0], same);
    const auto wd = window(x.shape[2], k[1], s[1], d[1], same);
    std::map<std::string, attribute> attrs = {{"kernel_shape", k}, {"strides", s}, {"dilations", d}, {"group", cin}};
    set_pads(attrs, same, x, h, wd);
    auto dw = w[0].reshape({k[0], k[1], cin * mult}).permute({2, 0, 1}).unsqueeze(1);
    auto y = node("Conv", {x.value, constant("depthwise_kernel", dw)}, attrs);
    std::vector<std::string> inputs = {y, constant("pointwise_kernel", w[1].permute({3, 2, 0, 1}))};
    if (use_bias) inputs.push_back(constant("bias", w[2]));
    y = node("Conv", inputs, {{"kernel_shape", std::vector<std::int64_t>{1, 1}}});
    y = activation(activation_name(cfg), y, 4);
    return {y, {}, {x.shape[0], h.out, wd.out, filters}};
  }

  tensor upsampling(const json& cfg, const tensor& x) {
    require_rank(x, 4);
    const auto size = pair_param(cfg, "size", {2, 2});
    const std::string interpolation = cfg.value("interpolation", "nearest");
    // Keras' bilinear upsampling changed sampling grids between versions; only nearest is exact.
    if (interpolation != "nearest") bad("only nearest UpSampling2D is supported, not '" + interpolation + "'");
    auto scales = constant("scales", at::tensor({1.0, 1.0, static_cast<double>(size[0]), static_cast<double>(size[1])},
                                               at::kDouble).to(at::kFloat));
    auto y = node("Resize", {x.value, "", scales},
                  {{"mode", std::string("nearest")},
                   {"coordinate_transformation_mode", std::string("asymmetric")},
                   {"nearest_mode", std::string("floor")}});
    auto grow = [](std::int64_t v, std::int64_t by) { return v < 0 ? v : v * by; };
    return {y, {}, {x.shape[0], grow(x.shape[1], size[0]), grow(x.shape[2], size[1]), x.shape[3]}};
  }

  tensor cropping(const json& cfg, const tensor& x) {
    require_rank(x, 4);
    std::int64_t t = 0, b = 0, l = 0, r = 0;
    const auto& c = cfg.at("cropping");
    if (c.is_number()) {
      t = b = l = r = c.get<std::int64_t>();
    } else if (c.size() == 2 && c[0].is_number()) {
      t = b = c[0].get<std::int64_t>();
      l = r = c[1].get<std::int64_t>();
    } else {
      t = c[0][0].get<std::int64_t>(), b = c[0][1].get<std::int64_t>();
      l = c[1][0].get<std::int64_t>(), r = c[1][1].get<std::int64_t>();
    }
    const auto end = [](std::int64_t crop) { return crop > 0 ? -crop : std::numeric_limits<std::int64_t>::max(); };
    auto y = node("Slice", {x.value, ints("starts", {t, l}), ints("ends", {end(b), end(r)}), ints("axes", {2, 3})});
    auto shrink = [](std::int64_t v, std::int64_t by) { return v < 0 ? v : v - by; };
    return {y, {}, {x.shape[0], shrink(x.shape[1], t + b), shrink(x.shape[2], l + r), x.shape[3]}};
  }

  tensor prelu(const json& cfg, const tensor& x) {
    std::vector<std::int64_t> alpha_shape(x.shape.begin() + 1, x.shape.end());
    if (cfg.contains("shared_axes") && !cfg["shared_axes"].is_null()) {
      const auto& axes = cfg["shared_axes"];
      for (const auto& a : axes.is_array() ? axes : json::array({axes})) {
        const auto axis = a.get<std::int64_t>();
        if (axis < 1 || axis > static_cast<std::int64_t>(alpha_shape.size())) bad("PReLU shared axis out of range");
        alpha_shape[static_cast<std::size_t>(axis - 1)] = 1;
      }
    }
    for (auto d : alpha_shape) {
      if (d < 0) bad("PReLU over an axis of unknown size");
    }
    auto alpha = take_weights({"alpha"}, {alpha_shape})[0];
    if (x.shape.size() == 4) alpha = alpha.permute({2, 0, 1});
    return {node("PRelu", {x.value, constant("alpha", alpha)}), {}, x.shape};
  }

  tensor permute(const json& cfg, const tensor& x) {
    std::vector<std::int64_t> perm = {0};
    auto shape = x.shape;
    for (const auto& d : cfg.at("dims")) {
      perm.push_back(d.get<std::int64_t>());
      if (perm.back() < 1 || perm.back() >= static_cast<std::int64_t>(x.shape.size())) bad("permutation out of range");
      shape[perm.size() - 1] = x.shape[perm.back()];
    }
    if (perm.size() != x.shape.size()) bad("permutation does not cover every axis");
    auto y = node("Transpose", {x.keras_value}, {{"perm", perm}});
    if (shape.size() == 4) y = node("Transpose", {y}, {{"perm", std::vector<std::int64_t>{0, 3, 1, 2}}});
    return {y, {}, shape};
  }

  tensor layer_norm(const json& cfg, const tensor& x) {
    const auto rank = static_cast<std::int64_t>(x.shape.size());
    std::vector<std::int64_t> axes;
    const auto& a = cfg.contains("axis") ? cfg["axis"] : json(-1);
    for (const auto& v : a.is_array() ? a : json::array({a})) {
      auto axis = v.get<std::int64_t>();
      axes.push_back(axis < 0 ? axis + rank : axis);
    }
    std::sort(axes.begin(), axes.end());
    // ONNX normalises over the trailing axes from `axis` on, so the Keras axes must be trailing.
    for (std::size_t i = 0; i < axes.size(); ++i) {
      if (axes[i] != rank - static_cast<std::int64_t>(axes.size() - i)) bad("only trailing normalisation axes are supported");
    }
    std::vector<std::int64_t> norm_shape(x.shape.begin() + axes[0], x.shape.end());
    for (auto d : norm_shape) {
      if (d < 0) bad("normalised axes must have known sizes");
    }
    const bool center = cfg.value("center", true);
    const bool scale = cfg.value("scale", true);
    std::vector<std::string> names;
    if (scale) names.push_back("gamma");
    if (center) names.push_back("beta");
    auto w = names.empty() ? std::vector<at::Tensor>{}
                           : take_weights(names, std::vector<std::vector<std::int64_t>>(names.size(), norm_shape));
    std::size_t i = 0;
    at::Tensor gamma = scale ? w[i++] : at::ones(norm_shape, at::kFloat);
    at::Tensor beta = center ? w[i++] : at::zeros(norm_shape, at::kFloat);
    auto y = node("LayerNormalization", {x.keras_value, constant("gamma", gamma), constant("beta", beta)},
                  {{"axis", axes[0]}, {"epsilon", cfg.value("epsilon", 1e-3)}});
    if (rank == 4) y = node("Transpose", {y}, {{"perm", std::vector<std::int64_t>{0, 3, 1, 2}}});
    return {y, {}, x.shape};
  }

  // ---- graph structure -------------------------------------------------------------------

  // Names the layer's output after the layer: the final node's output is renamed when this
  // layer produced it (otherwise an Identity copies a pass-through), and rank-4 outputs get an
  // NHWC view named after the layer.
  tensor publish(const std::string& layer, tensor t, std::size_t first_node) {
    const bool rank4 = t.shape.size() == 4;
    const std::string target = rank4 ? layer + ":nchw" : layer;
    if (used_.count(target)) bad("duplicate layer name");
    if (producer_.count(t.value) && producer_.at(t.value) >= first_node) {
      auto& n = g_.nodes[producer_.at(t.value)];
      n.outputs[0] = target;
      producer_.erase(t.value);
      producer_[target] = &n - g_.nodes.data();
      used_.insert(target);
    } else {
      node("Identity", {t.value}, {}, target);
    }
    t.value = target;
    if (rank4) {
      t.keras_value = node("Transpose", {target}, {{"perm", std::vector<std::int64_t>{0, 2, 3, 1}}}, layer);
    } else {
      t.keras_value = target;
    }
    return t;
  }

  tensor input_layer(const std::string& name, const json& cfg) {
    std::vector<std::int64_t> shape;
    const json* s = nullptr;
    if (cfg.contains("batch_input_shape")) s = &cfg["batch_input_shape"];
    else if (cfg.contains("batch_shape")) s = &cfg["batch_shape"];
    if (!s || !s->is_array()) bad("no input shape");
    for (const auto& d : *s) shape.push_back(d.is_null() ? -1 : d.get<std::int64_t>());
    shape[0] = -1;
    if (auto d = cfg.find("dtype"); d != cfg.end() && d->is_string() && *d != "float32") {
      spdlog::debug("{}: input '{}' declared as {}, fed as float32", source_, name, d->get<std::string>());
    }
    g_.inputs.push_back({name, at::kFloat, shape, true, {}});
    used_.insert(name);
    tensor t{name, name, shape};
    if (shape.size() == 4) {
      t.value = node("Transpose", {name}, {{"perm", std::vector<std::int64_t>{0, 3, 1, 2}}}, name + ":nchw");
    }
    return t;
  }

  static std::vector<std::string> inbound_names(const json& layer) {
    std::vector<std::string> names;
    auto it = layer.find("inbound_nodes");
    if (it == layer.end() || it->empty()) return names;
    const json& nodes = *it;
    const json& first = nodes[0];
    if (first.is_array()) {  // Keras 2: [[["name", node, tensor, {kwargs}], ...]]
      for (const auto& ref : first) names.push_back(ref[0].get<std::string>());
      return names;
    }
    // Keras 3: {"args": [...], "kwargs": {...}} with __keras_tensor__ entries anywhere inside.
    std::function<void(const json&)> walk = [&](const json& j) {
      if (j.is_object()) {
        if (j.value("class_name", "") == "__keras_tensor__") {
          names.push_back(j["config"]["keras_history"][0].get<std::string>());
          return;
        }
        for (const auto& [k, v] : j.items()) walk(v);
      } else if (j.is_array()) {
        for (const auto& v : j) walk(v);
      }
    };
    walk(first.contains("args") ? first["args"] : first);
    return names;
  }

  static std::vector<std::string> endpoint_names(const json& refs) {
    std::vector<std::string> names;
    if (refs.is_array() && !refs.empty() && refs[0].is_string()) {
      names.push_back(refs[0].get<std::string>());
      return names;
    }
    for (const auto& r : refs) names.push_back(r.is_string() ? r.get<std::string>() : r[0].get<std::string>());
    return names;
  }

  tensor apply_layer(const std::string& cls, const json& cfg, const std::vector<tensor>& xs) {
    auto one = [&]() -> const tensor& {
      if (xs.size() != 1) bad(fmt::format("expects one input, got {}", xs.size()));
      return xs[0];
    };
    if (cls == "Conv2D" || cls == "Convolution2D") return conv2d(cfg, one(), false);
    if (cls == "DepthwiseConv2D") return conv2d(cfg, one(), true);
    if (cls == "BatchNormalization") return batch_norm(cfg, one());
    if (cls == "Activation") {
      const auto& x = one();
      return {activation(activation_name(cfg), x.value, x.shape.size()), {}, x.shape};
    }
    if (cls == "ReLU") return relu_layer(cfg, one());
    if (cls == "LeakyReLU") {
      const auto& x = one();
      const double alpha = cfg.contains("negative_slope") ? cfg["negative_slope"].get<double>() : cfg.value("alpha", 0.3);
      return {node("LeakyRelu", {x.value}, {{"alpha", alpha}}), {}, x.shape};
    }
    if (cls == "Softmax") return softmax_layer(cfg, one());
    if (cls == "ThresholdedReLU") {
      const auto& x = one();
      return {node("ThresholdedRelu", {x.value}, {{"alpha", cfg.value("theta", 1.0)}}), {}, x.shape};
    }
    if (cls == "ELU") {
      const auto& x = one();
      return {node("Elu", {x.value}, {{"alpha", cfg.value("alpha", 1.0)}}), {}, x.shape};
    }
    if (cls == "Add" || cls == "Multiply" || cls == "Concatenate" || cls == "Subtract" || cls == "Average" ||
        cls == "Maximum" || cls == "Minimum") {
      return merge(cls, cfg, xs);
    }
    if (cls == "MaxPooling2D" || cls == "MaxPool2D") return pool2d(cfg, one(), true);
    if (cls == "AveragePooling2D" || cls == "AvgPool2D") return pool2d(cfg, one(), false);
    if (cls == "ZeroPadding2D") return zero_padding(cfg, one());
    if (cls == "GlobalAveragePooling2D" || cls == "GlobalAvgPool2D") return global_pool(cfg, one(), false);
    if (cls == "GlobalMaxPooling2D" || cls == "GlobalMaxPool2D") return global_pool(cfg, one(), true);
    if (cls == "Flatten") return flatten(one());
    if (cls == "Dense") return dense(cfg, one());
    if (cls == "Dropout" || cls == "SpatialDropout2D" || cls == "GaussianNoise" || cls == "GaussianDropout" ||
        cls == "AlphaDropout" || cls == "ActivityRegularization") {
      return one();
    }
    if (cls == "Reshape") return reshape(cfg, one());
    if (cls == "SeparableConv2D" || cls == "SeparableConvolution2D") return separable_conv2d(cfg, one());
    if (cls == "UpSampling2D") return upsampling(cfg, one());
    if (cls == "Cropping2D") return cropping(cfg, one());
    if (cls == "PReLU") return prelu(cfg, one());
    if (cls == "Permute") return permute(cfg, one());
    if (cls == "LayerNormalization") return layer_norm(cfg, one());
    if (cls == "Rescaling") return rescaling(cfg, one());
    fail(errc::not_implemented, "{}: layer '{}': unsupported Keras layer class '{}'", source_, layer_, cls);
  }

  // Translates one (possibly nested) model. `bound` feeds a nested model's inputs; the top-level
  // model creates graph inputs instead. Returns the model's outputs by layer name.
  named_tensors build(const json& model, const std::vector<tensor>& bound) {
    const std::string cls = model.value("class_name", "");
    if (!model.contains("config")) fail(errc::bad_parameter, "{}: model config has no 'config'", source_);
    const json& config = model["config"];
    if (cls == "Sequential") return build_sequential(config, bound);
    if (cls != "Model" && cls != "Functional") {
      fail(errc::not_implemented, "{}: unsupported model class '{}'", source_, cls);
    }
    std::map<std::string, tensor> tensors;
    const auto input_names = endpoint_names(config.at("input_layers"));
    if (!bound.empty() && bound.size() != input_names.size()) {
      fail(errc::bad_parameter, "{}: nested model '{}' takes {} inputs, got {}", source_, config.value("name", ""),
           input_names.size(), bound.size());
    }
    for (const auto& layer : config.at("layers")) {
      const std::string name = layer.at("name").get<std::string>();
      const std::string lcls = layer.at("class_name").get<std::string>();
      layer_ = name;
      if (lcls == "InputLayer") {
        auto pos = std::find(input_names.begin(), input_names.end(), name) - input_names.begin();
        if (!bound.empty() && pos < static_cast<std::ptrdiff_t>(bound.size())) tensors[name] = bound[pos];
        else tensors[name] = input_layer(name, layer.at("config"));
        continue;
      }
      if (layer.contains("inbound_nodes") && layer["inbound_nodes"].size() > 1) {
        fail(errc::not_implemented, "{}: layer '{}' is applied {} times; shared layers are not supported", source_,
             name, layer["inbound_nodes"].size());
      }
      std::vector<tensor> xs;
      for (const auto& in : inbound_names(layer)) {
        auto it = tensors.find(in);
        if (it == tensors.end()) bad("input '" + in + "' is not defined before it");
        xs.push_back(it->second);
      }
      tensors[name] = call_layer(name, lcls, layer, xs);
    }
    named_tensors out;
    for (const auto& name : endpoint_names(config.at("output_layers"))) {
      auto it = tensors.find(name);
      if (it == tensors.end()) fail(errc::bad_parameter, "{}: output layer '{}' does not exist", source_, name);
      out.emplace_back(name, it->second);
    }
    return out;
  }

  tensor call_layer(const std::string& name, const std::string& cls, const json& layer, const std::vector<tensor>& xs) {
    if (cls == "Model" || cls == "Functional" || cls == "Sequential") {
      auto outs = build(layer, xs);
      layer_ = name;
      if (outs.size() != 1) bad("nested models with several outputs are not supported");
      return publish(name, outs[0].second, g_.nodes.size());  // also reachable under the model's name
    }
    const auto first_node = g_.nodes.size();
    auto t = apply_layer(cls, layer.at("config"), xs);
    return publish(name, std::move(t), first_node);
  }

  named_tensors build_sequential(const json& config, const std::vector<tensor>& bound) {
    const json& layers = config.is_array() ? config : config.at("layers");
    std::optional<tensor> x;
    if (!bound.empty()) x = bound[0];
    std::string last;
    for (std::size_t i = 0; i < layers.size(); ++i) {
      const auto& layer = layers[i];
      const std::string cls = layer.at("class_name").get<std::string>();
      const json& cfg = layer.at("config");
      const std::string name = cfg.is_object() && cfg.contains("name") ? cfg["name"].get<std::string>()
                                                                        : layer.value("name", cls + std::to_string(i));
      layer_ = name;
      if (cls == "InputLayer") {
        if (!x) x = input_layer(name, cfg);
        continue;
      }
      if (!x) x = input_layer(name + "_input", cfg);  // the first layer carries the input shape
      x = call_layer(name, cls, layer, {*x});
      last = name;
    }
    if (!x) fail(errc::bad_parameter, "{}: empty Sequential model", source_);
    return {{last, *x}};
  }
};

}  // namespace

void check_json_numbers(const json& document, std::string_view source) {
  // Explicit stack: a deeply nested document must not overflow the call stack either.
  std::vector<const json*> todo{&document};
  while (!todo.empty()) {
    const json* j = todo.back();
    todo.pop_back();
    if (j->is_number_float()) {
      const double v = j->get<double>();
      if (!std::isfinite(v) || std::abs(v) >= 9.2e18) {
        fail(errc::bad_parameter, "{}: the number {} is out of the supported range", source, v);
      }
    } else if (j->is_structured()) {
      for (const auto& child : *j) todo.push_back(&child);
    }
  }
}

graph translate_keras_model(const json& model_config, keras_weights weights, const std::string& source) {
  check_json_numbers(model_config, source);
  try {
    return translator(std::move(weights), source).run(model_config);
  } catch (const json::exception& e) {
    fail(errc::bad_parameter, "{}: malformed Keras model config: {}", source, e.what());
  } catch (const c10::Error& e) {
    // A libtorch check on weights whose stored shape does not fit the layer.
    fail(errc::bad_parameter, "{}: malformed Keras model: {}", source, e.what_without_backtrace());
  } catch (const std::out_of_range& e) {
    // A bounds-checked lookup (.at()) with an index taken from the config.
    fail(errc::bad_parameter, "{}: malformed Keras model config (index out of range): {}", source, e.what());
  }
}

std::string append_keras_gap(graph& g, const std::string& layer) {
  const std::string nchw = layer + ":nchw";
  const std::string out = layer + "/gap";
  bool found = false;
  for (const auto& n : g.nodes) {
    for (const auto& o : n.outputs) {
      if (o == out) return out;
      found = found || o == nchw;
    }
  }
  if (!found) fail(errc::not_found, "graph '{}' has no 4-D Keras layer output '{}' to pool", g.name, layer);
  node pool{out + "#pool", "GlobalAveragePool", "", {nchw}, {out + "/nc11"}, {}};
  node flat{out + "#flatten", "Flatten", "", {out + "/nc11"}, {out}, {{"axis", std::int64_t{1}}}};
  g.nodes.push_back(std::move(pool));
  g.nodes.push_back(std::move(flat));
  return out;
}

void select_outputs(graph& g, const std::vector<std::string>& outputs) {
  std::set<std::string> known;
  for (const auto& n : g.nodes) known.insert(n.outputs.begin(), n.outputs.end());
  for (const auto& i : g.inputs) known.insert(i.name);
  for (const auto& o : outputs) {
    if (!known.count(o) && !g.initializers.count(o)) fail(errc::not_found, "graph '{}' has no value '{}'", g.name, o);
  }
  drop_unneeded(g, {outputs.begin(), outputs.end()});
  std::vector<value_info> new_outputs;
  for (const auto& o : outputs) {
    auto old = std::find_if(g.outputs.begin(), g.outputs.end(), [&](const value_info& v) { return v.name == o; });
    if (old != g.outputs.end()) {
      new_outputs.push_back(*old);
    } else {
      value_info v{o, at::kFloat, {}, true, {}};
      v.rank_known = false;  // a cut's shape is not recorded in the IR
      new_outputs.push_back(std::move(v));
    }
  }
  g.outputs = std::move(new_outputs);
  std::set<std::string> used;
  for (const auto& n : g.nodes) used.insert(n.inputs.begin(), n.inputs.end());
  for (auto it = g.initializers.begin(); it != g.initializers.end();) {
    it = used.count(it->first) ? std::next(it) : g.initializers.erase(it);
  }
}

}  // namespace acg2vec::runtime
