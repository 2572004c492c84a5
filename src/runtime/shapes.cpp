// One file because shape inference is one pass over the graph with one small rule per operator;
// the rules share the broadcasting, window and reshape helpers at the top.
#include "runtime/shapes.h"

#include "runtime/ops.h"

#include <algorithm>
#include <map>
#include <set>

namespace acg2vec::runtime {
namespace {

const static_shape unknown_shape{};

std::optional<std::vector<std::int64_t>> const_ints(const at::Tensor* t) {
  if (!t || t->dim() > 1 || !at::isIntegralType(t->scalar_type(), false)) return std::nullopt;
  return to_ints(*t);
}

bool same_shape_op(const std::string& op) {
  static const std::set<std::string> ops = {
      "Relu", "Sigmoid", "Tanh", "Erf", "Sqrt", "Exp", "Log", "Abs", "Neg", "Reciprocal", "Sin", "Cos", "Tan",
      "Floor", "Ceil", "Round", "Sign", "Not", "IsNaN", "IsInf", "Softsign", "Softplus", "Mish", "HardSwish",
      "HardSigmoid", "LeakyRelu", "Elu", "Celu", "Selu", "ThresholdedRelu", "Gelu", "Clip", "Cast", "CastLike",
      "Identity", "Dropout", "BatchNormalization", "InstanceNormalization", "LayerNormalization", "Softmax",
      "LogSoftmax", "Hardmax", "LRN", "MeanVarianceNormalization", "Shrink", "CumSum"};
  return ops.count(op) > 0;
}

bool broadcast_op(const std::string& op) {
  static const std::set<std::string> ops = {"Add", "Sub", "Mul", "Div", "Pow", "Mod", "Equal", "Less", "LessOrEqual",
                                            "Greater", "GreaterOrEqual", "And", "Or", "Xor", "PRelu", "Where", "Sum",
                                            "Mean", "Max", "Min"};
  return ops.count(op) > 0;
}

static_shape broadcast(const static_shape& a, const static_shape& b) {
  if (!a.rank_known || !b.rank_known) return {};
  const std::size_t rank = std::max(a.dims.size(), b.dims.size());
  static_shape out{true, std::vector<std::int64_t>(rank, -1)};
  for (std::size_t i = 0; i < rank; ++i) {
    const std::int64_t da = i < rank - a.dims.size() ? 1 : a.dims[i - (rank - a.dims.size())];
    const std::int64_t db = i < rank - b.dims.size() ? 1 : b.dims[i - (rank - b.dims.size())];
    if (da == 1) out.dims[i] = db;
    else if (db == 1) out.dims[i] = da;
    else if (da == db) out.dims[i] = da;
    else if (da >= 0 && db >= 0) out.dims[i] = -1;
    else if (da >= 0 || db >= 0) out.dims[i] = da >= 0 ? da : db;  // a valid model's other side is 1 or equal
    else out.dims[i] = -1;
  }
  return out;
}

std::int64_t product(const std::vector<std::int64_t>& dims, std::size_t from, std::size_t to) {
  std::int64_t p = 1;
  for (std::size_t i = from; i < to; ++i) {
    if (dims[i] < 0) return -1;
    p *= dims[i];
  }
  return p;
}

// Spatial output size for Conv and (floor-mode) pooling.
std::vector<static_shape> window_op(const node& n, const std::vector<static_shape>& in, bool conv) {
  const static_shape& x = in[0];
  if (!x.rank_known || x.dims.size() < 3) return {};
  const std::size_t spatial = x.dims.size() - 2;
  std::vector<std::int64_t> kernel = attr_ints(n, "kernel_shape");
  if (kernel.empty() && conv && in.size() > 1 && in[1].rank_known && in[1].dims.size() == spatial + 2)
    kernel.assign(in[1].dims.begin() + 2, in[1].dims.end());
  const auto strides = attr_ints(n, "strides", std::vector<std::int64_t>(spatial, 1));
  const auto dilations = attr_ints(n, "dilations", std::vector<std::int64_t>(spatial, 1));
  const auto pads = attr_ints(n, "pads", std::vector<std::int64_t>(2 * spatial, 0));
  const std::string auto_pad = attr_string(n, "auto_pad", "NOTSET");
  if (kernel.size() != spatial || strides.size() != spatial || dilations.size() != spatial ||
      pads.size() != 2 * spatial || attr_int(n, "ceil_mode", 0) != 0)
    return {};
  static_shape out{true, x.dims};
  if (conv) out.dims[1] = in.size() > 1 && in[1].rank_known && !in[1].dims.empty() ? in[1].dims[0] : -1;
  for (std::size_t i = 0; i < spatial; ++i) {
    const std::int64_t d = x.dims[i + 2];
    if (d < 0 || strides[i] <= 0 || kernel[i] < 0) {
      out.dims[i + 2] = -1;
      continue;
    }
    const std::int64_t eff = (kernel[i] - 1) * dilations[i] + 1;
    if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") out.dims[i + 2] = (d + strides[i] - 1) / strides[i];
    else if (auto_pad == "VALID") out.dims[i + 2] = (d - eff) / strides[i] + 1;
    else if (auto_pad == "NOTSET") out.dims[i + 2] = (d + pads[i] + pads[i + spatial] - eff) / strides[i] + 1;
    else out.dims[i + 2] = -1;
    if (out.dims[i + 2] < 0) out.dims[i + 2] = -1;
  }
  return {out};
}

std::optional<std::vector<std::int64_t>> axes_of(const node& n, std::int64_t opset, std::int64_t input_since,
                                                 const std::vector<const at::Tensor*>& constants, bool& present) {
  present = true;
  if (opset >= input_since) {
    if (n.inputs.size() < 2 || n.inputs[1].empty()) {
      present = false;
      return std::vector<std::int64_t>{};
    }
    return const_ints(constants.size() > 1 ? constants[1] : nullptr);
  }
  present = has_attr(n, "axes");
  return attr_ints(n, "axes");
}

// What a shape rule sees of one node: its attributes, opset, input shapes, load-time constants
// and partly known values.
struct shape_args {
  const std::string& op;
  const node& n;
  std::int64_t opset;
  const std::vector<static_shape>& in;
  const std::vector<const at::Tensor*>& constants;
  const std::vector<const partial_value*>& partials;
  const static_shape& x;  ///< the first input's shape
  std::int64_t rank;      ///< x's rank; -1 when unknown

