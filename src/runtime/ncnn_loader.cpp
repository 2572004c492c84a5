// One file because it is one translator: the .param parser, the .bin weight reader and the
// per-layer translations share the layer record and the blob table; each ncnn layer type is one
// small case of the translator.
#include "runtime/ncnn_loader.h"

#include "core/files.h"
#include "core/error.h"

#include <algorithm>
#include <charconv>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>

namespace acg2vec::runtime {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view magic = "7767517";
// Bounds on what a .param file may declare; far above any real model, they keep a corrupt or
// hostile file from driving allocations.
constexpr std::int64_t max_layers = 1 << 16;
constexpr std::int64_t max_blobs_per_layer = 1 << 12;
constexpr std::size_t max_array = 1 << 16;
constexpr std::int64_t max_dim = 1 << 20;
constexpr std::int64_t unset = -233;  // ncnn's "not given" marker for sizes and offsets
constexpr std::int64_t to_end = std::numeric_limits<std::int64_t>::max();

// The storage tags at the start of a flagged weight in the .bin (ncnn modelbin).
constexpr std::uint32_t tag_fp16 = 0x01306B47;
constexpr std::uint32_t tag_int8 = 0x000D4B38;
constexpr std::uint32_t tag_fp32_scaled = 0x0002C056;

// One k=v entry: a number or an array of numbers; is_float when written with '.', 'e' or 'E'.
struct param_value {
  bool array = false;
  bool is_float = false;
  std::vector<double> values;
};

struct layer_line {
  int line = 0;
  std::string type, name;
  std::vector<std::string> bottoms, tops;
  std::map<int, param_value> params;

  [[nodiscard]] std::string where() const { return fmt::format("layer '{}' ({}, line {})", name, type, line); }

  [[nodiscard]] bool has(int id) const { return params.count(id) != 0; }

  [[nodiscard]] std::int64_t get_int(int id, std::int64_t fallback) const {
    auto it = params.find(id);
    if (it == params.end()) return fallback;
    const auto& p = it->second;
    if (p.array || p.values.size() != 1) fail(errc::bad_parameter, "{}: param {} must be a single integer", where(), id);
    const double v = p.values[0];
    if (v != std::floor(v) || std::fabs(v) > 9.0e15)
      fail(errc::bad_parameter, "{}: param {} must be an integer, got {}", where(), id, v);
    return static_cast<std::int64_t>(v);
  }

  [[nodiscard]] double get_float(int id, double fallback) const {
    auto it = params.find(id);
    if (it == params.end()) return fallback;
    if (it->second.array || it->second.values.size() != 1)
      fail(errc::bad_parameter, "{}: param {} must be a single number", where(), id);
    return it->second.values[0];
  }

  [[nodiscard]] std::vector<double> get_array(int id) const {
    auto it = params.find(id);
    if (it == params.end()) return {};
    if (!it->second.array) fail(errc::bad_parameter, "{}: param {} must be an array", where(), id);
    return it->second.values;
  }

  [[nodiscard]] std::vector<std::int64_t> get_int_array(int id) const {
    std::vector<std::int64_t> out;
    for (double v : get_array(id)) {
      if (v != std::floor(v) || std::fabs(v) > 9.0e15)
        fail(errc::bad_parameter, "{}: array param {} must hold integers, got {}", where(), id, v);
      out.push_back(static_cast<std::int64_t>(v));
    }
    return out;
  }
};

std::vector<std::string_view> split_ws(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) ++i;
    std::size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t' && line[j] != '\r') ++j;
    if (j > i) out.push_back(line.substr(i, j - i));
    i = j;
  }
  return out;
}

std::int64_t parse_int(std::string_view s, int line, std::string_view what) {
  std::int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size())
    fail(errc::bad_parameter, "ncnn param line {}: {} '{}' is not an integer", line, what, s);
  return v;
}

double parse_number(std::string_view s, int line, int key, bool& is_float) {
  is_float = s.find_first_of(".eE") != std::string_view::npos;
  if (!is_float) return static_cast<double>(parse_int(s, line, fmt::format("value of param {}", key)));
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || !std::isfinite(v))
    fail(errc::bad_parameter, "ncnn param line {}: value '{}' of param {} is not a finite number", line, s, key);
  return v;
}

