// Neural-network kernels: convolution, pooling, normalisation, resize.
// One file because these kernels share the window arithmetic (pads, strides, dilations, output
// sizes) and the NCHW layout helpers; each op is a short function registered in one table.
#include "core/error.h"
#include "runtime/ops.h"

#include <algorithm>
#include <memory>
#include <mutex>
#include <array>
#include <cmath>
#include <limits>

namespace acg2vec::runtime {
namespace {

struct window {
  std::vector<std::int64_t> kernel, strides, dilations, pads;  // pads: begins then ends
  std::string auto_pad;
  bool ceil_mode = false;
};

window read_window(const node& n, std::size_t spatial) {
  window w;
  w.kernel = attr_ints(n, "kernel_shape");
  w.strides = attr_ints(n, "strides", std::vector<std::int64_t>(spatial, 1));
  w.dilations = attr_ints(n, "dilations", std::vector<std::int64_t>(spatial, 1));
  w.pads = attr_ints(n, "pads", std::vector<std::int64_t>(2 * spatial, 0));
  w.auto_pad = attr_string(n, "auto_pad", "NOTSET");
  w.ceil_mode = attr_int(n, "ceil_mode", 0) != 0;
  if (w.strides.size() != spatial || w.dilations.size() != spatial || w.pads.size() != 2 * spatial)
    fail(errc::bad_parameter, "node '{}' ({}): strides/dilations/pads do not match {} spatial dimensions", n.name,
         n.op_type, spatial);
  for (std::size_t i = 0; i < spatial; ++i) {
    if (w.strides[i] <= 0 || w.dilations[i] <= 0 || w.pads[i] < 0 || w.pads[i + spatial] < 0)
      fail(errc::bad_parameter, "node '{}' ({}): invalid strides, dilations or pads", n.name, n.op_type);
  }
  if (w.auto_pad != "NOTSET" && w.auto_pad != "VALID" && w.auto_pad != "SAME_UPPER" && w.auto_pad != "SAME_LOWER")
    fail(errc::bad_parameter, "node '{}' ({}): unknown auto_pad '{}'", n.name, n.op_type, w.auto_pad);
  return w;
}

// Pads for one call: SAME_* depend on the input size, so they are resolved per run.
std::vector<std::int64_t> resolve_pads(const window& w, const at::Tensor& x) {
  const std::size_t spatial = w.kernel.size();
  if (w.auto_pad == "NOTSET") return w.pads;
  std::vector<std::int64_t> pads(2 * spatial, 0);
  if (w.auto_pad == "VALID") return pads;
  for (std::size_t i = 0; i < spatial; ++i) {
    const std::int64_t in = x.size(static_cast<std::int64_t>(i) + 2);
    const std::int64_t out = (in + w.strides[i] - 1) / w.strides[i];
    const std::int64_t total =
        std::max<std::int64_t>((out - 1) * w.strides[i] + (w.kernel[i] - 1) * w.dilations[i] + 1 - in, 0);
    const std::int64_t small = total / 2;
    pads[i] = w.auto_pad == "SAME_UPPER" ? small : total - small;
    pads[i + spatial] = total - pads[i];
  }
  return pads;
}

bool symmetric(const std::vector<std::int64_t>& pads) {
  const std::size_t n = pads.size() / 2;
  for (std::size_t i = 0; i < n; ++i)
    if (pads[i] != pads[i + n]) return false;
  return true;
}

// ONNX pads (all begins, then all ends) to at::constant_pad_nd order (last dim first).
std::vector<std::int64_t> torch_pad_order(const std::vector<std::int64_t>& pads) {
  const std::size_t n = pads.size() / 2;
  std::vector<std::int64_t> out;
  for (std::size_t i = n; i-- > 0;) {
    out.push_back(pads[i]);
    out.push_back(pads[i + n]);
  }
  return out;
}

void check_spatial(const at::Tensor& x, std::size_t spatial, std::string_view op) {
  if (x.dim() != static_cast<std::int64_t>(spatial) + 2)
    fail(errc::bad_parameter, "{}: expected a rank-{} input, got rank {}", op, spatial + 2, x.dim());
}

// Spatial rank from attributes or a constant weight; 0 when only the input will tell.
std::size_t spatial_rank(const node& n, const at::Tensor* w) {
  if (auto k = attr_ints(n, "kernel_shape"); !k.empty()) return k.size();
  if (w && w->dim() >= 3) return static_cast<std::size_t>(w->dim() - 2);
  if (auto s = attr_ints(n, "strides"); !s.empty()) return s.size();
  if (auto d = attr_ints(n, "dilations"); !d.empty()) return d.size();
  if (auto p = attr_ints(n, "pads"); !p.empty()) return p.size() / 2;
  return 0;
}

// A constant convolution weight in oneDNN's blocked layout, made on first use.
struct packed_weight {
  std::once_flag once;
  at::Tensor value;
};

kernel build_conv(const build_context& ctx) {
  const node& n = ctx.n;
  const std::int64_t group = attr_int(n, "group", 1);
  const at::Tensor* w_const = ctx.constant(1);
  const std::size_t spatial = spatial_rank(n, w_const);
  window w = spatial ? read_window(n, spatial) : window{};
  if (spatial && w.kernel.empty() && w_const) w.kernel.assign(w_const->sizes().begin() + 2, w_const->sizes().end());
  // oneDNN runs 2-D convolutions faster on channels-last data (measured 10-40% per layer on
  // ResNet/ConvNeXt shapes); weights are laid out that way once, activations on first use, and
  // element-wise ops downstream keep the layout.
  const bool channels_last = w_const && w_const->dim() == 4 && w_const->scalar_type() == at::kFloat;
  at::Tensor weight = w_const ? (channels_last ? w_const->contiguous(at::MemoryFormat::ChannelsLast)
                                               : w_const->contiguous())
                              : at::Tensor();
  at::Tensor bias = ctx.constant(2) ? ctx.constant(2)->contiguous() : at::Tensor();
  if (group <= 0) fail(errc::bad_parameter, "node '{}' (Conv): group must be positive", n.name);
  // at::convolution hands oneDNN plain weights, which it reorders into its blocked layout on
  // every call. Where the weights outweigh the input (late stages at small batches) that
  // reorder costs more than the convolution: ResNet-50's 512x512 3x3 layer on 7x7 pixels took
  // 1.08 ms per call that way and 0.72 ms with weights reordered once (here, on first use, for
  // the padding and strides actually used) and activations in plain NCHW. Bit-identical output.
  auto packed = std::make_shared<packed_weight>();
  const bool packable = channels_last && at::hasMKLDNN();
  const node attrs{n.name, n.op_type, n.domain, {}, {}, n.attributes};
  return [attrs, w, weight, bias, group, channels_last, packable, packed](const tensor_list& in) {
    at::Tensor x = need(in, 0, "Conv");
    const bool use_packed = packable && x.dim() == 4 && weight.numel() > x.numel();
    if (channels_last && x.dim() == 4 && !use_packed) x = x.contiguous(at::MemoryFormat::ChannelsLast);
    const at::Tensor& wt = weight.defined() ? weight : need(in, 1, "Conv");
    const at::Tensor b = bias.defined() ? bias : (present(in, 2) ? in[2] : at::Tensor());
    if (x.dim() < 3) fail(errc::bad_parameter, "Conv: input rank {} is below 3", x.dim());
    const auto spatial = static_cast<std::size_t>(x.dim() - 2);
    window ww = w.strides.empty() ? read_window(attrs, spatial) : w;
    check_spatial(x, ww.strides.size(), "Conv");
    if (ww.kernel.empty()) ww.kernel.assign(wt.sizes().begin() + 2, wt.sizes().end());
    std::vector<std::int64_t> pads = resolve_pads(ww, x);
    std::vector<std::int64_t> padding(pads.begin(), pads.begin() + static_cast<std::ptrdiff_t>(spatial));
    if (!symmetric(pads)) {
      x = at::constant_pad_nd(x, torch_pad_order(pads), 0);
      std::fill(padding.begin(), padding.end(), 0);
    }
    if (use_packed) {
      std::call_once(packed->once, [&] {
        packed->value = at::mkldnn_reorder_conv2d_weight(weight.contiguous().to_mkldnn(), padding, ww.strides,
                                                         ww.dilations, group);
      });
      return tensor_list{at::mkldnn_convolution(x.contiguous(), packed->value,
                                                b.defined() ? c10::optional<at::Tensor>(b) : c10::nullopt, padding,
                                                ww.strides, ww.dilations, group)};
    }
    std::vector<std::int64_t> out_pad(spatial, 0);
    return tensor_list{
        at::convolution(x, wt, b, ww.strides, padding, ww.dilations, false, out_pad, group)};
  };
}

kernel build_conv_transpose(const build_context& ctx) {
  const node& n = ctx.n;
  const std::int64_t group = attr_int(n, "group", 1);
  const node attrs{n.name, n.op_type, n.domain, {}, {}, n.attributes};
  return [attrs, group](const tensor_list& in) {
    const at::Tensor& x = need(in, 0, "ConvTranspose");
    const at::Tensor& wt = need(in, 1, "ConvTranspose");
    if (x.dim() < 3) fail(errc::bad_parameter, "ConvTranspose: input rank {} is below 3", x.dim());
    const auto spatial = static_cast<std::size_t>(x.dim() - 2);
    const window w = read_window(attrs, spatial);
    const std::vector<std::int64_t> output_padding =
        attr_ints(attrs, "output_padding", std::vector<std::int64_t>(spatial, 0));
    const std::vector<std::int64_t> output_shape = attr_ints(attrs, "output_shape");
    if (output_padding.size() != spatial)
      fail(errc::bad_parameter, "ConvTranspose: output_padding does not match the kernel");
    const at::Tensor b = present(in, 2) ? in[2] : at::Tensor();
    std::vector<std::int64_t> zeros(spatial, 0);
    // Run with no padding, then crop (or extend) each side: that covers asymmetric pads and
    // output_shape alike.
    std::vector<std::int64_t> op(spatial, 0);
    for (std::size_t i = 0; i < spatial; ++i) op[i] = std::min(output_padding[i], w.strides[i] - 1);
    at::Tensor y = at::convolution(x, wt, b, w.strides, zeros, w.dilations, true, op, group);
    std::vector<std::int64_t> pads = w.pads;
    const bool same = w.auto_pad == "SAME_UPPER" || w.auto_pad == "SAME_LOWER";
    if (!output_shape.empty() || same) {
      for (std::size_t i = 0; i < spatial; ++i) {
        const std::int64_t in_i = x.size(static_cast<std::int64_t>(i) + 2);
        const std::int64_t k = wt.size(static_cast<std::int64_t>(i) + 2);
        const std::int64_t target = !output_shape.empty()
                                        ? output_shape[output_shape.size() - spatial + i]
                                        : in_i * w.strides[i];
        const std::int64_t full = w.strides[i] * (in_i - 1) + output_padding[i] + (k - 1) * w.dilations[i] + 1;
        const std::int64_t total = full - target;
        const std::int64_t half = total >= 0 ? total / 2 : -((-total + 1) / 2);  // floor division
        if (w.auto_pad == "SAME_UPPER") {
          pads[i] = half;
          pads[i + spatial] = total - half;
        } else {
          pads[i] = total - half;
          pads[i + spatial] = half;
        }
      }
    }
    std::vector<std::int64_t> crop = torch_pad_order(pads);
    for (auto& c : crop) c = -c;
    // Output padding beyond stride-1 (allowed by ONNX with dilation) appears as extra zeros.
    for (std::size_t i = 0; i < spatial; ++i) crop[2 * (spatial - 1 - i) + 1] += output_padding[i] - op[i];
    if (std::any_of(crop.begin(), crop.end(), [](std::int64_t c) { return c != 0; })) {
      std::vector<std::int64_t> shape = y.sizes().vec();
      for (std::size_t i = 0; i < spatial; ++i)
        shape[i + 2] += crop[2 * (spatial - 1 - i)] + crop[2 * (spatial - 1 - i) + 1];
      check_numel(shape, "ConvTranspose");
      y = at::constant_pad_nd(y, crop, 0);
    }
    return tensor_list{y};
  };
}

at::Tensor max_pool(const at::Tensor& x, const std::vector<std::int64_t>& k, const std::vector<std::int64_t>& s,
                    const std::vector<std::int64_t>& p, const std::vector<std::int64_t>& d, bool ceil) {
  switch (k.size()) {
    case 1: return at::max_pool1d(x, k, s, p, d, ceil);
    case 2: return at::max_pool2d(x, k, s, p, d, ceil);
    case 3: return at::max_pool3d(x, k, s, p, d, ceil);
    default: fail(errc::bad_parameter, "MaxPool: {} spatial dimensions are not supported", k.size());
  }
}

at::Tensor avg_pool(const at::Tensor& x, const std::vector<std::int64_t>& k, const std::vector<std::int64_t>& s,
                    const std::vector<std::int64_t>& p, bool ceil, bool count_pad) {
  switch (k.size()) {
    case 1: return at::avg_pool1d(x, k, s, p, ceil, count_pad);
    case 2: return at::avg_pool2d(x, k, s, p, ceil, count_pad);
    case 3: return at::avg_pool3d(x, k, s, p, ceil, count_pad);
    default: fail(errc::bad_parameter, "AveragePool: {} spatial dimensions are not supported", k.size());
  }
}

// Torch pools accept symmetric padding up to half the (effective) kernel; anything else is
// padded explicitly.
bool native_padding(const std::vector<std::int64_t>& pads, const window& w) {
  if (!symmetric(pads)) return false;
  for (std::size_t i = 0; i < w.kernel.size(); ++i)
    if (pads[i] * 2 > (w.kernel[i] - 1) * w.dilations[i] + 1) return false;
  return true;
}

kernel build_max_pool(const build_context& ctx) {
  const std::size_t spatial = attr_ints(ctx.n, "kernel_shape").size();
  if (spatial == 0) fail(errc::bad_parameter, "node '{}' (MaxPool): kernel_shape is required", ctx.n.name);
  const window w = read_window(ctx.n, spatial);
  const bool want_indices = ctx.n.outputs.size() > 1 && !ctx.n.outputs[1].empty();
  const bool column_major = attr_int(ctx.n, "storage_order", 0) != 0;
  return [=](const tensor_list& in) {
    at::Tensor x = need(in, 0, "MaxPool");
    check_spatial(x, spatial, "MaxPool");
    const at::ScalarType dtype = x.scalar_type();
    if (at::isIntegralType(dtype, true)) x = x.to(at::kFloat);  // exact for 8-bit types
    std::vector<std::int64_t> pads = resolve_pads(w, x);
    std::vector<std::int64_t> padding(pads.begin(), pads.begin() + static_cast<std::ptrdiff_t>(spatial));
    if (want_indices) {
      if (spatial != 2 || !native_padding(pads, w))
        fail(errc::bad_parameter, "MaxPool: the Indices output needs 2-D pooling with symmetric pads");
      auto [y, idx] = at::max_pool2d_with_indices(x, w.kernel, w.strides, padding, w.dilations, w.ceil_mode);
      const std::int64_t h = x.size(2), wd = x.size(3);
      if (column_major) idx = (idx % wd) * h + idx.div(wd, "floor");
      at::Tensor plane = at::arange(x.size(0) * x.size(1), idx.options()).reshape({x.size(0), x.size(1), 1, 1});
      idx = idx + plane * (h * wd);
      return tensor_list{y.to(dtype), idx};
    }
    if (!native_padding(pads, w)) {
      x = at::constant_pad_nd(x, torch_pad_order(pads), -std::numeric_limits<double>::infinity());
      std::fill(padding.begin(), padding.end(), 0);
    }
    return tensor_list{max_pool(x, w.kernel, w.strides, padding, w.dilations, w.ceil_mode).to(dtype)};
  };
}

kernel build_avg_pool(const build_context& ctx) {
  const std::size_t spatial = attr_ints(ctx.n, "kernel_shape").size();
  if (spatial == 0) fail(errc::bad_parameter, "node '{}' (AveragePool): kernel_shape is required", ctx.n.name);
  const window w = read_window(ctx.n, spatial);
  for (auto d : w.dilations)
    if (d != 1) fail(errc::bad_parameter, "node '{}' (AveragePool): dilations are not supported", ctx.n.name);
  const bool count_pad = attr_int(ctx.n, "count_include_pad", 0) != 0;
  return [=](const tensor_list& in) {
    at::Tensor x = need(in, 0, "AveragePool");
    check_spatial(x, spatial, "AveragePool");
    std::vector<std::int64_t> pads = resolve_pads(w, x);
    std::vector<std::int64_t> padding(pads.begin(), pads.begin() + static_cast<std::ptrdiff_t>(spatial));
    if (native_padding(pads, w)) return tensor_list{avg_pool(x, w.kernel, w.strides, padding, w.ceil_mode, count_pad)};
    std::vector<std::int64_t> none(spatial, 0);
    const auto order = torch_pad_order(pads);
    at::Tensor sum = avg_pool(at::constant_pad_nd(x, order, 0), w.kernel, w.strides, none, w.ceil_mode, true);
    if (count_pad) return tensor_list{sum};
    // Divide by the number of real (non-pad) elements in each window.
    std::vector<std::int64_t> ones_shape{1, 1};
    for (std::size_t i = 0; i < spatial; ++i) ones_shape.push_back(x.size(static_cast<std::int64_t>(i) + 2));
    at::Tensor count = avg_pool(at::constant_pad_nd(at::ones(ones_shape, x.options()), order, 0), w.kernel, w.strides,
                                none, w.ceil_mode, true);
    return tensor_list{sum / count};
  };
}

std::vector<std::int64_t> spatial_dims(const at::Tensor& x) {
  std::vector<std::int64_t> dims;
  for (std::int64_t i = 2; i < x.dim(); ++i) dims.push_back(i);
  return dims;
}

// ---- Resize ----

struct resize_params {
  std::string mode, coord, nearest;
  double cubic_a = -0.75;
  bool exclude_outside = false;
  double extrapolation = 0.0;
};

double source_coordinate(const resize_params& p, double x, double scale, std::int64_t in, std::int64_t out,
                         double roi_start, double roi_end) {
  if (p.coord == "half_pixel") return (x + 0.5) / scale - 0.5;
  if (p.coord == "pytorch_half_pixel") return out > 1 ? (x + 0.5) / scale - 0.5 : 0.0;
  if (p.coord == "align_corners") {
    // The reference divides by in*scale - 1, not by the floored output length minus one.
    const double denom = static_cast<double>(in) * scale - 1.0;
    return denom == 0.0 ? 0.0 : x * static_cast<double>(in - 1) / denom;
  }
  if (p.coord == "asymmetric") return x / scale;
  if (p.coord == "tf_half_pixel_for_nn") return (x + 0.5) / scale;
  if (p.coord == "tf_crop_and_resize") {
    return out > 1 ? roi_start * static_cast<double>(in - 1) +
                         x * (roi_end - roi_start) * static_cast<double>(in - 1) / static_cast<double>(out - 1)
                   : 0.5 * (roi_start + roi_end) * static_cast<double>(in - 1);
  }
  fail(errc::bad_parameter, "Resize: unknown coordinate_transformation_mode '{}'", p.coord);
}

std::array<double, 4> cubic_weights(double t, double a) {
  auto far = [a](double s) { return ((a * s - 5 * a) * s + 8 * a) * s - 4 * a; };
  auto near = [a](double s) { return ((a + 2) * s - (a + 3)) * s * s + 1; };
  return {far(t + 1), near(t), near(1 - t), far(2 - t)};
}

// Resizes one axis; ONNX's resize is separable, so applying axes one after another is exact.
at::Tensor resize_axis(const at::Tensor& x, std::int64_t axis, std::int64_t out, double scale, const resize_params& p,
                       double roi_start, double roi_end) {
  const std::int64_t in = x.size(axis);
  const int taps = p.mode == "nearest" ? 1 : p.mode == "linear" ? 2 : 4;
  std::vector<std::int64_t> index(static_cast<std::size_t>(out * taps));
  std::vector<double> weight(static_cast<std::size_t>(out * taps), 0.0);
  std::vector<std::uint8_t> outside(static_cast<std::size_t>(out), 0);
  for (std::int64_t j = 0; j < out; ++j) {
    const double c = source_coordinate(p, static_cast<double>(j), scale, in, out, roi_start, roi_end);
    if (p.coord == "tf_crop_and_resize" && (c < 0 || c > static_cast<double>(in - 1))) outside[j] = 1;
    const double f = std::floor(c);
    const double t = c - f;
    const auto base = static_cast<std::int64_t>(f);
    auto clamp = [in](std::int64_t i) { return std::clamp<std::int64_t>(i, 0, in - 1); };
    const std::size_t o = static_cast<std::size_t>(j * taps);
    if (taps == 1) {
      std::int64_t pick = base;
      if (t > 0) {
        if (p.nearest == "round_prefer_floor") pick = t <= 0.5 ? base : base + 1;
        else if (p.nearest == "round_prefer_ceil") pick = t < 0.5 ? base : base + 1;
        else if (p.nearest == "floor") pick = base;
        else if (p.nearest == "ceil") pick = base + 1;
        else fail(errc::bad_parameter, "Resize: unknown nearest_mode '{}'", p.nearest);
      }
      index[o] = clamp(pick);
      weight[o] = 1.0;
    } else if (taps == 2) {
      index[o] = clamp(base);
      index[o + 1] = clamp(base + 1);
      weight[o] = 1 - t;
      weight[o + 1] = t;
    } else {
      auto cw = cubic_weights(t, p.cubic_a);
      double total = 0;
      for (int k = 0; k < 4; ++k) {
        const std::int64_t i = base - 1 + k;
        if (p.exclude_outside && (i < 0 || i >= in)) cw[static_cast<std::size_t>(k)] = 0;
        total += cw[static_cast<std::size_t>(k)];
        index[o + static_cast<std::size_t>(k)] = clamp(i);
      }
      for (int k = 0; k < 4; ++k) {
        weight[o + static_cast<std::size_t>(k)] =
            p.exclude_outside && total != 0 ? cw[static_cast<std::size_t>(k)] / total : cw[static_cast<std::size_t>(k)];
      }
    }
  }
  at::Tensor idx = at::tensor(index, at::TensorOptions().dtype(at::kLong)).to(x.device());
  const bool integral = at::isIntegralType(x.scalar_type(), true);
  at::Tensor xf = integral ? x.to(at::kFloat) : x;
  at::Tensor gathered = xf.index_select(axis, idx);  // out*taps along axis
  std::vector<std::int64_t> shape(xf.sizes().begin(), xf.sizes().end());
  shape[static_cast<std::size_t>(axis)] = out;
  shape.insert(shape.begin() + axis + 1, taps);
  gathered = gathered.reshape(shape);
  std::vector<std::int64_t> wshape(shape.size(), 1);
  wshape[static_cast<std::size_t>(axis)] = out;
  wshape[static_cast<std::size_t>(axis) + 1] = taps;
  at::Tensor w = at::tensor(weight, at::TensorOptions().dtype(at::kDouble)).to(xf.options()).reshape(wshape);
  at::Tensor y = taps == 1 ? gathered.squeeze(axis + 1) : (gathered * w).sum(axis + 1);
  if (p.coord == "tf_crop_and_resize") {
    std::vector<std::int64_t> mshape(xf.dim(), 1);
    mshape[static_cast<std::size_t>(axis)] = out;
    at::Tensor mask = at::tensor(std::vector<std::int64_t>(outside.begin(), outside.end()), at::kLong)
                          .to(at::kBool)
                          .reshape(mshape);
    y = at::where(mask, at::full({}, p.extrapolation, y.options()), y);
  }
  if (integral) y = at::round(y).to(x.scalar_type());
  return y;
}

kernel build_resize(const build_context& ctx) {
  resize_params p;
  p.mode = attr_string(ctx.n, "mode", "nearest");
  p.coord = attr_string(ctx.n, "coordinate_transformation_mode", ctx.opset >= 11 ? "half_pixel" : "asymmetric");
  p.nearest = attr_string(ctx.n, "nearest_mode", ctx.opset >= 11 ? "round_prefer_floor" : "floor");
  p.cubic_a = attr_float(ctx.n, "cubic_coeff_a", -0.75);
  p.exclude_outside = attr_int(ctx.n, "exclude_outside", 0) != 0;
  p.extrapolation = attr_float(ctx.n, "extrapolation_value", 0.0);
  if (p.mode != "nearest" && p.mode != "linear" && p.mode != "cubic")
    fail(errc::bad_parameter, "node '{}' (Resize): unknown mode '{}'", ctx.n.name, p.mode);
  if (attr_int(ctx.n, "antialias", 0) != 0 || has_attr(ctx.n, "axes") || has_attr(ctx.n, "keep_aspect_ratio_policy"))
    fail(errc::bad_parameter, "node '{}' (Resize): antialias/axes/keep_aspect_ratio_policy are not supported",
         ctx.n.name);
  const bool v10 = ctx.opset < 11;
  return [p, v10](const tensor_list& in) {
    const at::Tensor& x = need(in, 0, "Resize");
    const std::int64_t rank = x.dim();
    std::vector<double> roi, scales;
    std::vector<std::int64_t> sizes;
    if (v10) {
      scales = [&] {
        at::Tensor s = need(in, 1, "Resize").to(at::kDouble).contiguous();
        return std::vector<double>(s.data_ptr<double>(), s.data_ptr<double>() + s.numel());
      }();
    } else {
      auto doubles = [](const at::Tensor& t) {
        at::Tensor s = t.to(at::kCPU, at::kDouble).contiguous();
        return std::vector<double>(s.data_ptr<double>(), s.data_ptr<double>() + s.numel());
      };
      if (present(in, 1)) roi = doubles(in[1]);
      if (present(in, 2) && in[2].numel() > 0) scales = doubles(in[2]);
      if (present(in, 3) && in[3].numel() > 0) sizes = to_ints(in[3]);
    }
    if (!sizes.empty()) {
      if (static_cast<std::int64_t>(sizes.size()) != rank) fail(errc::bad_parameter, "Resize: sizes has wrong length");
      scales.clear();
      for (std::int64_t i = 0; i < rank; ++i)
        scales.push_back(static_cast<double>(sizes[i]) / static_cast<double>(x.size(i)));
    } else {
      if (static_cast<std::int64_t>(scales.size()) != rank)
        fail(errc::bad_parameter, "Resize: scales has {} values for rank {}", scales.size(), rank);
      for (std::int64_t i = 0; i < rank; ++i) {
        if (!(scales[i] > 0)) fail(errc::bad_parameter, "Resize: scales must be positive");
        sizes.push_back(static_cast<std::int64_t>(std::floor(static_cast<double>(x.size(i)) * scales[i])));
      }
    }
    check_numel(sizes, "Resize");
    at::Tensor y = x;
    for (std::int64_t axis = rank - 1; axis >= 0; --axis) {
      const auto a = static_cast<std::size_t>(axis);
      const double rs = roi.size() == 2 * static_cast<std::size_t>(rank) ? roi[a] : 0.0;
      const double re = roi.size() == 2 * static_cast<std::size_t>(rank) ? roi[a + static_cast<std::size_t>(rank)] : 1.0;
      if (sizes[a] == x.size(axis) && scales[a] == 1.0 && p.coord != "tf_crop_and_resize") continue;
      y = resize_axis(y, axis, sizes[a], scales[a], p, rs, re);
    }
    return tensor_list{y};
  };
}

kernel build_layer_norm(const build_context& ctx) {
  const std::int64_t axis = attr_int(ctx.n, "axis", -1);
  const double eps = attr_float(ctx.n, "epsilon", 1e-5);
  const bool stats = ctx.n.outputs.size() > 1;
  return [=](const tensor_list& in) {
    const at::Tensor& x = need(in, 0, "LayerNormalization");
    const at::Tensor& scale = need(in, 1, "LayerNormalization");
    const at::Tensor bias = present(in, 2) ? in[2] : at::Tensor();
    const std::int64_t a = normalize_axis(axis, x.dim(), "LayerNormalization");
    std::vector<std::int64_t> norm_shape(x.sizes().begin() + a, x.sizes().end());
    if (!stats && scale.sizes().vec() == norm_shape && (!bias.defined() || bias.sizes().vec() == norm_shape) &&
        x.scalar_type() == at::kFloat)
      return tensor_list{at::layer_norm(x, norm_shape, scale, bias, eps)};
    std::vector<std::int64_t> dims;
    for (std::int64_t i = a; i < x.dim(); ++i) dims.push_back(i);
    at::Tensor xf = x.to(at::kFloat);
    at::Tensor mean = xf.mean(dims, true);
    at::Tensor d = xf - mean;
    at::Tensor inv = at::rsqrt((d * d).mean(dims, true) + eps);
    at::Tensor y = d * inv * scale;
    if (bias.defined()) y = y + bias;
    return tensor_list{y.to(x.scalar_type()), mean, inv};
  };
}

}  // namespace

void register_nn_ops(kernel_registry& r) {
  r["Conv"] = build_conv;
  r["ConvTranspose"] = build_conv_transpose;
  r["MaxPool"] = build_max_pool;
  r["AveragePool"] = build_avg_pool;
  r["Resize"] = build_resize;
  r["LayerNormalization"] = build_layer_norm;

  r["GlobalAveragePool"] = [](const build_context&) -> kernel {
    return [](const tensor_list& in) {
      const at::Tensor& x = need(in, 0, "GlobalAveragePool");
      return tensor_list{x.mean(spatial_dims(x), true)};
    };
  };
  r["GlobalMaxPool"] = [](const build_context&) -> kernel {
    return [](const tensor_list& in) {
      const at::Tensor& x = need(in, 0, "GlobalMaxPool");
      return tensor_list{at::amax(x, spatial_dims(x), true)};
    };
  };
  r["BatchNormalization"] = [](const build_context& ctx) -> kernel {
    const double eps = attr_float(ctx.n, "epsilon", 1e-5);
    if (attr_int(ctx.n, "training_mode", 0) != 0)
      fail(errc::bad_parameter, "node '{}' (BatchNormalization): training_mode is not supported", ctx.n.name);
    return [eps](const tensor_list& in) {
      const at::Tensor& x = need(in, 0, "BatchNormalization");
      if (x.dim() < 2) fail(errc::bad_parameter, "BatchNormalization: input rank must be at least 2");
      return tensor_list{at::batch_norm(x, need(in, 1, "BatchNormalization"), need(in, 2, "BatchNormalization"),
                                        need(in, 3, "BatchNormalization"), need(in, 4, "BatchNormalization"), false,
                                        0.0, eps, false)};
    };
  };
  r["InstanceNormalization"] = [](const build_context& ctx) -> kernel {
    const double eps = attr_float(ctx.n, "epsilon", 1e-5);
    return [eps](const tensor_list& in) {
      const at::Tensor& x = need(in, 0, "InstanceNormalization");
      return tensor_list{at::instance_norm(x, need(in, 1, "InstanceNormalization"),
                                           need(in, 2, "InstanceNormalization"), {}, {}, true, 0.0, eps, false)};
    };
  };
  r["LRN"] = [](const build_context& ctx) -> kernel {
    const double alpha = attr_float(ctx.n, "alpha", 1e-4);
    const double beta = attr_float(ctx.n, "beta", 0.75);
    const double bias = attr_float(ctx.n, "bias", 1.0);
    const std::int64_t size = attr_int(ctx.n, "size", 0);
    if (size <= 0) fail(errc::bad_parameter, "node '{}' (LRN): size must be positive", ctx.n.name);
    return [=](const tensor_list& in) {
      const at::Tensor& x = need(in, 0, "LRN");
      if (x.dim() < 3) fail(errc::bad_parameter, "LRN: input rank must be at least 3");
      // Window over channels [c - floor((size-1)/2), c + ceil((size-1)/2)], zero outside.
      std::vector<std::int64_t> pad(static_cast<std::size_t>(2 * (x.dim() - 1)), 0);
      pad[pad.size() - 2] = (size - 1) / 2;
      pad[pad.size() - 1] = size - 1 - (size - 1) / 2;
      at::Tensor sq = at::constant_pad_nd(x * x, pad, 0);
      at::Tensor sum = sq.unfold(1, size, 1).sum(-1);
      return tensor_list{x / at::pow(sum * (alpha / static_cast<double>(size)) + bias, beta)};
    };
  };
  r["MeanVarianceNormalization"] = [](const build_context& ctx) -> kernel {
    const std::vector<std::int64_t> axes = attr_ints(ctx.n, "axes", {0, 2, 3});
    return [axes](const tensor_list& in) {
      const at::Tensor& x = need(in, 0, "MeanVarianceNormalization");
      std::vector<std::int64_t> dims;
      for (auto a : axes) dims.push_back(normalize_axis(a, x.dim(), "MeanVarianceNormalization"));
      at::Tensor mean = x.mean(dims, true);
      at::Tensor var = (x * x).mean(dims, true) - mean * mean;
      return tensor_list{(x - mean) / (at::sqrt(var) + 1e-9)};
    };
  };
  r["Shrink"] = [](const build_context& ctx) -> kernel {
    const double lambd = attr_float(ctx.n, "lambd", 0.5);
    const double bias = attr_float(ctx.n, "bias", 0.0);
    return [=](const tensor_list& in) {
      const at::Tensor& x = need(in, 0, "Shrink");
      at::Tensor zero = at::zeros_like(x);
      at::Tensor y = at::where(x < -lambd, x + bias, at::where(x > lambd, x - bias, zero));
      return tensor_list{y.to(x.scalar_type())};
    };
  };
  r["Upsample"] = [](const build_context& ctx) -> kernel {
    // Deprecated since opset 10; equivalent to Resize with asymmetric coordinates.
    resize_params p;
    p.mode = attr_string(ctx.n, "mode", "nearest");
    if (p.mode == "bilinear") p.mode = "linear";
    if (p.mode != "nearest" && p.mode != "linear")
      fail(errc::bad_parameter, "node '{}' (Upsample): unknown mode '{}'", ctx.n.name, p.mode);
    p.coord = "asymmetric";
    p.nearest = "floor";
    const std::vector<double> attr_scales = attr_floats(ctx.n, "scales");
    return [p, attr_scales](const tensor_list& in) {
      const at::Tensor& x = need(in, 0, "Upsample");
      std::vector<double> scales = attr_scales;
      if (present(in, 1)) {
        at::Tensor s = in[1].to(at::kDouble).contiguous();
        scales.assign(s.data_ptr<double>(), s.data_ptr<double>() + s.numel());
      }
      if (static_cast<std::int64_t>(scales.size()) != x.dim())
        fail(errc::bad_parameter, "Upsample: {} scales for rank {}", scales.size(), x.dim());
      std::vector<std::int64_t> sizes;
      for (std::int64_t i = 0; i < x.dim(); ++i) {
        if (!(scales[static_cast<std::size_t>(i)] > 0)) fail(errc::bad_parameter, "Upsample: scales must be positive");
        sizes.push_back(static_cast<std::int64_t>(std::floor(static_cast<double>(x.size(i)) * scales[static_cast<std::size_t>(i)])));
      }
      check_numel(sizes, "Upsample");
      at::Tensor y = x;
      for (std::int64_t axis = x.dim() - 1; axis >= 0; --axis) {
        const auto a = static_cast<std::size_t>(axis);
        if (scales[a] == 1.0) continue;
        y = resize_axis(y, axis, sizes[a], scales[a], p, 0.0, 1.0);
      }
      return tensor_list{y};
    };
  };
  r["Dropout"] = [](const build_context& ctx) -> kernel {
    const bool want_mask = ctx.n.outputs.size() > 1 && !ctx.n.outputs[1].empty();
    return [want_mask](const tensor_list& in) {
      const at::Tensor& x = need(in, 0, "Dropout");
      if (present(in, 2) && to_double(in[2]) != 0.0)
        fail(errc::bad_parameter, "Dropout: training_mode is not supported");
      if (!want_mask) return tensor_list{x};
      return tensor_list{x, at::ones(x.sizes(), x.options().dtype(at::kBool))};
    };
  };
}

}  // namespace acg2vec::runtime
