// Element-wise, reduction and linear-algebra kernels.
#include "core/error.h"
#include "runtime/ops.h"

#include <ATen/ExpandUtils.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace acg2vec::runtime {
namespace {

using unary_fn = at::Tensor (*)(const at::Tensor&);
using binary_fn = at::Tensor (*)(const at::Tensor&, const at::Tensor&);
using unary_inplace_fn = void (*)(at::Tensor&);
using binary_inplace_fn = void (*)(at::Tensor&, const at::Tensor&);

// In-place variants run when the executor hands over an input that nothing else reads: at batch
// 8 a ResNet activation is 25 MB, and allocating (and faulting in) a fresh one per Relu and
// residual Add cost more than the arithmetic.
void add_unary(kernel_registry& r, std::string name, unary_fn f, unary_inplace_fn in_place = nullptr) {
  r[name] = [f, in_place, name](const build_context&) -> kernel {
    return [f, in_place, name](const tensor_list& in) {
      if (in_place && reusable(in, 0)) {
        at::Tensor x = in[0];
        in_place(x);
        return tensor_list{x};
      }
      return tensor_list{f(need(in, 0, name))};
    };
  };
}

// Writes into input `target` when it is reusable and already has the result's shape and type.
bool binary_in_place(const tensor_list& in, std::size_t target, binary_inplace_fn in_place, tensor_list& out) {
  if (!in_place || !reusable(in, target) || !present(in, 1 - target)) return false;
  const at::Tensor& t = in[target];
  const at::Tensor& other = in[1 - target];
  if (at::result_type(t, other) != t.scalar_type()) return false;
  if (at::infer_size(t.sizes(), other.sizes()) != t.sizes()) return false;
  at::Tensor x = t;
  in_place(x, other);
  out = tensor_list{x};
  return true;
}

// commutative: the right operand may take the result as well.
void add_binary(kernel_registry& r, std::string name, binary_fn f, binary_inplace_fn in_place = nullptr,
                bool commutative = false) {
  r[name] = [f, in_place, commutative, name](const build_context&) -> kernel {
    return [f, in_place, commutative, name](const tensor_list& in) {
      tensor_list out;
      if (binary_in_place(in, 0, in_place, out) || (commutative && binary_in_place(in, 1, in_place, out))) return out;
      return tensor_list{f(need(in, 0, name), need(in, 1, name))};
    };
  };
}

// Variadic ops (Sum, Max, ...) fold a binary function over their inputs.
void add_variadic(kernel_registry& r, std::string name, binary_fn f, bool mean = false) {
  r[name] = [f, name, mean](const build_context&) -> kernel {
    return [f, name, mean](const tensor_list& in) {
      at::Tensor acc = need(in, 0, name);
      std::size_t count = 1;
      for (std::size_t i = 1; i < in.size(); ++i) {
        if (!in[i].defined()) continue;
        acc = f(acc, in[i]);
        ++count;
      }
      if (mean) acc = acc / static_cast<double>(count);
      return tensor_list{acc};
    };
  };
}

bool is_integral(const at::Tensor& t) { return at::isIntegralType(t.scalar_type(), /*includeBool=*/true); }

at::Tensor onnx_div(const at::Tensor& a, const at::Tensor& b) {
  if (is_integral(a) && is_integral(b)) return at::div(a, b, "trunc");
  return at::div(a, b);
}

at::Tensor onnx_pow(const at::Tensor& a, const at::Tensor& b) {
  // ONNX Pow keeps the base's type (e.g. int base, float exponent -> int).
  at::Tensor r = at::pow(a, b);
  return r.scalar_type() == a.scalar_type() ? r : r.to(a.scalar_type());
}

// Softmax-like ops before opset 13 coerce the input to 2-D at `axis`.
template <class F>
at::Tensor coerced_2d(const at::Tensor& x, std::int64_t axis, std::int64_t opset, std::int64_t since, F f) {
  const std::int64_t rank = x.dim();
  if (rank == 0) return f(x.reshape({1}), 0).reshape({});
  axis = normalize_axis(axis, rank, "softmax");
  if (opset >= since) return f(x, axis);
  std::int64_t outer = 1;
  for (std::int64_t i = 0; i < axis; ++i) outer *= x.size(i);
  at::Tensor y = f(x.reshape({outer, x.numel() / std::max<std::int64_t>(outer, 1)}), 1);
  return y.reshape(x.sizes());
}

at::Tensor hardmax_along(const at::Tensor& x, std::int64_t axis) {
  at::Tensor idx = x.argmax(axis, /*keepdim=*/true);
  return at::zeros_like(x).scatter_(axis, idx, 1);
}

// Reductions: axes come from an attribute or (ReduceSum >= 13, the others >= 18) an input.
struct reduce_spec {
  std::vector<std::int64_t> axes;
  bool axes_from_input = false;
  bool keepdims = true;
  bool noop_with_empty_axes = false;
};

using reduce_fn = at::Tensor (*)(const at::Tensor& x, at::IntArrayRef dims, bool keepdim);

void add_reduce(kernel_registry& r, std::string name, std::int64_t input_axes_since, reduce_fn f) {
  r[name] = [f, name, input_axes_since](const build_context& ctx) -> kernel {
    reduce_spec spec;
    spec.keepdims = attr_int(ctx.n, "keepdims", 1) != 0;
    spec.noop_with_empty_axes = attr_int(ctx.n, "noop_with_empty_axes", 0) != 0;
    spec.axes_from_input = ctx.opset >= input_axes_since;
    if (!spec.axes_from_input) spec.axes = attr_ints(ctx.n, "axes");
    return [f, name, spec](const tensor_list& in) {
      const at::Tensor& x = need(in, 0, name);
      std::vector<std::int64_t> axes = spec.axes;
      if (spec.axes_from_input && present(in, 1)) axes = to_ints(in[1]);
      if (axes.empty()) {
        if (spec.noop_with_empty_axes) return tensor_list{x};
        for (std::int64_t i = 0; i < x.dim(); ++i) axes.push_back(i);
      }
      for (auto& a : axes) a = normalize_axis(a, std::max<std::int64_t>(x.dim(), 1), name);
      std::sort(axes.begin(), axes.end());
      axes.erase(std::unique(axes.begin(), axes.end()), axes.end());
      if (x.dim() == 0) return tensor_list{f(x.reshape({1}), {0}, false)};
      at::Tensor y = f(x, axes, spec.keepdims);
      if (y.scalar_type() != x.scalar_type()) y = y.to(x.scalar_type());
      return tensor_list{y};
    };
  };
}

at::Tensor reduce_prod(const at::Tensor& x, at::IntArrayRef dims, bool keepdim) {
  at::Tensor y = x;
  for (auto it = dims.rbegin(); it != dims.rend(); ++it) y = y.prod(*it, keepdim);
  return y;
}

at::Tensor reduce_min_max(const at::Tensor& x, at::IntArrayRef dims, bool keepdim, bool is_max) {
  if (x.numel() == 0) {
    // ONNX defines the empty reduction as the identity element of min/max.
    std::vector<std::int64_t> shape;
    for (std::int64_t i = 0; i < x.dim(); ++i) {
      bool reduced = std::find(dims.begin(), dims.end(), i) != dims.end();
      if (!reduced) shape.push_back(x.size(i));
      else if (keepdim) shape.push_back(1);
    }
    double v = is_max ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
    if (is_integral(x)) {
      return at::full(shape, is_max ? std::numeric_limits<std::int64_t>::min() : std::numeric_limits<std::int64_t>::max(),
                      x.options().dtype(at::kLong))
          .to(x.scalar_type());
    }
    return at::full(shape, v, x.options());
  }
  return is_max ? at::amax(x, dims, keepdim) : at::amin(x, dims, keepdim);
}

void register_elementwise(kernel_registry& r) {
  add_unary(r, "Relu", +[](const at::Tensor& x) { return at::relu(x); }, +[](at::Tensor& x) { at::relu_(x); });
  add_unary(r, "Sigmoid", +[](const at::Tensor& x) { return at::sigmoid(x); }, +[](at::Tensor& x) { at::sigmoid_(x); });
  add_unary(r, "Tanh", +[](const at::Tensor& x) { return at::tanh(x); }, +[](at::Tensor& x) { at::tanh_(x); });
  add_unary(r, "Erf", +[](const at::Tensor& x) { return at::erf(x); });
  add_unary(r, "Sqrt", +[](const at::Tensor& x) { return at::sqrt(x); });
  add_unary(r, "Exp", +[](const at::Tensor& x) { return at::exp(x); });
  add_unary(r, "Log", +[](const at::Tensor& x) { return at::log(x); });
  add_unary(r, "Abs", +[](const at::Tensor& x) { return at::abs(x); });
  add_unary(r, "Neg", +[](const at::Tensor& x) { return at::neg(x); });
  add_unary(r, "Reciprocal", +[](const at::Tensor& x) { return at::reciprocal(x); });
  add_unary(r, "Sin", +[](const at::Tensor& x) { return at::sin(x); });
  add_unary(r, "Cos", +[](const at::Tensor& x) { return at::cos(x); });
  add_unary(r, "Tan", +[](const at::Tensor& x) { return at::tan(x); });
  add_unary(r, "Asin", +[](const at::Tensor& x) { return at::asin(x); });
  add_unary(r, "Acos", +[](const at::Tensor& x) { return at::acos(x); });
  add_unary(r, "Atan", +[](const at::Tensor& x) { return at::atan(x); });
  add_unary(r, "Sinh", +[](const at::Tensor& x) { return at::sinh(x); });
  add_unary(r, "Cosh", +[](const at::Tensor& x) { return at::cosh(x); });
  add_unary(r, "Asinh", +[](const at::Tensor& x) { return at::asinh(x); });
  add_unary(r, "Acosh", +[](const at::Tensor& x) { return at::acosh(x); });
  add_unary(r, "Atanh", +[](const at::Tensor& x) { return at::atanh(x); });
  add_unary(r, "Floor", +[](const at::Tensor& x) { return at::floor(x); });
  add_unary(r, "Ceil", +[](const at::Tensor& x) { return at::ceil(x); });
  add_unary(r, "Round", +[](const at::Tensor& x) { return at::round(x); });  // half to even, as ONNX
  add_unary(r, "Sign", +[](const at::Tensor& x) { return at::sign(x); });
  add_unary(r, "Not", +[](const at::Tensor& x) { return at::logical_not(x); });
  add_unary(r, "IsNaN", +[](const at::Tensor& x) { return at::isnan(x); });
  add_unary(r, "Softsign", +[](const at::Tensor& x) { return x / (at::abs(x) + 1); });
  add_unary(r, "Softplus", +[](const at::Tensor& x) { return at::log1p(at::exp(-at::abs(x))) + at::relu(x); });
  add_unary(r, "Mish", +[](const at::Tensor& x) { return at::mish(x); });
  add_unary(r, "HardSwish", +[](const at::Tensor& x) { return at::hardswish(x); });

  add_binary(
      r, "Add", +[](const at::Tensor& a, const at::Tensor& b) { return at::add(a, b); },
      +[](at::Tensor& a, const at::Tensor& b) { a.add_(b); }, /*commutative=*/true);
  add_binary(
      r, "Sub", +[](const at::Tensor& a, const at::Tensor& b) { return at::sub(a, b); },
      +[](at::Tensor& a, const at::Tensor& b) { a.sub_(b); });
  add_binary(
      r, "Mul", +[](const at::Tensor& a, const at::Tensor& b) { return at::mul(a, b); },
      +[](at::Tensor& a, const at::Tensor& b) { a.mul_(b); }, /*commutative=*/true);
  add_binary(r, "Div", &onnx_div);
  add_binary(r, "Pow", &onnx_pow);
  add_binary(r, "Equal", +[](const at::Tensor& a, const at::Tensor& b) { return at::eq(a, b); });
  add_binary(r, "Less", +[](const at::Tensor& a, const at::Tensor& b) { return at::lt(a, b); });
  add_binary(r, "LessOrEqual", +[](const at::Tensor& a, const at::Tensor& b) { return at::le(a, b); });
  add_binary(r, "Greater", +[](const at::Tensor& a, const at::Tensor& b) { return at::gt(a, b); });
  add_binary(r, "GreaterOrEqual", +[](const at::Tensor& a, const at::Tensor& b) { return at::ge(a, b); });
  add_binary(r, "And", +[](const at::Tensor& a, const at::Tensor& b) { return at::logical_and(a, b); });
  add_binary(r, "Or", +[](const at::Tensor& a, const at::Tensor& b) { return at::logical_or(a, b); });
  add_binary(r, "Xor", +[](const at::Tensor& a, const at::Tensor& b) { return at::logical_xor(a, b); });

  add_variadic(r, "Sum", +[](const at::Tensor& a, const at::Tensor& b) { return at::add(a, b); });
  add_variadic(r, "Mean", +[](const at::Tensor& a, const at::Tensor& b) { return at::add(a, b); }, true);
  add_variadic(r, "Max", +[](const at::Tensor& a, const at::Tensor& b) { return at::maximum(a, b); });
  add_variadic(r, "Min", +[](const at::Tensor& a, const at::Tensor& b) { return at::minimum(a, b); });

  r["Mod"] = [](const build_context& ctx) -> kernel {
    const bool fmod = attr_int(ctx.n, "fmod", 0) != 0;
    return [fmod](const tensor_list& in) {
      const at::Tensor& a = need(in, 0, "Mod");
      const at::Tensor& b = need(in, 1, "Mod");
      // fmod=0 takes the divisor's sign (Python %), fmod=1 the dividend's (C fmod).
      at::Tensor y = fmod ? at::fmod(a, b) : at::remainder(a, b);
      return tensor_list{y};
    };
  };

  r["Clip"] = [](const build_context& ctx) -> kernel {
    // Bounds are scalars (attributes before opset 11, one-element inputs after). Clamping to
    // Scalar bounds is a plain unary loop, several times faster than the tensor-bounds overload
    // with its broadcasting, and can run in place; ReLU6 of MobileNets is this op.
    c10::optional<at::Scalar> lo, hi;
    const bool from_attributes = ctx.opset < 11;
    if (from_attributes) {
      if (has_attr(ctx.n, "min")) lo = attr_float(ctx.n, "min", 0);
      if (has_attr(ctx.n, "max")) hi = attr_float(ctx.n, "max", 0);
    }
    return [lo, hi, from_attributes](const tensor_list& in) {
      const at::Tensor& x = need(in, 0, "Clip");
      c10::optional<at::Scalar> low = lo, high = hi;
      if (!from_attributes) {
        for (std::size_t i : {1, 2}) {
          if (!present(in, i)) continue;
          if (in[i].numel() != 1) fail(errc::bad_parameter, "Clip: bound {} must be a scalar, got {} values", i, in[i].numel());
          (i == 1 ? low : high) = in[i].to(x.scalar_type()).item();
        }
      }
      if (!low && !high) return tensor_list{x};
      if (reusable(in, 0)) {
        at::Tensor y = x;
        at::clamp_(y, low, high);
        return tensor_list{y};
      }
      return tensor_list{at::clamp(x, low, high)};
    };
  };

  r["PRelu"] = [](const build_context& ctx) -> kernel {
    const bool per_channel = ctx.opset < 7;  // before opset 7 a 1-D slope is per channel (axis 1)
    return [per_channel](const tensor_list& in) {
      const at::Tensor& x = need(in, 0, "PRelu");
      at::Tensor slope = need(in, 1, "PRelu");
      if (per_channel && slope.dim() == 1 && x.dim() > 2 && slope.size(0) == x.size(1)) {
        std::vector<std::int64_t> shape(static_cast<std::size_t>(x.dim() - 1), 1);
        shape[0] = slope.size(0);
        slope = slope.reshape(shape);
      }
      return tensor_list{at::where(x < 0, x * slope, x)};
    };
  };
  r["LeakyRelu"] = [](const build_context& ctx) -> kernel {
    const double alpha = attr_float(ctx.n, "alpha", 0.01);
    return [alpha](const tensor_list& in) { return tensor_list{at::leaky_relu(need(in, 0, "LeakyRelu"), alpha)}; };
  };
  r["Elu"] = [](const build_context& ctx) -> kernel {
    const double alpha = attr_float(ctx.n, "alpha", 1.0);
    return [alpha](const tensor_list& in) { return tensor_list{at::elu(need(in, 0, "Elu"), alpha)}; };
  };
  r["Celu"] = [](const build_context& ctx) -> kernel {
    const double alpha = attr_float(ctx.n, "alpha", 1.0);
    return [alpha](const tensor_list& in) { return tensor_list{at::celu(need(in, 0, "Celu"), alpha)}; };
  };
  r["Selu"] = [](const build_context& ctx) -> kernel {
    const double alpha = attr_float(ctx.n, "alpha", 1.67326319217681884765625);
    const double gamma = attr_float(ctx.n, "gamma", 1.05070102214813232421875);
    return [alpha, gamma](const tensor_list& in) {
      const at::Tensor& x = need(in, 0, "Selu");
      return tensor_list{at::where(x > 0, x * gamma, (at::exp(x) - 1) * (alpha * gamma))};
    };
  };
  r["ThresholdedRelu"] = [](const build_context& ctx) -> kernel {
    const double alpha = attr_float(ctx.n, "alpha", 1.0);
    return [alpha](const tensor_list& in) {
      const at::Tensor& x = need(in, 0, "ThresholdedRelu");
      return tensor_list{at::where(x > alpha, x, at::zeros_like(x))};
    };
  };
  r["HardSigmoid"] = [](const build_context& ctx) -> kernel {
    const double alpha = attr_float(ctx.n, "alpha", 0.2);
    const double beta = attr_float(ctx.n, "beta", 0.5);
    return [alpha, beta](const tensor_list& in) {
      return tensor_list{at::clamp(need(in, 0, "HardSigmoid") * alpha + beta, 0.0, 1.0)};
    };
  };
  r["Gelu"] = [](const build_context& ctx) -> kernel {
    const std::string approximate = attr_string(ctx.n, "approximate", "none");
    if (approximate != "none" && approximate != "tanh")
      fail(errc::bad_parameter, "node '{}' (Gelu): unknown approximate '{}'", ctx.n.name, approximate);
    return [approximate](const tensor_list& in) {
      if (reusable(in, 0)) {
        at::Tensor x = in[0];
        at::gelu_(x, approximate);
        return tensor_list{x};
      }
      return tensor_list{at::gelu(need(in, 0, "Gelu"), approximate)};
    };
  };
  r["IsInf"] = [](const build_context& ctx) -> kernel {
    const bool neg = attr_int(ctx.n, "detect_negative", 1) != 0;
    const bool pos = attr_int(ctx.n, "detect_positive", 1) != 0;
    return [neg, pos](const tensor_list& in) {
      const at::Tensor& x = need(in, 0, "IsInf");
      at::Tensor y = at::zeros(x.sizes(), x.options().dtype(at::kBool));
      if (pos) y = y | at::isposinf(x);
      if (neg) y = y | at::isneginf(x);
      return tensor_list{y};
    };
  };
  r["Where"] = [](const build_context&) -> kernel {
    return [](const tensor_list& in) {
      return tensor_list{at::where(need(in, 0, "Where"), need(in, 1, "Where"), need(in, 2, "Where"))};
    };
  };
  r["Cast"] = [](const build_context& ctx) -> kernel {
    const at::ScalarType to = dtype_from_onnx(attr_int(ctx.n, "to", 1));
    return [to](const tensor_list& in) { return tensor_list{need(in, 0, "Cast").to(to)}; };
  };
  r["CastLike"] = [](const build_context&) -> kernel {
    return [](const tensor_list& in) { return tensor_list{need(in, 0, "CastLike").to(need(in, 1, "CastLike").scalar_type())}; };
  };
}

void register_reductions(kernel_registry& r) {
  add_reduce(r, "ReduceSum", 13, +[](const at::Tensor& x, at::IntArrayRef d, bool k) { return at::sum(x, d, k); });
  add_reduce(r, "ReduceMean", 18, +[](const at::Tensor& x, at::IntArrayRef d, bool k) {
    return is_integral(x) ? at::mean(x.to(at::kDouble), d, k) : at::mean(x, d, k);
  });
  add_reduce(r, "ReduceMax", 18, +[](const at::Tensor& x, at::IntArrayRef d, bool k) { return reduce_min_max(x, d, k, true); });
  add_reduce(r, "ReduceMin", 18, +[](const at::Tensor& x, at::IntArrayRef d, bool k) { return reduce_min_max(x, d, k, false); });
  add_reduce(r, "ReduceProd", 18, &reduce_prod);
  add_reduce(r, "ReduceL1", 18, +[](const at::Tensor& x, at::IntArrayRef d, bool k) { return at::sum(at::abs(x), d, k); });
  add_reduce(r, "ReduceL2", 18, +[](const at::Tensor& x, at::IntArrayRef d, bool k) {
    at::Tensor xf = is_integral(x) ? x.to(at::kDouble) : x;
    return at::sqrt(at::sum(xf * xf, d, k));
  });
  add_reduce(r, "ReduceSumSquare", 18, +[](const at::Tensor& x, at::IntArrayRef d, bool k) { return at::sum(x * x, d, k); });
  add_reduce(r, "ReduceLogSum", 18, +[](const at::Tensor& x, at::IntArrayRef d, bool k) { return at::log(at::sum(x, d, k)); });
  add_reduce(r, "ReduceLogSumExp", 18, +[](const at::Tensor& x, at::IntArrayRef d, bool k) {
    return x.numel() == 0 ? at::log(at::sum(at::exp(x), d, k)) : at::logsumexp(x, d, k);
  });

  for (const char* name : {"ArgMax", "ArgMin"}) {
    const bool is_max = std::string_view(name) == "ArgMax";
    r[name] = [is_max, name](const build_context& ctx) -> kernel {
      const std::int64_t axis = attr_int(ctx.n, "axis", 0);
      const bool keepdims = attr_int(ctx.n, "keepdims", 1) != 0;
      const bool last = attr_int(ctx.n, "select_last_index", 0) != 0;
      return [=](const tensor_list& in) {
        const at::Tensor& x = need(in, 0, name);
        const std::int64_t a = normalize_axis(axis, x.dim(), name);
        // Torch returns the first extreme index; flipping finds the last one.
        at::Tensor src = last ? x.flip(a) : x;
        at::Tensor idx = is_max ? src.argmax(a, keepdims) : src.argmin(a, keepdims);
        if (last) idx = (x.size(a) - 1) - idx;
        return tensor_list{idx};
      };
    };
  }

  for (const char* name : {"Softmax", "LogSoftmax", "Hardmax"}) {
    const std::string op = name;
    r[name] = [op](const build_context& ctx) -> kernel {
      const std::int64_t opset = ctx.opset;
      const std::int64_t axis = attr_int(ctx.n, "axis", opset >= 13 ? -1 : 1);
      return [op, opset, axis](const tensor_list& in) {
        const at::Tensor& x = need(in, 0, op);
        auto f = [&](const at::Tensor& t, std::int64_t a) {
          if (op == "Softmax") return softmax_along(t, a);
          if (op == "LogSoftmax") return at::log_softmax(t, a);
          return hardmax_along(t, a);
        };
        return tensor_list{coerced_2d(x, axis, opset, 13, f)};
      };
    };
  }

  r["CumSum"] = [](const build_context& ctx) -> kernel {
    const bool exclusive = attr_int(ctx.n, "exclusive", 0) != 0;
    const bool reverse = attr_int(ctx.n, "reverse", 0) != 0;
    return [=](const tensor_list& in) {
      const at::Tensor& x = need(in, 0, "CumSum");
      const std::int64_t a = normalize_axis(to_ints(need(in, 1, "CumSum")).at(0), x.dim(), "CumSum");
      at::Tensor t = reverse ? x.flip(a) : x;
      at::Tensor y = at::cumsum(t, a, x.scalar_type());
      if (exclusive) y = y - t;
      if (reverse) y = y.flip(a);
      return tensor_list{y};
    };
  };

  r["TopK"] = [](const build_context& ctx) -> kernel {
    const std::int64_t axis = attr_int(ctx.n, "axis", -1);
    const bool largest = attr_int(ctx.n, "largest", 1) != 0;
    const std::int64_t k_attr = attr_int(ctx.n, "k", -1);
    const bool k_from_input = ctx.opset >= 10;
    return [=](const tensor_list& in) {
      const at::Tensor& x = need(in, 0, "TopK");
      const std::int64_t a = normalize_axis(axis, x.dim(), "TopK");
      const std::int64_t k = k_from_input ? to_ints(need(in, 1, "TopK")).at(0) : k_attr;
      if (k < 0 || k > x.size(a)) fail(errc::bad_parameter, "TopK: k={} out of range for axis size {}", k, x.size(a));
      // A stable sort keeps equal values in index order, which ONNX requires.
      auto [values, indices] = at::sort(x, /*stable=*/true, a, /*descending=*/largest);
      values = values.narrow(a, 0, k);
      indices = indices.narrow(a, 0, k);
      return tensor_list{values, indices};
    };
  };
}

// BLAS runs single-threaded under torch's OpenMP pool (threads.cpp), and at::mm / at::bmm call
// it from the calling thread only; large products are therefore split over the pool here, by
// rows for one matrix and by batch entries for batched products.
bool worth_splitting(const at::Tensor& a, const at::Tensor& b, std::int64_t work) {
  return at::get_num_threads() > 1 && !at::in_parallel_region() && a.scalar_type() == at::kFloat &&
         b.scalar_type() == at::kFloat && work >= (std::int64_t{1} << 18);
}

// Splits a float GEMM over the intra-op threads, each calling single-threaded BLAS on its part.
// Rows are split when every thread still gets a tall block; otherwise columns, so that short
// products (a ViT's 197 tokens, a ConvNeXt stage's 49 positions, a classifier head's one row)
// keep the full height that OpenBLAS's kernels need: one core ran 197 x 768 x 2304 at 144 GFLOP/s
// and half its rows at 117. Column parts are strided views; BLAS takes their leading dimension.
at::Tensor mm_parallel(const at::Tensor& a, const at::Tensor& b) {
  const std::int64_t m = a.size(0), n = b.size(1);
  if (a.size(1) != b.size(0) || !worth_splitting(a, b, m * n * a.size(1))) return at::mm(a, b);
  const std::int64_t threads = at::get_num_threads();
  constexpr std::int64_t tall = 256, wide = 64;
  const bool by_rows = m >= tall * threads || n < wide * threads;
  if (by_rows && m < 32) return at::mm(a, b);
  at::Tensor out = at::empty({m, n}, a.options());
  const at::Tensor ac = a.contiguous();
  const std::int64_t extent = by_rows ? m : n;
  std::int64_t grain = (extent + threads - 1) / threads;
  if (!by_rows) grain = (grain + 15) / 16 * 16;  // whole AVX-512 vectors per part
  at::parallel_for(0, extent, grain, [&](std::int64_t begin, std::int64_t end) {
    c10::InferenceMode guard;
    if (by_rows) {
      at::Tensor rows = out.narrow(0, begin, end - begin);
      at::mm_out(rows, ac.narrow(0, begin, end - begin), b);
    } else {
      at::Tensor cols = out.narrow(1, begin, end - begin);
      at::mm_out(cols, ac, b.narrow(1, begin, end - begin));
    }
  });
  return out;
}

at::Tensor onnx_matmul(const at::Tensor& a, const at::Tensor& b) {
  if (a.dim() >= 2 && b.dim() == 2) {
    std::vector<std::int64_t> shape(a.sizes().begin(), a.sizes().end() - 1);
    shape.push_back(b.size(1));
    return mm_parallel(a.reshape({-1, a.size(-1)}), b).view(shape);
  }
  if (a.dim() >= 3 && b.dim() >= 3) {
    const std::vector<std::int64_t> batch = at::infer_size(a.sizes().slice(0, a.dim() - 2), b.sizes().slice(0, b.dim() - 2));
    std::int64_t count = 1;
    for (auto d : batch) count *= d;
    const std::int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
    if (b.size(-2) == k && count >= at::get_num_threads() && worth_splitting(a, b, count * m * n * k)) {
      auto expanded = [&](const at::Tensor& t, std::int64_t rows, std::int64_t cols) {
        std::vector<std::int64_t> full = batch;
        full.push_back(rows);
        full.push_back(cols);
        return t.expand(full).reshape({count, rows, cols});
      };
      const at::Tensor a3 = expanded(a, m, k), b3 = expanded(b, k, n);
      at::Tensor out = at::empty({count, m, n}, a.options());
      at::parallel_for(0, count, 1, [&](std::int64_t begin, std::int64_t end) {
        c10::InferenceMode guard;
        for (std::int64_t i = begin; i < end; ++i) {
          at::Tensor o = out.select(0, i);
          at::mm_out(o, a3.select(0, i), b3.select(0, i));
        }
      });
      std::vector<std::int64_t> shape = batch;
      shape.push_back(m);
      shape.push_back(n);
      return out.view(shape);
    }
  }
  return at::matmul(a, b);
}

void register_linear_algebra(kernel_registry& r) {
  r["MatMul"] = [](const build_context& ctx) -> kernel {
    if (const at::Tensor* w = ctx.constant(1); w && w->dim() == 2) {
      at::Tensor b = w->contiguous();
      return [b](const tensor_list& in) { return tensor_list{onnx_matmul(need(in, 0, "MatMul"), b)}; };
    }
    return [](const tensor_list& in) { return tensor_list{onnx_matmul(need(in, 0, "MatMul"), need(in, 1, "MatMul"))}; };
  };

  r["Gemm"] = [](const build_context& ctx) -> kernel {
    const double alpha = attr_float(ctx.n, "alpha", 1.0);
    const double beta = attr_float(ctx.n, "beta", 1.0);
    const bool trans_a = attr_int(ctx.n, "transA", 0) != 0;
    const bool trans_b = attr_int(ctx.n, "transB", 0) != 0;
    at::Tensor packed_b;
    if (const at::Tensor* b = ctx.constant(1)) {
      if (b->dim() != 2) fail(errc::bad_parameter, "node '{}' (Gemm): B must be 2-D", ctx.n.name);
      packed_b = trans_b ? b->t().contiguous() : b->contiguous();
    }
    return [=](const tensor_list& in) {
      at::Tensor a = need(in, 0, "Gemm");
      at::Tensor b = packed_b.defined() ? packed_b : (trans_b ? need(in, 1, "Gemm").t() : need(in, 1, "Gemm"));
      if (a.dim() != 2 || b.dim() != 2) fail(errc::bad_parameter, "Gemm: A and B must be 2-D");
      if (trans_a) a = a.t();
      at::Tensor y = mm_parallel(a, b);
      if (alpha != 1.0) y.mul_(alpha);
      if (present(in, 2) && beta != 0.0) y.add_(in[2], beta);
      return tensor_list{y};
    };
  };

  r["Einsum"] = [](const build_context& ctx) -> kernel {
    std::string eq = attr_string(ctx.n, "equation", "");
    eq.erase(std::remove(eq.begin(), eq.end(), ' '), eq.end());
    if (eq.empty()) fail(errc::bad_parameter, "node '{}' (Einsum): empty equation", ctx.n.name);
    return [eq](const tensor_list& in) {
      std::vector<at::Tensor> operands;
      for (const auto& t : in) operands.push_back(t);
      return tensor_list{at::einsum(eq, operands)};
    };
  };
}

}  // namespace