  [[nodiscard]] const at::Tensor* c(std::size_t i) const { return i < constants.size() ? constants[i] : nullptr; }
  // A shape-valued input (Expand, ConstantOfShape) as dimensions, from a constant or a partial.
  [[nodiscard]] std::optional<static_shape> shape_input(std::size_t i) const {
    if (auto v = const_ints(c(i))) return static_shape{true, *v};
    if (i < partials.size() && partials[i] && !partials[i]->scalar) {
      static_shape s{true, {}};
      for (const auto& e : partials[i]->values)
        s.dims.push_back(e.value ? (*e.value >= 0 ? *e.value : -1) : (e.symbol <= -2 ? e.symbol : -1));
      return s;
    }
    return std::nullopt;
  }
};

using shape_fn = std::vector<static_shape> (*)(const shape_args&);
struct shape_rule {
  shape_fn fn;
  bool needs_rank;  ///< the rule reads x's dimensions: unknown when x's rank is
};

std::vector<static_shape> constant_of_shape_shape(const shape_args& q) {
  if (auto s = q.shape_input(0)) return {*s};
  return {};
}

std::vector<static_shape> range_shape(const shape_args& q) {
  const std::vector<const partial_value*>& partials = q.partials;
  // arange(0, n, 1) with a symbolic n, as exporters write position ids.
  const at::Tensor *start = q.c(0), *delta = q.c(2);
  const partial_value* limit = partials.size() > 1 ? partials[1] : nullptr;
  if (start && delta && limit && limit->scalar && limit->values.size() == 1 && to_double(*start) == 0.0 &&
      to_double(*delta) == 1.0) {
    const auto& e = limit->values[0];
    return {static_shape{true, {e.value ? *e.value : (e.symbol <= -2 ? e.symbol : -1)}}};
  }
  return {};
}

// Element-wise ops (and ScatterND / ScatterElements): the first input's shape.
std::vector<static_shape> same_shape(const shape_args& q) {
  const static_shape& x = q.x;
  return {x};
}

std::vector<static_shape> broadcast_shape(const shape_args& q) {
  const node& n = q.n;
  const std::vector<static_shape>& in = q.in;
  const static_shape& x = q.x;
  static_shape s = x;
  for (std::size_t i = 1; i < in.size(); ++i)
    if (!n.inputs[i].empty()) s = broadcast(s, in[i]);
  return {s};
}

std::vector<static_shape> conv_shape(const shape_args& q) {
  const node& n = q.n;
  const std::vector<static_shape>& in = q.in;
  return window_op(n, in, true);
}

std::vector<static_shape> pool_shape(const shape_args& q) {
  const node& n = q.n;
  const std::vector<static_shape>& in = q.in;
  if (n.outputs.size() > 1) return {};
  return window_op(n, in, false);
}

std::vector<static_shape> global_pool_shape(const shape_args& q) {
  const static_shape& x = q.x;
  const std::int64_t rank = q.rank;
  if (rank < 3) return {};
  static_shape s = x;
  std::fill(s.dims.begin() + 2, s.dims.end(), 1);
  return {s};
}

// MatMul, and MatMulAdd (the fused MatMul + bias).
std::vector<static_shape> matmul_shape(const shape_args& q) {
  const static_shape& x = q.x;
  const std::int64_t rank = q.rank;
  const static_shape& b = q.in.size() > 1 ? q.in[1] : unknown_shape;
  if (!b.rank_known || rank < 2 || b.dims.size() < 2) return {};
  static_shape ba{true, {x.dims.begin(), x.dims.end() - 2}}, bb{true, {b.dims.begin(), b.dims.end() - 2}};
  static_shape s = broadcast(ba, bb);
  s.dims.push_back(x.dims[x.dims.size() - 2]);
  s.dims.push_back(b.dims.back());
  return {s};
}

// Attention(Q, K^T, V) (the fused MatMul-Softmax-MatMul): Q's rows, V's columns.
std::vector<static_shape> attention_shape(const shape_args& q) {
  std::vector<static_shape> s = matmul_shape(q);
  const static_shape& v = q.in.size() > 2 ? q.in[2] : unknown_shape;
  if (s.empty() || !v.rank_known || v.dims.size() < 2) return {};
  static_shape bv{true, {v.dims.begin(), v.dims.end() - 2}};
  static_shape out = broadcast(static_shape{true, {s[0].dims.begin(), s[0].dims.end() - 2}}, bv);
  out.dims.push_back(s[0].dims[s[0].dims.size() - 2]);
  out.dims.push_back(v.dims.back());
  return {out};
}

std::vector<static_shape> gemm_shape(const shape_args& q) {
  const node& n = q.n;
  const std::vector<static_shape>& in = q.in;
  const static_shape& x = q.x;
  const std::int64_t rank = q.rank;
  const static_shape& b = in.size() > 1 ? in[1] : unknown_shape;
  if (!b.rank_known || rank != 2 || b.dims.size() != 2) return {};
  const std::int64_t m = attr_int(n, "transA", 0) ? x.dims[1] : x.dims[0];
  const std::int64_t nn = attr_int(n, "transB", 0) ? b.dims[0] : b.dims[1];
  return {static_shape{true, {m, nn}}};
}

std::vector<static_shape> transpose_shape(const shape_args& q) {
  const node& n = q.n;
  const static_shape& x = q.x;
  const std::int64_t rank = q.rank;
  std::vector<std::int64_t> perm = attr_ints(n, "perm");
  if (perm.empty())
    for (std::int64_t i = rank; i-- > 0;) perm.push_back(i);
  if (static_cast<std::int64_t>(perm.size()) != rank) return {};
  static_shape s{true, {}};
  for (auto p : perm) {
    if (p < 0 || p >= rank) return {};
    s.dims.push_back(x.dims[static_cast<std::size_t>(p)]);
  }
  return {s};
}

std::vector<static_shape> reshape_shape(const shape_args& q) {
  const node& n = q.n;
  const static_shape& x = q.x;
  const std::int64_t rank = q.rank;
  auto shape = const_ints(q.c(1));
  if (!shape) return {};
  const bool allowzero = attr_int(n, "allowzero", 0) != 0;
  static_shape s{true, *shape};
  std::int64_t infer_at = -1;
  for (std::size_t i = 0; i < s.dims.size(); ++i) {
    if (s.dims[i] == 0 && !allowzero) s.dims[i] = static_cast<std::int64_t>(i) < rank ? x.dims[i] : -1;
    else if (s.dims[i] == -1) infer_at = static_cast<std::int64_t>(i);
  }
  if (infer_at >= 0) s = resolve_reshape(x, s.dims);
  return {s};
}

std::vector<static_shape> flatten_shape(const shape_args& q) {
  const node& n = q.n;
  const static_shape& x = q.x;
  const std::int64_t rank = q.rank;
  std::int64_t axis = attr_int(n, "axis", 1);
  if (axis < 0) axis += rank;
  if (axis < 0 || axis > rank) return {};
  const auto a = static_cast<std::size_t>(axis);
  auto group = [&](std::size_t from, std::size_t to) { return to - from == 1 ? x.dims[from] : product(x.dims, from, to); };
  return {static_shape{true, {group(0, a), group(a, x.dims.size())}}};
}

std::vector<static_shape> concat_shape(const shape_args& q) {
  const node& n = q.n;
  const std::vector<static_shape>& in = q.in;
  const static_shape& x = q.x;
  const std::int64_t rank = q.rank;
  std::int64_t axis = attr_int(n, "axis", 0);
  if (axis < 0) axis += rank;
  if (axis < 0 || axis >= rank) return {};
  static_shape s = x;
  std::int64_t total = 0;
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (n.inputs[i].empty()) continue;
    if (!in[i].rank_known || static_cast<std::int64_t>(in[i].dims.size()) != rank) return {};
    const std::int64_t d = in[i].dims[static_cast<std::size_t>(axis)];
    total = total < 0 || d < 0 ? -1 : total + d;
    for (std::size_t k = 0; k < s.dims.size(); ++k)
      if (static_cast<std::int64_t>(k) != axis && s.dims[k] < 0) s.dims[k] = in[i].dims[k];
  }
  s.dims[static_cast<std::size_t>(axis)] = total;
  return {s};
}

std::vector<static_shape> squeeze_unsqueeze_shape(const shape_args& q) {
  const std::string& op = q.op;
  const node& n = q.n;
  const std::int64_t opset = q.opset;
  const std::vector<const at::Tensor*>& constants = q.constants;
  const static_shape& x = q.x;
  const std::int64_t rank = q.rank;
  bool present = true;
  auto axes = axes_of(n, opset, 13, constants, present);
  if (!axes) return {};
  if (op == "Unsqueeze") {
    const std::int64_t out_rank = rank + static_cast<std::int64_t>(axes->size());
    for (auto& a : *axes) a = a < 0 ? a + out_rank : a;
    std::sort(axes->begin(), axes->end());
    static_shape s{true, {}};
    std::size_t src = 0, k = 0;
    for (std::int64_t i = 0; i < out_rank; ++i) {
      if (k < axes->size() && (*axes)[k] == i) {
        s.dims.push_back(1);
        ++k;
      } else {
        if (src >= x.dims.size()) return {};
        s.dims.push_back(x.dims[src++]);
      }
    }
    return {s};
  }
  static_shape s{true, {}};
  if (axes->empty()) {
    for (auto d : x.dims) {
      if (d < 0) return {};
      if (d != 1) s.dims.push_back(d);
    }
    return {s};
  }
  for (auto& a : *axes) a = a < 0 ? a + rank : a;
  for (std::int64_t i = 0; i < rank; ++i)
    if (std::find(axes->begin(), axes->end(), i) == axes->end()) s.dims.push_back(x.dims[static_cast<std::size_t>(i)]);
  return {s};
}

std::vector<static_shape> slice_shape(const shape_args& q) {
  const node& n = q.n;
  const std::int64_t opset = q.opset;
  const static_shape& x = q.x;
  const std::int64_t rank = q.rank;
  std::optional<std::vector<std::int64_t>> starts, ends, axes, steps;
  if (opset >= 10) {
    starts = const_ints(q.c(1));
    ends = const_ints(q.c(2));
    axes = n.inputs.size() > 3 && !n.inputs[3].empty() ? const_ints(q.c(3)) : std::vector<std::int64_t>{};
    steps = n.inputs.size() > 4 && !n.inputs[4].empty() ? const_ints(q.c(4)) : std::vector<std::int64_t>{};
  } else {
    starts = attr_ints(n, "starts");
    ends = attr_ints(n, "ends");
    axes = attr_ints(n, "axes");
    steps = std::vector<std::int64_t>{};
  }
  if (!starts || !ends || !axes || !steps || starts->size() != ends->size()) return {};
  if (axes->empty())
    for (std::size_t i = 0; i < starts->size(); ++i) axes->push_back(static_cast<std::int64_t>(i));
  if (steps->empty()) steps->assign(starts->size(), 1);
  if (axes->size() != starts->size() || steps->size() != starts->size()) return {};
  static_shape s = x;
  for (std::size_t i = 0; i < starts->size(); ++i) {
    std::int64_t a = (*axes)[i] < 0 ? (*axes)[i] + rank : (*axes)[i];
    if (a < 0 || a >= rank) return {};
    const std::int64_t dim = x.dims[static_cast<std::size_t>(a)];
    const std::int64_t step = (*steps)[i];
    if (dim < 0 || step == 0) {
      const bool whole = step == 1 && (*starts)[i] == 0 && (*ends)[i] >= (std::int64_t{1} << 31);
      s.dims[static_cast<std::size_t>(a)] = whole ? dim : -1;
      continue;
    }
    std::int64_t st = (*starts)[i], en = (*ends)[i];
    if (st < 0) st = st < -dim ? 0 : st + dim;
    if (en < 0) en = en < -dim ? -1 : en + dim;
    std::int64_t len;
    if (step > 0) {
      st = std::clamp<std::int64_t>(st, 0, dim);
      en = std::clamp<std::int64_t>(en, 0, dim);
      len = en > st ? (en - st + step - 1) / step : 0;
    } else {
      st = std::clamp<std::int64_t>(st, -1, dim - 1);
      en = std::clamp<std::int64_t>(en, -1, dim - 1);
      len = st > en ? (st - en + (-step) - 1) / (-step) : 0;
    }
    s.dims[static_cast<std::size_t>(a)] = len;
  }
  return {s};
}

std::vector<static_shape> gather_shape(const shape_args& q) {
  const node& n = q.n;
  const std::vector<static_shape>& in = q.in;
  const static_shape& x = q.x;
  const std::int64_t rank = q.rank;
  const static_shape& idx = in.size() > 1 ? in[1] : unknown_shape;
  if (!idx.rank_known) return {};
  std::int64_t axis = attr_int(n, "axis", 0);
  if (axis < 0) axis += rank;
  if (axis < 0 || axis >= rank) return {};
  static_shape s{true, {x.dims.begin(), x.dims.begin() + axis}};
  s.dims.insert(s.dims.end(), idx.dims.begin(), idx.dims.end());
  s.dims.insert(s.dims.end(), x.dims.begin() + axis + 1, x.dims.end());
  return {s};
}

std::vector<static_shape> reduce_shape(const shape_args& q) {
  const std::string& op = q.op;
  const node& n = q.n;
  const std::int64_t opset = q.opset;
  const std::vector<const at::Tensor*>& constants = q.constants;
  const static_shape& x = q.x;
  const std::int64_t rank = q.rank;
  bool present = true;
  auto axes = axes_of(n, opset, op == "ReduceSum" ? 13 : 18, constants, present);
  if (!axes) return {};
  const bool keep = attr_int(n, "keepdims", 1) != 0;
  if (axes->empty()) {
    if (attr_int(n, "noop_with_empty_axes", 0) != 0) return {x};
    for (std::int64_t i = 0; i < rank; ++i) axes->push_back(i);
  }
  for (auto& a : *axes) a = a < 0 ? a + rank : a;
  static_shape s{true, {}};
  for (std::int64_t i = 0; i < rank; ++i) {
    const bool reduced = std::find(axes->begin(), axes->end(), i) != axes->end();
    if (!reduced) s.dims.push_back(x.dims[static_cast<std::size_t>(i)]);
    else if (keep) s.dims.push_back(1);
  }
  return {s};
}

std::vector<static_shape> shape_op_shape(const shape_args& q) {
  const node& n = q.n;
  const std::int64_t rank = q.rank;
  auto clip = [rank](std::int64_t v) { return std::clamp<std::int64_t>(v < 0 ? v + rank : v, 0, rank); };
  const std::int64_t s0 = clip(attr_int(n, "start", 0));
  const std::int64_t e0 = has_attr(n, "end") ? clip(attr_int(n, "end", 0)) : rank;
  return {static_shape{true, {std::max<std::int64_t>(e0 - s0, 0)}}};
}

std::vector<static_shape> expand_shape(const shape_args& q) {
  const static_shape& x = q.x;
  if (auto s = q.shape_input(1)) return {broadcast(x, *s)};
  return {};
}

std::vector<static_shape> pad_shape(const shape_args& q) {
  const node& n = q.n;
  const std::int64_t opset = q.opset;
  const static_shape& x = q.x;
  const std::int64_t rank = q.rank;
  if (n.inputs.size() > 3 && !n.inputs[3].empty()) return {};
  auto pads = opset >= 11 ? const_ints(q.c(1)) : std::optional<std::vector<std::int64_t>>(attr_ints(n, "pads"));
  if (!pads || static_cast<std::int64_t>(pads->size()) != 2 * rank) return {};
  static_shape s = x;
  for (std::int64_t i = 0; i < rank; ++i) {
    auto& d = s.dims[static_cast<std::size_t>(i)];
    if (d >= 0) d += (*pads)[static_cast<std::size_t>(i)] + (*pads)[static_cast<std::size_t>(i + rank)];
  }
  return {s};
}

// Shape rule per op type; element-wise, broadcasting and Reduce* ops share theirs.
const std::map<std::string, shape_rule, std::less<>>& shape_rules() {
  static const std::map<std::string, shape_rule, std::less<>> rules{
      {"ConstantOfShape", {&constant_of_shape_shape, false}},
      {"Range", {&range_shape, false}},
      {"ScatterND", {&same_shape, false}},
      {"ScatterElements", {&same_shape, false}},
      {"Conv", {&conv_shape, false}},
      {"MaxPool", {&pool_shape, false}},
      {"AveragePool", {&pool_shape, false}},
      {"GlobalAveragePool", {&global_pool_shape, true}},
      {"GlobalMaxPool", {&global_pool_shape, true}},
      {"MatMul", {&matmul_shape, true}},
      {"MatMulAdd", {&matmul_shape, true}},
      {"Attention", {&attention_shape, true}},
      {"Gemm", {&gemm_shape, true}},
      {"Transpose", {&transpose_shape, true}},
      {"Reshape", {&reshape_shape, true}},
      {"Flatten", {&flatten_shape, true}},
      {"Concat", {&concat_shape, true}},
      {"Unsqueeze", {&squeeze_unsqueeze_shape, true}},
      {"Squeeze", {&squeeze_unsqueeze_shape, true}},
      {"Slice", {&slice_shape, true}},
      {"Gather", {&gather_shape, true}},
      {"Shape", {&shape_op_shape, true}},
      {"Expand", {&expand_shape, true}},
      {"Pad", {&pad_shape, true}},
  };
  return rules;
}

}  // namespace