std::vector<layer_line> parse_param(std::string_view text) {
  std::vector<std::string_view> lines;
  for (std::size_t start = 0; start <= text.size();) {
    auto end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  std::size_t li = 0;
  auto next_tokens = [&](std::vector<std::string_view>& tokens) {
    while (li < lines.size()) {
      tokens = split_ws(lines[li++]);
      if (!tokens.empty()) return true;
    }
    return false;
  };
  std::vector<std::string_view> tok;
  if (!next_tokens(tok) || tok.size() != 1 || tok[0] != magic)
    fail(errc::bad_parameter, "not an ncnn .param file: the first line must be the magic number {}", magic);
  if (!next_tokens(tok) || tok.size() != 2)
    fail(errc::bad_parameter, "ncnn param line {}: expected 'layer_count blob_count'", li);
  const std::int64_t layer_count = parse_int(tok[0], static_cast<int>(li), "layer count");
  const std::int64_t blob_count = parse_int(tok[1], static_cast<int>(li), "blob count");
  if (layer_count <= 0 || layer_count > max_layers || blob_count <= 0 || blob_count > max_layers * 4)
    fail(errc::bad_parameter, "ncnn param: implausible layer/blob counts {} {}", layer_count, blob_count);

  std::vector<layer_line> layers;
  std::set<std::string> names;
  for (std::int64_t l = 0; l < layer_count; ++l) {
    if (!next_tokens(tok))
      fail(errc::bad_parameter, "ncnn param: the file declares {} layers but ends after {}", layer_count, l);
    layer_line L;
    L.line = static_cast<int>(li);
    if (tok.size() < 4) fail(errc::bad_parameter, "ncnn param line {}: a layer needs 'type name bottoms tops'", li);
    L.type = tok[0];
    L.name = tok[1];
    if (!names.insert(L.name).second) fail(errc::bad_parameter, "ncnn param line {}: layer name '{}' repeats", li, L.name);
    const std::int64_t nb = parse_int(tok[2], L.line, "bottom count");
    const std::int64_t nt = parse_int(tok[3], L.line, "top count");
    if (nb < 0 || nt < 0 || nb > max_blobs_per_layer || nt > max_blobs_per_layer ||
        static_cast<std::size_t>(4 + nb + nt) > tok.size())
      fail(errc::bad_parameter, "ncnn param line {}: bottom/top counts {} {} do not match the line", li, nb, nt);
    std::size_t k = 4;
    for (std::int64_t i = 0; i < nb; ++i) L.bottoms.emplace_back(tok[k++]);
    for (std::int64_t i = 0; i < nt; ++i) L.tops.emplace_back(tok[k++]);
    for (; k < tok.size(); ++k) {
      const auto eq = tok[k].find('=');
      if (eq == std::string_view::npos || eq == 0)
        fail(errc::bad_parameter, "ncnn param line {}: '{}' is not key=value", li, tok[k]);
      std::int64_t key = parse_int(tok[k].substr(0, eq), L.line, "param key");
      const std::string_view value = tok[k].substr(eq + 1);
      param_value pv;
      if (key <= -23300) {
        key = -key - 23300;
        pv.array = true;
        std::vector<std::string_view> parts;
        for (std::size_t s = 0; s <= value.size();) {
          auto c = value.find(',', s);
          if (c == std::string_view::npos) c = value.size();
          parts.push_back(value.substr(s, c - s));
          s = c + 1;
        }
        const std::int64_t n = parse_int(parts[0], L.line, "array length");
        if (n < 0 || static_cast<std::size_t>(n) > max_array || parts.size() != static_cast<std::size_t>(n) + 1)
          fail(errc::bad_parameter, "ncnn param line {}: array param {} declares {} values but holds {}", li, key, n,
               parts.size() - 1);
        for (std::size_t i = 1; i < parts.size(); ++i) {
          bool f = false;
          pv.values.push_back(parse_number(parts[i], L.line, static_cast<int>(key), f));
          pv.is_float = pv.is_float || f;
        }
      } else {
        pv.values.push_back(parse_number(value, L.line, static_cast<int>(key), pv.is_float));
      }
      if (key < 0 || key > 31) fail(errc::bad_parameter, "ncnn param line {}: param id {} is out of range", li, key);
      if (!L.params.emplace(static_cast<int>(key), std::move(pv)).second)
        fail(errc::bad_parameter, "ncnn param line {}: param {} is given twice", li, key);
    }
    layers.push_back(std::move(L));
  }
  std::vector<std::string_view> rest;
  if (next_tokens(rest)) fail(errc::bad_parameter, "ncnn param line {}: text after the {} declared layers", li, layer_count);
  return layers;
}

// Sequential reader of the .bin, in the order the layers load their weights.
class bin_reader {
 public:
  explicit bin_reader(std::string_view bytes) : bytes_(bytes) {}

  /// A weight that ncnn loads with a storage tag (type 0); int8 data comes back as kChar.
  at::Tensor flagged(std::int64_t count, const std::string& what) {
    check_count(count, what);
    const std::uint32_t tag = u32(what);
    const auto n = static_cast<std::size_t>(count);
    if (tag == tag_fp16) {
      const std::string_view raw = take(align4(n * 2), what, "fp16");
      at::Tensor h = at::empty({count}, at::kHalf);
      std::memcpy(h.data_ptr(), raw.data(), n * 2);
      return h.to(at::kFloat);
    }
    if (tag == tag_int8) {
      const std::string_view raw = take(align4(n), what, "int8");
      at::Tensor q = at::empty({count}, at::kChar);
      std::memcpy(q.data_ptr(), raw.data(), n);
      return q;
    }
    if (tag == tag_fp32_scaled) return floats(n, what, "fp32");
    const auto b = [&](int i) { return (tag >> (8 * i)) & 0xFFu; };
    if (b(0) + b(1) + b(2) + b(3) != 0) {
      // 8-bit indices into a table of 256 floats.
      const at::Tensor table = floats(256, what, "quantisation table");
      const std::string_view idx = take(align4(n), what, "quantised indices");
      at::Tensor out = at::empty({count}, at::kFloat);
      const float* t = table.data_ptr<float>();
      float* o = out.data_ptr<float>();
      for (std::size_t i = 0; i < n; ++i) o[i] = t[static_cast<unsigned char>(idx[i])];
      return out;
    }
    return floats(n, what, "fp32");
  }

  /// A plain fp32 array (biases, scales: ncnn load type 1).
  at::Tensor raw(std::int64_t count, const std::string& what) {
    check_count(count, what);
    return floats(static_cast<std::size_t>(count), what, "fp32");
  }

  [[nodiscard]] std::size_t remaining() const { return bytes_.size() - pos_; }

 private:
  static std::size_t align4(std::size_t n) { return (n + 3) / 4 * 4; }

  void check_count(std::int64_t count, const std::string& what) const {
    if (count < 0 || static_cast<std::uint64_t>(count) > bytes_.size())
      fail(errc::bad_parameter, "ncnn bin: {} declares {} values, more than the file holds", what, count);
  }

  std::string_view take(std::size_t n, const std::string& what, std::string_view kind) {
    if (n > remaining())
      fail(errc::bad_parameter, "ncnn bin: {} needs {} bytes of {} data at offset {}, only {} remain (truncated file "
           "or a .bin that does not match the .param)", what, n, kind, pos_, remaining());
    auto out = bytes_.substr(pos_, n);
    pos_ += n;
    return out;
  }

  std::uint32_t u32(const std::string& what) {
    const std::string_view b = take(4, what, "storage tag");
    std::uint32_t v = 0;
    std::memcpy(&v, b.data(), 4);
    return v;
  }

  at::Tensor floats(std::size_t n, const std::string& what, std::string_view kind) {
    const std::string_view raw = take(n * 4, what, kind);
    at::Tensor t = at::empty({static_cast<std::int64_t>(n)}, at::kFloat);
    if (n) std::memcpy(t.data_ptr(), raw.data(), n * 4);
    if (!at::isfinite(t).all().item<bool>())
      fail(errc::bad_parameter, "ncnn bin: {} holds a NaN or infinite value", what);
    return t;
  }

  std::string_view bytes_;
  std::size_t pos_ = 0;
};

struct blob {
  std::string value;  // IR value name
  int rank = 0;       // ncnn dims: 1, 2 or 3
};

class translator {
 public:
  translator(std::vector<layer_line> layers, std::string_view bin) : layers_(std::move(layers)), bin_(bin) {}

  graph run() {
    g_.name = "ncnn";
    g_.opset = 17;
    for (const auto& L : layers_) {
      L_ = &L;
      for (const auto& b : L.bottoms) {
        if (!blobs_.count(b)) fail(errc::bad_parameter, "{} reads blob '{}', which no earlier layer produces", L.where(), b);
        consumed_.insert(b);
      }
      for (const auto& t : L.tops)
        if (blobs_.count(t)) fail(errc::bad_parameter, "{} produces blob '{}' a second time", L.where(), t);
      translate(L);
    }
    if (bin_.remaining() != 0)
      fail(errc::bad_parameter, "ncnn bin: {} bytes are left after the last layer's weights (a .bin that does not "
           "match the .param?)", bin_.remaining());
    if (g_.inputs.empty()) fail(errc::bad_parameter, "ncnn param: the model has no Input layer");
    // Outputs: the blobs no layer reads, under their own names (an aliased blob, e.g. a
    // Split top, gets an Identity so that its name exists in the graph).
    for (const auto& name : order_) {
      if (consumed_.count(name)) continue;
      const blob& b = blobs_.at(name);
      if (b.value != name) emit("Identity", name + "/output", {b.value}, {name});
      value_info v;
      v.name = name;
      v.rank_known = false;
      g_.outputs.push_back(v);
    }
    if (g_.outputs.empty()) fail(errc::bad_parameter, "ncnn param: the model has no output blob");
    return std::move(g_);
  }

 private:
  // --- helpers -------------------------------------------------------------------------------
  const blob& in(std::size_t i) const {
    if (i >= L_->bottoms.size()) fail(errc::bad_parameter, "{} needs at least {} inputs", L_->where(), i + 1);
    return blobs_.at(L_->bottoms[i]);
  }

  void expect_counts(std::size_t bottoms, std::size_t tops) const {
    if (L_->bottoms.size() != bottoms || L_->tops.size() != tops)
      fail(errc::bad_parameter, "{} must have {} input(s) and {} output(s), has {} and {}", L_->where(), bottoms, tops,
           L_->bottoms.size(), L_->tops.size());
  }

  // A fresh value name derived from the layer name (never equal to a blob name).
  std::string temp(std::string_view suffix) {
    std::string base = fmt::format("{}/{}", L_->name, suffix);
    std::string name = base;
    for (int i = 1; used_.count(name); ++i) name = fmt::format("{}_{}", base, i);
    used_.insert(name);
    temps_.insert(name);
    return name;
  }

  std::string constant(std::string_view suffix, const at::Tensor& t) {
    std::string name = temp(suffix);
    g_.initializers[name] = t;
    return name;
  }

  std::string ints_const(std::string_view suffix, const std::vector<std::int64_t>& v) {
    return constant(suffix, at::tensor(v, at::kLong));
  }

  void emit(std::string op, std::string name, std::vector<std::string> inputs, std::vector<std::string> outputs,
            std::map<std::string, attribute> attrs = {}) {
    node n;
    n.name = std::move(name);
    n.op_type = std::move(op);
    n.inputs = std::move(inputs);
    n.outputs = std::move(outputs);
    n.attributes = std::move(attrs);
    for (const auto& o : n.outputs) used_.insert(o);
    g_.nodes.push_back(std::move(n));
  }

  // Emits op(inputs) into a new temporary value and returns its name.
  std::string step(const std::string& op, const std::vector<std::string>& inputs, std::map<std::string, attribute> attrs = {}) {
    std::string out = temp(op);
    emit(op, out, inputs, {out}, std::move(attrs));
    return out;
  }

  void set_top(std::size_t i, const std::string& value, int rank) {
    const std::string& name = L_->tops.at(i);
    blobs_[name] = blob{value, rank};
    used_.insert(name);
    order_.push_back(name);
  }

  // The last step of a layer writes into the blob's own name, so that values can be looked up
  // (and graphs cut) by the names in the .param.
  void finish(const std::string& op, const std::vector<std::string>& inputs, int rank,
              std::map<std::string, attribute> attrs = {}) {
    const std::string& top = L_->tops.at(0);
    emit(op, L_->name, inputs, {top}, std::move(attrs));
    set_top(0, top, rank);
  }

  void alias_tops(const blob& b) {
    for (std::size_t i = 0; i < L_->tops.size(); ++i) set_top(i, b.value, b.rank);
  }

  // ncnn's fused activation (activation_type, activation_params) applied to value x.
  std::string activation(const std::string& x, std::int64_t type, const std::vector<double>& params) {
    auto param = [&](std::size_t i, double fallback) { return i < params.size() ? params[i] : fallback; };
    switch (type) {
      case 0: return x;
      case 1: return step("Relu", {x});
      case 2: return step("LeakyRelu", {x}, {{"alpha", param(0, 0.0)}});
      case 3: {
        const std::string lo = constant("clip_min", at::scalar_tensor(param(0, -FLT_MAX), at::kFloat));
        const std::string hi = constant("clip_max", at::scalar_tensor(param(1, FLT_MAX), at::kFloat));
        return step("Clip", {x, lo, hi});
      }
      case 4: return step("Sigmoid", {x});
      case 5: return step("Mul", {x, step("Tanh", {step("Softplus", {x})})});
      case 6: return step("Mul", {x, step("HardSigmoid", {x}, {{"alpha", param(0, 0.2)}, {"beta", param(1, 0.5)}})});
      default: fail(errc::bad_parameter, "{}: unsupported activation_type {}", L_->where(), type);
    }
  }

  // Moves the last emitted computation into the top blob's name.
  void finish_value(const std::string& value, int rank) {
    const std::string& top = L_->tops.at(0);
    if (value == top) {
      set_top(0, top, rank);
      return;
    }
    // A temporary that this layer's last node just produced (nothing reads it yet) takes the
    // blob's name itself: an Identity in between would hide the layer's consumer from the
    // executor's fusion pass (e.g. Convolution -> BinaryOp add, which fuses into one step).
    if (!g_.nodes.empty() && g_.nodes.back().outputs.size() == 1 && g_.nodes.back().outputs[0] == value &&
        temps_.count(value)) {
      g_.nodes.back().outputs[0] = top;
      g_.nodes.back().name = L_->name;
      set_top(0, top, rank);
      return;
    }
    emit("Identity", L_->name, {value}, {top});
    set_top(0, top, rank);
  }

  std::int64_t positive(int id, std::int64_t fallback, std::string_view what) const {
    const std::int64_t v = L_->get_int(id, fallback);
    if (v <= 0 || v > max_dim) fail(errc::bad_parameter, "{}: {} (param {}) must be in 1..{}, got {}", L_->where(), what, id, max_dim, v);
    return v;
  }

  std::int64_t checked_product(std::initializer_list<std::int64_t> factors) const {
    std::int64_t p = 1;
    for (auto f : factors) {
      if (f <= 0 || p > (std::int64_t{1} << 40) / f) fail(errc::bad_parameter, "{}: weight shape is implausible", L_->where());
      p *= f;
    }
    return p;
  }

  // Weight (flagged), bias and, for int8 weights, per-group scales; returns the fp32 weight.
  at::Tensor read_weight(std::int64_t size, std::int64_t int8_scale_term, std::int64_t scale_groups, bool bias_term,
                         std::int64_t num_output, at::Tensor& bias) {
    at::Tensor w = bin_.flagged(size, fmt::format("{} weight", L_->where()));
    if (bias_term) bias = bin_.raw(num_output, fmt::format("{} bias", L_->where()));
    at::Tensor scales;
    if (int8_scale_term) {
      const std::int64_t n = (int8_scale_term == 2 || int8_scale_term == 102) ? 1 : scale_groups;
      scales = bin_.raw(n, fmt::format("{} int8 weight scales", L_->where()));
      (void)bin_.raw(1, fmt::format("{} int8 input scale", L_->where()));
      if (int8_scale_term > 100) (void)bin_.raw(1, fmt::format("{} int8 output scale", L_->where()));
    }
    if (w.scalar_type() == at::kChar) {
      if (!scales.defined()) fail(errc::bad_parameter, "{}: int8 weights without int8_scale_term scales", L_->where());
      if ((scales == 0).any().item<bool>()) fail(errc::bad_parameter, "{}: an int8 weight scale is zero", L_->where());
      // ncnn quantises w_int8 = round(w * scale), per output channel (or group).
      w = (w.to(at::kFloat).reshape({scales.numel(), -1}) / scales.reshape({-1, 1})).reshape({-1});
    }
    return w;
  }

  // --- layers --------------------------------------------------------------------------------
  void translate(const layer_line& L) {
    const std::string& t = L.type;
    if (t == "Input") return input_layer();
    if (t == "Convolution" || t == "ConvolutionDepthWise") return convolution(t == "ConvolutionDepthWise");
    if (t == "Deconvolution") return deconvolution();
    if (t == "InnerProduct") return inner_product();
    if (t == "ReLU") {
      expect_counts(1, 1);
      const double slope = L.get_float(0, 0.0);
      if (slope == 0.0) return finish("Relu", {in(0).value}, in(0).rank);
      return finish("LeakyRelu", {in(0).value}, in(0).rank, {{"alpha", slope}});
    }
    if (t == "Sigmoid") return expect_counts(1, 1), finish("Sigmoid", {in(0).value}, in(0).rank);
    if (t == "TanH") return expect_counts(1, 1), finish("Tanh", {in(0).value}, in(0).rank);
    if (t == "Split" || t == "Dropout" || t == "Noop") {
      if (L.bottoms.size() != 1 || L.tops.empty()) fail(errc::bad_parameter, "{} must have one input", L.where());
      if (t == "Dropout" && L.get_float(0, 1.0) != 1.0) {
        expect_counts(1, 1);
        const std::string s = constant("scale", at::scalar_tensor(L.get_float(0, 1.0), at::kFloat));
        return finish("Mul", {in(0).value, s}, in(0).rank);
      }
      return alias_tops(in(0));
    }
    if (t == "Eltwise") return eltwise();
    if (t == "BinaryOp") return binary_op();
    if (t == "Crop") return crop();
    if (t == "Pooling") return pooling();
    if (t == "Padding") return padding();
    if (t == "Interp") return interp();
    if (t == "Concat") return concat();
    if (t == "PixelShuffle") return pixel_shuffle();
    if (t == "Flatten") {
      expect_counts(1, 1);
      if (in(0).rank == 1) return alias_tops(in(0));
      return finish("Flatten", {in(0).value}, 1, {{"axis", std::int64_t{1}}});
    }
    if (t == "Reshape") return reshape();
    fail(errc::bad_parameter, "unsupported ncnn layer type '{}' (layer '{}', line {})", t, L.name, L.line);
  }

  void input_layer() {
    expect_counts(0, 1);
    const std::int64_t w = L_->get_int(0, 0), h = L_->get_int(1, 0), c = L_->get_int(2, 0);
    for (auto d : {w, h, c})
      if (d < 0 || d > max_dim) fail(errc::bad_parameter, "{}: invalid input size", L_->where());
    const int rank = c > 0 ? 3 : h > 0 ? 2 : w > 0 ? 1 : 3;
    auto dyn = [](std::int64_t d) { return d > 0 ? d : std::int64_t{-1}; };
    value_info v;
    v.name = L_->tops[0];
    if (rank == 3) v.shape = {1, dyn(c), dyn(h), dyn(w)};
    else if (rank == 2) v.shape = {1, dyn(h), dyn(w)};
    else v.shape = {1, dyn(w)};
    v.dim_names.assign(v.shape.size(), "");
    v.dim_names[0] = "batch";
    g_.inputs.push_back(v);
    used_.insert(v.name);
    set_top(0, v.name, rank);
  }

  void need_rank(const blob& b, int rank) const {
    if (b.rank != rank)
      fail(errc::bad_parameter, "{}: expects a {}-D input blob, got {}-D", L_->where(), rank, b.rank);
  }

  // Spatial pads (top, left, bottom, right) of Convolution/Pooling style params, or auto_pad.
  std::vector<std::int64_t> pads(int left_id, int top_id, int right_id, int bottom_id, std::string& auto_pad) const {
    const std::int64_t left = L_->get_int(left_id, 0);
    const std::int64_t top = L_->get_int(top_id, left);
    const std::int64_t right = L_->get_int(right_id, left);
    const std::int64_t bottom = L_->get_int(bottom_id, top);
    if (left == -233 || left == -234) {
      auto_pad = left == -233 ? "SAME_UPPER" : "SAME_LOWER";
      return {0, 0, 0, 0};
    }
    for (auto p : {left, top, right, bottom})
      if (p < 0 || p > max_dim) fail(errc::bad_parameter, "{}: unsupported padding {}", L_->where(), p);
    return {top, left, bottom, right};
  }

  void convolution(bool depthwise) {
    expect_counts(1, 1);
    need_rank(in(0), 3);
    const std::int64_t num_output = positive(0, 0, "num_output");
    const std::int64_t kw = positive(1, 0, "kernel_w");
    const std::int64_t kh = positive(11, kw, "kernel_h");
    const std::int64_t dw = positive(2, 1, "dilation_w"), dh = positive(12, dw, "dilation_h");
    const std::int64_t sw = positive(3, 1, "stride_w"), sh = positive(13, sw, "stride_h");
    const bool bias_term = L_->get_int(5, 0) != 0;
    const std::int64_t wsize = positive(6, 0, "weight_data_size");
    const std::int64_t int8_term = L_->get_int(8, 0);
    const std::int64_t group = depthwise ? positive(7, 1, "group") : 1;
    if (L_->get_float(18, 0.0) != 0.0) fail(errc::bad_parameter, "{}: a non-zero pad_value is not supported", L_->where());
    if (L_->get_int(19, 0) != 0) fail(errc::bad_parameter, "{}: dynamic weights are not supported", L_->where());
    if (num_output % group != 0) fail(errc::bad_parameter, "{}: num_output {} is not a multiple of group {}", L_->where(), num_output, group);
    const std::int64_t per_out = checked_product({num_output, kh, kw});
    if (wsize % per_out != 0)
      fail(errc::bad_parameter, "{}: weight_data_size {} is not num_output*kernel_h*kernel_w*k", L_->where(), wsize);
    const std::int64_t in_per_group = wsize / per_out;
    std::string auto_pad = "NOTSET";
    const auto p = pads(4, 14, 15, 16, auto_pad);
    at::Tensor bias;
    at::Tensor w = read_weight(wsize, int8_term, depthwise ? group : num_output, bias_term, num_output, bias);
    std::vector<std::string> inputs{in(0).value, constant("weight", w.reshape({num_output, in_per_group, kh, kw}))};
    if (bias.defined()) inputs.push_back(constant("bias", bias));
    std::map<std::string, attribute> a{{"kernel_shape", std::vector<std::int64_t>{kh, kw}},
                                       {"strides", std::vector<std::int64_t>{sh, sw}},
                                       {"dilations", std::vector<std::int64_t>{dh, dw}},
                                       {"group", group}};
    if (auto_pad != "NOTSET") a["auto_pad"] = auto_pad;
    else a["pads"] = p;
    const std::string y = step("Conv", inputs, a);
    finish_value(activation(y, L_->get_int(9, 0), L_->get_array(10)), 3);
  }

  void deconvolution() {
    expect_counts(1, 1);
    need_rank(in(0), 3);
    const std::int64_t num_output = positive(0, 0, "num_output");
    const std::int64_t kw = positive(1, 0, "kernel_w");
    const std::int64_t kh = positive(11, kw, "kernel_h");
    const std::int64_t dw = positive(2, 1, "dilation_w"), dh = positive(12, dw, "dilation_h");
    const std::int64_t sw = positive(3, 1, "stride_w"), sh = positive(13, sw, "stride_h");
    const bool bias_term = L_->get_int(5, 0) != 0;
    const std::int64_t wsize = positive(6, 0, "weight_data_size");
    const std::int64_t out_pad_right = L_->get_int(18, 0), out_pad_bottom = L_->get_int(19, 0);
    if (L_->get_int(20, 0) > 0 || L_->get_int(21, 0) > 0)
      fail(errc::bad_parameter, "{}: fixed output_w/output_h are not supported", L_->where());
    if (out_pad_right < 0 || out_pad_bottom < 0 || out_pad_right > max_dim || out_pad_bottom > max_dim)
      fail(errc::bad_parameter, "{}: invalid output padding", L_->where());
    const std::int64_t per_out = checked_product({num_output, kh, kw});
    if (wsize % per_out != 0)
      fail(errc::bad_parameter, "{}: weight_data_size {} is not num_output*kernel_h*kernel_w*k", L_->where(), wsize);
    const std::int64_t in_c = wsize / per_out;
    std::string auto_pad = "NOTSET";
    const auto p = pads(4, 14, 15, 16, auto_pad);
    if (auto_pad != "NOTSET") fail(errc::bad_parameter, "{}: 'same' padding is not supported for Deconvolution", L_->where());
    at::Tensor bias;
    at::Tensor w = read_weight(wsize, 0, num_output, bias_term, num_output, bias);
    // ncnn stores [out, in, kh, kw] and scatters input pixel (i, j) * w[o][c][ky][kx] to output
    // (i*stride + ky*dilation, j*stride + kx*dilation) - the same as ONNX ConvTranspose, whose
    // weight is [in, out, kh, kw].
    w = w.reshape({num_output, in_c, kh, kw}).permute({1, 0, 2, 3}).contiguous();
    std::vector<std::string> inputs{in(0).value, constant("weight", w)};
    if (bias.defined()) inputs.push_back(constant("bias", bias));
    std::map<std::string, attribute> a{{"kernel_shape", std::vector<std::int64_t>{kh, kw}},
                                       {"strides", std::vector<std::int64_t>{sh, sw}},
                                       {"dilations", std::vector<std::int64_t>{dh, dw}}};
    const bool out_pad = out_pad_right > 0 || out_pad_bottom > 0;
    if (!out_pad) a["pads"] = p;
    std::string y = activation(step("ConvTranspose", inputs, a), L_->get_int(9, 0), L_->get_array(10));
    if (out_pad) {
      // ncnn appends zero rows/columns after the activation, then crops the pads.
      const std::string pz = ints_const("output_pad", {0, 0, 0, 0, 0, 0, out_pad_bottom, out_pad_right});
      y = step("Pad", {y, pz});
      y = slice(y, {p[0], p[1]}, {p[2] > 0 ? -p[2] : to_end, p[3] > 0 ? -p[3] : to_end}, {2, 3});
    }
    finish_value(y, 3);
  }

  std::string slice(const std::string& x, const std::vector<std::int64_t>& starts, const std::vector<std::int64_t>& ends,
                    const std::vector<std::int64_t>& axes) {
    return step("Slice", {x, ints_const("starts", starts), ints_const("ends", ends), ints_const("axes", axes)});
  }

  void inner_product() {
    expect_counts(1, 1);
    const std::int64_t num_output = positive(0, 0, "num_output");
    const bool bias_term = L_->get_int(1, 0) != 0;
    const std::int64_t wsize = positive(2, 0, "weight_data_size");
    const std::int64_t int8_term = L_->get_int(8, 0);
    if (wsize % num_output != 0)
      fail(errc::bad_parameter, "{}: weight_data_size {} is not a multiple of num_output {}", L_->where(), wsize, num_output);
    at::Tensor bias;
    at::Tensor w = read_weight(wsize, int8_term, num_output, bias_term, num_output, bias);
    std::string x = in(0).value;
    if (in(0).rank == 0) fail(errc::bad_parameter, "{}: input rank unknown", L_->where());
    if (in(0).rank != 1) x = step("Flatten", {x}, {{"axis", std::int64_t{1}}});
    std::vector<std::string> inputs{x, constant("weight", w.reshape({num_output, wsize / num_output}))};
    if (bias.defined()) inputs.push_back(constant("bias", bias));
    const std::string y = step("Gemm", inputs, {{"transB", std::int64_t{1}}});
    finish_value(activation(y, L_->get_int(9, 0), L_->get_array(10)), 1);
  }

  // Reshapes b so that numpy broadcasting against a gives ncnn's result, per ncnn's rules for
  // blobs of different ranks (a 1-D blob against a 3-D one is per channel, against a 2-D one
  // per row).
  std::string broadcast_to(const blob& b, int rank_a) {
    if (b.rank == rank_a) return b.value;
    if (b.rank == 1 && rank_a == 3) return step("Reshape", {b.value, ints_const("shape", {1, -1, 1, 1})});
    if (b.rank == 1 && rank_a == 2) return step("Reshape", {b.value, ints_const("shape", {1, -1, 1})});
    fail(errc::bad_parameter, "{}: broadcasting a {}-D blob against a {}-D one is not supported", L_->where(), b.rank,
         rank_a);
  }

  void binary_op() {
    const std::int64_t op = L_->get_int(0, 0);
    const bool with_scalar = L_->get_int(1, 0) != 0;
    static const char* const names[] = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "Sub", "Div", "Pow"};
    if (op < 0 || op > 9) fail(errc::bad_parameter, "{}: unsupported BinaryOp op_type {}", L_->where(), op);
    const bool reversed = op >= 7;
    std::string a, b;
    int rank = 0;
    if (with_scalar) {
      expect_counts(1, 1);
      a = in(0).value;
      rank = in(0).rank;
      b = constant("b", at::scalar_tensor(L_->get_float(2, 0.0), at::kFloat));
    } else {
      expect_counts(2, 1);
      const blob &x = in(0), &y = in(1);
      if (x.rank == 0 || y.rank == 0) fail(errc::bad_parameter, "{}: input rank unknown", L_->where());
      rank = std::max(x.rank, y.rank);
      a = broadcast_to(x, rank);
      b = broadcast_to(y, rank);
    }
    if (reversed) std::swap(a, b);
    std::vector<std::string> inputs{a, b};
    finish(names[op], inputs, rank);
  }

  void eltwise() {
    if (L_->bottoms.size() < 2 || L_->tops.size() != 1) fail(errc::bad_parameter, "{} needs 2+ inputs, 1 output", L_->where());
    const std::int64_t op = L_->get_int(0, 1);
    const std::vector<double> coeffs = L_->get_array(1);
    const int rank = in(0).rank;
    for (std::size_t i = 0; i < L_->bottoms.size(); ++i)
      if (in(i).rank != rank) fail(errc::bad_parameter, "{}: inputs differ in rank", L_->where());
    if (!coeffs.empty() && coeffs.size() != L_->bottoms.size())
      fail(errc::bad_parameter, "{}: {} coefficients for {} inputs", L_->where(), coeffs.size(), L_->bottoms.size());
    std::vector<std::string> terms;
    for (std::size_t i = 0; i < L_->bottoms.size(); ++i) {
      std::string v = in(i).value;
      if (op == 1 && !coeffs.empty() && coeffs[i] != 1.0)
        v = step("Mul", {v, constant("coeff", at::scalar_tensor(coeffs[i], at::kFloat))});
      terms.push_back(v);
    }
    const char* name = op == 0 ? "Mul" : op == 1 ? "Sum" : op == 2 ? "Max" : nullptr;
    if (!name) fail(errc::bad_parameter, "{}: unsupported Eltwise op_type {}", L_->where(), op);
    finish(name, terms, rank);
  }

  void crop() {
    if (L_->bottoms.size() != 1 || L_->tops.size() != 1)
      fail(errc::bad_parameter, "{}: Crop to a reference blob's size is not supported", L_->where());
    const blob& x = in(0);
    if (x.rank < 1 || x.rank > 3) fail(errc::bad_parameter, "{}: input rank unknown", L_->where());
    std::vector<std::int64_t> starts, ends, axes;
    if (L_->has(9) || L_->has(10) || L_->has(11)) {
      auto s = L_->get_int_array(9), e = L_->get_int_array(10), ax = L_->get_int_array(11);
      if (ax.empty())
        for (std::size_t i = 0; i < std::max(s.size(), e.size()); ++i) ax.push_back(static_cast<std::int64_t>(i));
      if (s.size() != ax.size() || e.size() != ax.size())
        fail(errc::bad_parameter, "{}: starts/ends/axes differ in length", L_->where());
      for (std::size_t i = 0; i < ax.size(); ++i) {
        std::int64_t a = ax[i] < 0 ? ax[i] + x.rank : ax[i];
        if (a < 0 || a >= x.rank) fail(errc::bad_parameter, "{}: crop axis {} out of range", L_->where(), ax[i]);
        axes.push_back(a + 1);  // ncnn axes exclude the batch
        starts.push_back(s[i] == unset ? 0 : s[i]);
        ends.push_back(e[i] == unset ? to_end : e[i]);
      }
    } else {
      if (L_->has(13) || L_->has(14) || L_->has(15)) fail(errc::bad_parameter, "{}: depth cropping is not supported", L_->where());
      // (offset, size, end offset) params per ncnn dimension w, h, c and the IR axis of each.
      const int ids[3][3] = {{0, 3, 6}, {1, 4, 7}, {2, 5, 8}};
      for (int d = 0; d < x.rank; ++d) {
        const std::int64_t off = L_->get_int(ids[d][0], 0), size = L_->get_int(ids[d][1], 0),
                           off2 = L_->get_int(ids[d][2], 0);
        if (off < 0 || off2 < 0 || (size < 0 && size != unset))
          fail(errc::bad_parameter, "{}: invalid crop offsets or size", L_->where());
        if (off == 0 && off2 == 0 && (size == 0 || size == unset)) continue;
        axes.push_back(x.rank - d);
        starts.push_back(off);
        ends.push_back(size > 0 ? off + size : (size == 0 && off2 > 0 ? -off2 : to_end));
      }
    }
    if (axes.empty()) return alias_tops(x);
    finish("Slice", {x.value, ints_const("starts", starts), ints_const("ends", ends), ints_const("axes", axes)}, x.rank);
  }

  void pooling() {
    expect_counts(1, 1);
    need_rank(in(0), 3);
    const std::int64_t type = L_->get_int(0, 0);
    if (type != 0 && type != 1) fail(errc::bad_parameter, "{}: unknown pooling_type {}", L_->where(), type);
    if (L_->get_int(7, 0) != 0) fail(errc::bad_parameter, "{}: adaptive pooling is not supported", L_->where());
    if (L_->get_int(4, 0) != 0) {
      const std::string y = step(type == 0 ? "GlobalMaxPool" : "GlobalAveragePool", {in(0).value});
      return finish("Flatten", {y}, 1, {{"axis", std::int64_t{1}}});
    }
    const std::int64_t kw = positive(1, 0, "kernel_w"), kh = positive(11, kw, "kernel_h");
    const std::int64_t sw = positive(2, 1, "stride_w"), sh = positive(12, sw, "stride_h");
    const std::int64_t left = L_->get_int(3, 0), right = L_->get_int(14, left), top = L_->get_int(13, left),
                       bottom = L_->get_int(15, top);
    for (auto p : {left, right, top, bottom})
      if (p < 0 || p > max_dim) fail(errc::bad_parameter, "{}: invalid padding", L_->where());
    const std::int64_t mode = L_->get_int(5, 0);
    std::map<std::string, attribute> a{{"kernel_shape", std::vector<std::int64_t>{kh, kw}},
                                       {"strides", std::vector<std::int64_t>{sh, sw}}};
    switch (mode) {
      case 0:  // "full": the last window may overhang, as ONNX ceil_mode
        a["pads"] = std::vector<std::int64_t>{top, left, bottom, right};
        a["ceil_mode"] = std::int64_t{1};
        break;
      case 1: a["pads"] = std::vector<std::int64_t>{top, left, bottom, right}; break;
      case 2: a["auto_pad"] = std::string("SAME_UPPER"); break;
      case 3: a["auto_pad"] = std::string("SAME_LOWER"); break;
      default: fail(errc::bad_parameter, "{}: unknown pad_mode {}", L_->where(), mode);
    }
    if (type == 1) a["count_include_pad"] = std::int64_t{L_->get_int(6, 0) != 0 ? 1 : 0};
    finish(type == 0 ? "MaxPool" : "AveragePool", {in(0).value}, 3, a);
  }

  void padding() {
    expect_counts(1, 1);
    const blob& x = in(0);
    const std::int64_t top = L_->get_int(0, 0), bottom = L_->get_int(1, 0), left = L_->get_int(2, 0),
                       right = L_->get_int(3, 0), type = L_->get_int(4, 0), front = L_->get_int(7, 0),
                       behind = L_->get_int(8, 0);
    const double value = L_->get_float(5, 0.0);
    if (L_->get_int(6, 0) != 0) fail(errc::bad_parameter, "{}: per-channel pad values are not supported", L_->where());
    for (auto p : {top, bottom, left, right, front, behind})
      if (p < 0 || p > max_dim) fail(errc::bad_parameter, "{}: negative or huge padding", L_->where());
    static const char* const modes[] = {"constant", "edge", "reflect"};
    if (type < 0 || type > 2) fail(errc::bad_parameter, "{}: unknown padding type {}", L_->where(), type);
    std::vector<std::int64_t> pads;
    if (x.rank == 3) pads = {0, front, top, left, 0, behind, bottom, right};
    else if (x.rank == 2 && front == 0 && behind == 0) pads = {0, top, left, 0, bottom, right};
    else if (x.rank == 1 && front == 0 && behind == 0 && top == 0 && bottom == 0) pads = {0, left, 0, right};
    else fail(errc::bad_parameter, "{}: padding does not fit a {}-D blob", L_->where(), x.rank);
    const std::string v = constant("value", at::scalar_tensor(value, at::kFloat));
    finish("Pad", {x.value, ints_const("pads", pads), v}, x.rank, {{"mode", std::string(modes[type])}});
  }

  void interp() {
    expect_counts(1, 1);
    need_rank(in(0), 3);
    const std::int64_t type = L_->get_int(0, 0);
    const double hs = L_->get_float(1, 1.0), ws = L_->get_float(2, 1.0);
    const std::int64_t oh = L_->get_int(3, 0), ow = L_->get_int(4, 0);
    const bool align = L_->get_int(6, 0) != 0;
    if (L_->get_int(5, 0) != 0) fail(errc::bad_parameter, "{}: dynamic target size is not supported", L_->where());
    std::map<std::string, attribute> a;
    if (type == 1) {
      a["mode"] = std::string("nearest");
      a["coordinate_transformation_mode"] = std::string("asymmetric");
      a["nearest_mode"] = std::string("floor");
    } else if (type == 2 || type == 3) {
      a["mode"] = std::string(type == 2 ? "linear" : "cubic");
      a["coordinate_transformation_mode"] = std::string(align ? "align_corners" : "half_pixel");
      a["cubic_coeff_a"] = -0.75;
    } else {
      fail(errc::bad_parameter, "{}: unknown resize_type {}", L_->where(), type);
    }
    if (oh > 0 || ow > 0) {
      if (oh <= 0 || ow <= 0 || oh > max_dim || ow > max_dim)
        fail(errc::bad_parameter, "{}: output size must give both height and width", L_->where());
      const std::string shape = step("Shape", {in(0).value});
      const std::string nc = slice(shape, {0}, {2}, {0});
      const std::string sizes = step("Concat", {nc, ints_const("hw", {oh, ow})}, {{"axis", std::int64_t{0}}});
      return finish("Resize", {in(0).value, "", "", sizes}, 3, a);
    }
    if (!(hs > 0 && ws > 0 && hs < 1e4 && ws < 1e4)) fail(errc::bad_parameter, "{}: invalid scales", L_->where());
    const std::string scales = constant("scales", at::tensor(std::vector<float>{1, 1, static_cast<float>(hs),
                                                                                static_cast<float>(ws)}));
    finish("Resize", {in(0).value, "", scales}, 3, a);
  }

  void concat() {
    if (L_->bottoms.empty() || L_->tops.size() != 1) fail(errc::bad_parameter, "{} needs inputs and one output", L_->where());
    const int rank = in(0).rank;
    std::vector<std::string> values;
    for (std::size_t i = 0; i < L_->bottoms.size(); ++i) {
      if (in(i).rank != rank || rank == 0) fail(errc::bad_parameter, "{}: inputs differ in rank", L_->where());
      values.push_back(in(i).value);
    }
    std::int64_t axis = L_->get_int(0, 0);
    if (axis < 0) axis += rank;
    if (axis < 0 || axis >= rank) fail(errc::bad_parameter, "{}: axis out of range", L_->where());
    finish("Concat", values, rank, {{"axis", axis + 1}});
  }

  void pixel_shuffle() {
    expect_counts(1, 1);
    need_rank(in(0), 3);
    const std::int64_t r = positive(0, 1, "upscale_factor");
    const std::int64_t mode = L_->get_int(1, 0);
    if (mode != 0 && mode != 1) fail(errc::bad_parameter, "{}: unknown PixelShuffle mode {}", L_->where(), mode);
    // mode 0 is PyTorch's PixelShuffle (channel c*r*r + i*r + j), ONNX DepthToSpace CRD.
    finish("DepthToSpace", {in(0).value}, 3, {{"blocksize", r}, {"mode", std::string(mode == 0 ? "CRD" : "DCR")}});
  }

  void reshape() {
    expect_counts(1, 1);
    const blob& x = in(0);
    if (L_->get_int(3, 0) != 0) fail(errc::bad_parameter, "{}: permuting Reshape is not supported", L_->where());
    if (L_->has(11)) fail(errc::bad_parameter, "{}: 4-D Reshape is not supported", L_->where());
    const std::int64_t w = L_->get_int(0, unset), h = L_->get_int(1, unset), c = L_->get_int(2, unset);
    std::vector<std::int64_t> shape;
    int rank = 0;
    if (h == unset) {
      shape = {1, w};
      rank = 1;
    } else if (c == unset) {
      shape = {1, h, w};
      rank = 2;
    } else {
      shape = {1, c, h, w};
      rank = 3;
    }
    for (std::size_t i = 1; i < shape.size(); ++i) {
      if (shape[i] == 0 && rank != x.rank)
        fail(errc::bad_parameter, "{}: size 0 (keep) needs input and output of the same rank", L_->where());
      if (shape[i] < -1 || shape[i] > max_dim) fail(errc::bad_parameter, "{}: invalid target size", L_->where());
    }
    finish("Reshape", {x.value, ints_const("shape", shape)}, rank);
  }

  std::vector<layer_line> layers_;
  bin_reader bin_;
  const layer_line* L_ = nullptr;
  graph g_;
  std::map<std::string, blob> blobs_;
  std::set<std::string> consumed_;
  std::set<std::string> used_;
  std::set<std::string> temps_;  // values named by temp(), not by the .param
  std::vector<std::string> order_;
};

}  // namespace

graph load_ncnn_bytes(std::string_view param_text, std::string_view bin_bytes) {
  try {
    auto layers = parse_param(param_text);
    return translator(std::move(layers), bin_bytes).run();
  } catch (const c10::Error& e) {
    fail(errc::bad_parameter, "malformed ncnn model: {}", e.what_without_backtrace());
  }
}

graph load_ncnn(const fs::path& param_file, const fs::path& bin_file) {
  const std::string param = read_file(param_file, "ncnn param file");
  const std::string bin = read_file(bin_file, "ncnn bin file");
  try {
    return load_ncnn_bytes(param, bin);
  } catch (const error& e) {
    throw error(e.code(), fmt::format("{}: {}", param_file.filename().string(), e.what()));
  }
}

}  // namespace acg2vec::runtime