void register_fused_ops(kernel_registry& r) {
  r["MatMulAdd"] = [](const build_context& ctx) -> kernel {
    const at::Tensor* w = ctx.constant(1);
    const at::Tensor* bias = ctx.constant(2);
    if (!w || !bias || w->dim() != 2 || bias->dim() != 1 || bias->size(0) != w->size(1))
      fail(errc::internal, "node '{}' (MatMulAdd): needs a constant 2-D weight and matching bias", ctx.n.name);
    const at::Tensor b = w->contiguous(), c = bias->contiguous();
    const std::string activation = attr_string(ctx.n, "activation", "");  // from fuse_gemm_activations
    if (!activation.empty() && activation != "Relu" && activation != "Gelu" && activation != "GeluTanh")
      fail(errc::internal, "node '{}' (MatMulAdd): unknown activation '{}'", ctx.n.name, activation);
    auto activate = [activation](at::Tensor y) {  // in place on the GEMM's fresh result
      if (activation.empty()) return y;
      return activation == "Relu" ? y.relu_() : at::gelu_(y, activation == "Gelu" ? "none" : "tanh");
    };
    return [b, c, activate](const tensor_list& in) {
      const at::Tensor& a = need(in, 0, "MatMul");
      if (a.dim() < 2) return tensor_list{activate(at::matmul(a, b) + c)};
      std::vector<std::int64_t> shape(a.sizes().begin(), a.sizes().end() - 1);
      shape.push_back(b.size(1));
      const at::Tensor a2 = a.reshape({-1, a.size(-1)});
      at::Tensor y;
      if (worth_splitting(a2, b, a2.size(0) * b.size(0) * b.size(1))) {
        y = mm_parallel(a2, b);
        y.add_(c);
      } else {
        y = at::addmm(c, a2, b);  // the bias rides in the GEMM's accumulator
      }
      return tensor_list{activate(y).view(shape)};
    };
  };
}

void register_math_ops(kernel_registry& r) {
  register_elementwise(r);
  register_reductions(r);
  register_linear_algebra(r);
}

}  // namespace acg2vec::runtime