static_shape resolve_reshape(const static_shape& input, std::vector<std::int64_t> dims) {
  // dims: known sizes, symbols and at most one -1; the -1 is what the element count leaves,
  // with symbols cancelling between input and output.
  std::size_t infer_at = dims.size();
  for (std::size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] != -1) continue;
    if (infer_at != dims.size()) return {true, dims};  // two unknowns: nothing to resolve
    infer_at = i;
  }
  if (infer_at == dims.size() || !input.rank_known) return {true, dims};
  std::multiset<std::int64_t> in_symbols, out_symbols;
  std::int64_t in_known = 1, out_known = 1;
  for (auto d : input.dims) {
    if (d == -1) return {true, dims};
    if (d >= 0) in_known *= d;
    else in_symbols.insert(d);
  }
  for (std::size_t i = 0; i < dims.size(); ++i) {
    if (i == infer_at) continue;
    if (dims[i] >= 0) out_known *= dims[i];
    else out_symbols.insert(dims[i]);
  }
  for (auto sym : out_symbols) {
    auto it = in_symbols.find(sym);
    if (it == in_symbols.end()) return {true, dims};
    in_symbols.erase(it);
  }
  if (out_known <= 0 || in_known % out_known != 0) return {true, dims};
  if (in_symbols.empty()) dims[infer_at] = in_known / out_known;
  else if (in_symbols.size() == 1 && in_known == out_known) dims[infer_at] = *in_symbols.begin();
  return {true, dims};
}

at::Tensor partial_value::to_tensor() const {
  std::vector<std::int64_t> v;
  for (const auto& x : values) v.push_back(x.value.value_or(0));
  at::Tensor t = at::tensor(v, at::kLong).to(dtype);
  return scalar ? t.reshape({}) : t;
}

std::vector<static_shape> infer_shapes(const node& n, std::int64_t opset, const std::vector<static_shape>& in,
                                       const std::vector<const at::Tensor*>& constants,
                                       const std::vector<const partial_value*>& partials) {
  const static_shape& x = in.empty() ? unknown_shape : in[0];
  const shape_args q{n.op_type, n, opset, in, constants, partials, x,
                     x.rank_known ? static_cast<std::int64_t>(x.dims.size()) : -1};
  const auto& rules = shape_rules();
  static const shape_rule same{&same_shape, false}, elementwise{&broadcast_shape, false}, reduce{&reduce_shape, true};
  const std::string& op = n.op_type;
  auto it = rules.find(op);
  const shape_rule* rule = it != rules.end()              ? &it->second
                           : same_shape_op(op)            ? &same
                           : broadcast_op(op)             ? &elementwise
                           : op.rfind("Reduce", 0) == 0   ? &reduce
                                                          : nullptr;
  if (!rule || (rule->needs_rank && !x.rank_known)) return {};
  return rule->fn(q);
}

std::optional<partial_value> infer_partial(const node& n, std::int64_t opset, const std::vector<static_shape>& shapes,
                                           const std::vector<const partial_value*>& partials,
                                           const std::vector<const at::Tensor*>& constants) {
  const std::string& op = n.op_type;
  // Inputs as partial values: either tracked partials or small integer constants.
  auto value_of = [&](std::size_t i) -> std::optional<partial_value> {
    if (i < partials.size() && partials[i]) return *partials[i];
    const at::Tensor* t = i < constants.size() ? constants[i] : nullptr;
    if (!t || t->dim() > 1 || t->numel() > 64 || !at::isIntegralType(t->scalar_type(), true)) return std::nullopt;
    partial_value p;
    p.scalar = t->dim() == 0;
    p.dtype = t->scalar_type();
    for (auto v : to_ints(*t)) p.values.push_back({v, -1});
    return p;
  };
  if (op == "Shape") {
    if (shapes.empty() || !shapes[0].rank_known) return std::nullopt;
    const auto rank = static_cast<std::int64_t>(shapes[0].dims.size());
    auto clip = [rank](std::int64_t v) { return std::clamp<std::int64_t>(v < 0 ? v + rank : v, 0, rank); };
    const std::int64_t s0 = clip(attr_int(n, "start", 0));
    const std::int64_t e0 = has_attr(n, "end") ? clip(attr_int(n, "end", 0)) : rank;
    partial_value p;
    for (std::int64_t i = s0; i < e0; ++i) {
      const std::int64_t d = shapes[0].dims[static_cast<std::size_t>(i)];
      if (d >= 0) p.values.push_back({d, -1});
      else p.values.push_back({std::nullopt, d});
    }
    return p;
  }
  if (op == "Size") {
    if (shapes.empty() || !shapes[0].fully_known()) return std::nullopt;
    std::int64_t total = 1;
    for (auto d : shapes[0].dims) total *= d;
    return partial_value{true, {{total, -1}}, at::kLong};
  }
  // Everything below needs at least one tracked partial input to be worth doing.
  bool any_partial = false;
  for (const auto* p : partials) any_partial = any_partial || p;
  if (!any_partial) return std::nullopt;

  if (op == "Identity") return value_of(0);
  if (op == "Reshape") {
    auto v = value_of(0);
    auto shape = value_of(1);
    if (!v || !shape || !shape->fully_known() || shape->values.size() != 1) return std::nullopt;
    const std::int64_t len = *shape->values[0].value;
    if (len != -1 && len != static_cast<std::int64_t>(v->values.size())) return std::nullopt;
    v->scalar = false;
    return v;
  }
  if (op == "Equal") {
    auto a = value_of(0), b = value_of(1);
    if (!a || !b) return std::nullopt;
    const std::size_t count = std::max(a->values.size(), b->values.size());
    if ((a->values.size() != count && a->values.size() != 1) || (b->values.size() != count && b->values.size() != 1))
      return std::nullopt;
    partial_value p{a->scalar && b->scalar, {}, at::kBool};
    for (std::size_t i = 0; i < count; ++i) {
      const auto& x = a->values[a->values.size() == 1 ? 0 : i];
      const auto& y = b->values[b->values.size() == 1 ? 0 : i];
      if (x.value && y.value) p.values.push_back({*x.value == *y.value ? 1 : 0, -1});
      // A dimension symbol stands for a size >= 0, never equal to a negative constant.
      else if ((x.symbol <= -2 && y.value && *y.value < 0) || (y.symbol <= -2 && x.value && *x.value < 0))
        p.values.push_back({0, -1});
      else if (x.symbol <= -2 && x.symbol == y.symbol) p.values.push_back({1, -1});
      else p.values.push_back({});
    }
    return p;
  }
  if (op == "Where") {
    auto cond = value_of(0), a = value_of(1), b = value_of(2);
    if (!cond || !a || !b) return std::nullopt;
    const std::size_t count = std::max({cond->values.size(), a->values.size(), b->values.size()});
    for (const auto* v : {&*cond, &*a, &*b})
      if (v->values.size() != count && v->values.size() != 1) return std::nullopt;
    partial_value p{cond->scalar && a->scalar && b->scalar, {}, a->dtype};
    for (std::size_t i = 0; i < count; ++i) {
      const auto& k = cond->values[cond->values.size() == 1 ? 0 : i];
      if (!k.value) {
        p.values.push_back({});
        continue;
      }
      const auto& src = *k.value ? *a : *b;
      p.values.push_back(src.values[src.values.size() == 1 ? 0 : i]);
    }
    return p;
  }
  if (op == "Cast") {
    auto v = value_of(0);
    const std::int64_t to = attr_int(n, "to", 1);
    if (!v || (to != 6 && to != 7)) return std::nullopt;
    v->dtype = to == 6 ? at::kInt : at::kLong;
    return v;
  }
  if (op == "Gather") {
    auto data = value_of(0);
    auto idx = value_of(1);
    if (!data || data->scalar || !idx || !idx->fully_known() || attr_int(n, "axis", 0) != 0) return std::nullopt;
    partial_value p{idx->scalar, {}, data->dtype};
    const auto size = static_cast<std::int64_t>(data->values.size());
    for (const auto& e : idx->values) {
      const std::int64_t i = *e.value;
      std::int64_t k = i < 0 ? i + size : i;
      if (k < 0 || k >= size) return std::nullopt;
      p.values.push_back(data->values[static_cast<std::size_t>(k)]);
    }
    return p;
  }
  if (op == "Unsqueeze") {
    auto v = value_of(0);
    if (!v || !v->scalar) return std::nullopt;
    bool present = true;
    auto axes = axes_of(n, opset, 13, constants, present);
    if (!axes || axes->size() != 1 || ((*axes)[0] != 0 && (*axes)[0] != -1)) return std::nullopt;
    v->scalar = false;
    return v;
  }
  if (op == "Squeeze") {
    auto v = value_of(0);
    if (!v || v->scalar || v->values.size() != 1) return std::nullopt;
    v->scalar = true;
    return v;
  }
  if (op == "Concat") {
    partial_value p;
    bool first = true;
    for (std::size_t i = 0; i < n.inputs.size(); ++i) {
      if (n.inputs[i].empty()) continue;
      auto v = value_of(i);
      if (!v || v->scalar) return std::nullopt;
      if (first) p.dtype = v->dtype;
      first = false;
      p.values.insert(p.values.end(), v->values.begin(), v->values.end());
    }
    return p;
  }
  if (op == "Slice" && opset >= 10) {
    auto v = value_of(0);
    auto st = value_of(1), en = value_of(2);
    if (!v || v->scalar || !st || !en || !st->fully_known() || !en->fully_known() || st->values.size() != 1 ||
        en->values.size() != 1)
      return std::nullopt;
    std::int64_t step = 1;
    if (n.inputs.size() > 3 && !n.inputs[3].empty()) {
      auto ax = value_of(3);
      if (!ax || !ax->fully_known() || ax->values.size() != 1 ||
          (*ax->values[0].value != 0 && *ax->values[0].value != -1))
        return std::nullopt;
    }
    if (n.inputs.size() > 4 && !n.inputs[4].empty()) {
      auto sp = value_of(4);
      if (!sp || !sp->fully_known() || sp->values.size() != 1) return std::nullopt;
      step = *sp->values[0].value;
    }
    if (step <= 0) return std::nullopt;
    const auto dim = static_cast<std::int64_t>(v->values.size());
    std::int64_t s = *st->values[0].value, e = *en->values[0].value;
    if (s < 0) s = s < -dim ? 0 : s + dim;
    if (e < 0) e = e < -dim ? -1 : e + dim;
    s = std::clamp<std::int64_t>(s, 0, dim);
    e = std::clamp<std::int64_t>(e, 0, dim);
    partial_value p{false, {}, v->dtype};
    for (std::int64_t i = s; i < e; i += step) p.values.push_back(v->values[static_cast<std::size_t>(i)]);
    return p;
  }
  if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div") {
    auto a = value_of(0), b = value_of(1);
    if (!a || !b || a->dtype != b->dtype) return std::nullopt;
    const std::size_t count = std::max(a->values.size(), b->values.size());
    if ((a->values.size() != count && a->values.size() != 1) || (b->values.size() != count && b->values.size() != 1))
      return std::nullopt;
    partial_value p{a->scalar && b->scalar, {}, a->dtype};
    for (std::size_t i = 0; i < count; ++i) {
      const auto& x = a->values[a->values.size() == 1 ? 0 : i].value;
      const auto& y = b->values[b->values.size() == 1 ? 0 : i].value;
      if (!x || !y || (op == "Div" && *y == 0)) {
        p.values.push_back({});
        continue;
      }
      p.values.push_back({op == "Add" ? *x + *y : op == "Sub" ? *x - *y : op == "Mul" ? *x * *y : *x / *y, -1});
    }
    return p;
  }
  return std::nullopt;
}

std::optional<std::vector<std::int64_t>> static_reshape_target(const static_shape& input, const partial_value& target,
                                                               bool allowzero) {
  std::vector<std::int64_t> out;
  std::vector<std::size_t> open;  // entries still dynamic after copying matching input dims
  bool has_infer = false;
  for (std::size_t i = 0; i < target.values.size(); ++i) {
    const auto& e = target.values[i];
    if (e.value) {
      if (*e.value == -1) has_infer = true;
      else if (*e.value < 0 || (*e.value == 0 && allowzero)) return std::nullopt;
      out.push_back(*e.value);
      continue;
    }
    // A dynamic entry equal to the input dimension at the same index is copied with 0.
    if (!allowzero && e.symbol <= -2 && input.rank_known && i < input.dims.size() && input.dims[i] == e.symbol) {
      out.push_back(0);
      continue;
    }
    open.push_back(i);
    out.push_back(-1);
  }
  if (open.empty()) return out;
  if (open.size() > 1) return std::nullopt;
  if (!has_infer) return out;  // the single dynamic entry becomes -1
  // The target already has a -1: resolve it from element counts, cancelling symbols, so that the
  // dynamic entry can take the -1 instead.
  const auto& dyn = target.values[open[0]];
  if (dyn.symbol > -2 || !input.rank_known) return std::nullopt;
  std::multiset<std::int64_t> in_symbols, out_symbols{dyn.symbol};
  std::int64_t in_known = 1, out_known = 1;
  for (auto d : input.dims) {
    if (d >= 0) in_known *= d;
    else if (d <= -2) in_symbols.insert(d);
    else return std::nullopt;
  }
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (i == open[0] || out[i] == -1) continue;
    if (out[i] == 0) {
      out_symbols.insert(input.dims[i]);
      continue;
    }
    out_known *= out[i];
  }
  if (in_symbols != out_symbols || out_known == 0 || in_known % out_known != 0) return std::nullopt;
  for (std::size_t i = 0; i < out.size(); ++i)
    if (out[i] == -1 && i != open[0]) out[i] = in_known / out_known;
  return out;
}

}  // namespace acg2vec::runtime
