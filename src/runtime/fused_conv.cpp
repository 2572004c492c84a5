// oneDNN convolution / deconvolution primitives with bias, residual add and activation as
// post-ops (see fused_conv.h). libtorch links the same libdnnl.so.2 and runs it on the same
// OpenMP team, so these primitives share the runtime's thread settings.
#include "runtime/fused_conv.h"

#include "core/error.h"

#include <ATen/Parallel.h>

#include <oneapi/dnnl/dnnl.hpp>

#include <array>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <mutex>

namespace acg2vec::runtime {
namespace {

enum class activation { none, relu, leaky_relu, clip, hardswish, sigmoid, tanh, gelu, gelu_tanh, swish, elu };

activation parse_activation(const std::string& name, const std::string& where) {
  static const std::map<std::string, activation, std::less<>> names{
      {"", activation::none},          {"Relu", activation::relu},       {"LeakyRelu", activation::leaky_relu},
      {"Clip", activation::clip},      {"HardSwish", activation::hardswish}, {"Sigmoid", activation::sigmoid},
      {"Tanh", activation::tanh},      {"Gelu", activation::gelu},       {"GeluTanh", activation::gelu_tanh},
      {"Swish", activation::swish},    {"Elu", activation::elu}};
  auto it = names.find(name);
  if (it == names.end()) fail(errc::bad_parameter, "{}: unknown fused activation '{}'", where, name);
  return it->second;
}

struct activation_spec {
  activation kind = activation::none;
  float alpha = 0, beta = 0;
};

// The activation in libtorch, in place on a tensor the caller owns (the fallback path).
void apply_in_place(at::Tensor& y, const activation_spec& a) {
  switch (a.kind) {
    case activation::none: return;
    case activation::relu: at::relu_(y); return;
    case activation::leaky_relu: at::leaky_relu_(y, a.alpha); return;
    case activation::clip: at::clamp_(y, a.alpha, a.beta); return;
    case activation::hardswish: at::hardswish_(y); return;
    case activation::sigmoid: at::sigmoid_(y); return;
    case activation::tanh: at::tanh_(y); return;
    case activation::gelu: y = at::gelu(y, "none"); return;
    case activation::gelu_tanh: y = at::gelu(y, "tanh"); return;
    case activation::swish: at::silu_(y); return;
    case activation::elu: at::elu_(y, a.alpha); return;
  }
}

bool append_eltwise(dnnl::post_ops& po, const activation_spec& a) {
  using alg = dnnl::algorithm;
  switch (a.kind) {
    case activation::none: return true;
    case activation::relu: po.append_eltwise(1.f, alg::eltwise_relu, 0.f, 0.f); return true;
    case activation::leaky_relu: po.append_eltwise(1.f, alg::eltwise_relu, a.alpha, 0.f); return true;
    // clip_v2 is min(max(x, alpha), beta), the same as ONNX Clip and at::clamp.
    case activation::clip: po.append_eltwise(1.f, alg::eltwise_clip_v2, a.alpha, a.beta); return true;
    case activation::hardswish: po.append_eltwise(1.f, alg::eltwise_hardswish, 0.f, 0.f); return true;
    case activation::sigmoid: po.append_eltwise(1.f, alg::eltwise_logistic, 0.f, 0.f); return true;
    case activation::tanh: po.append_eltwise(1.f, alg::eltwise_tanh, 0.f, 0.f); return true;
    case activation::gelu: po.append_eltwise(1.f, alg::eltwise_gelu_erf, 0.f, 0.f); return true;
    case activation::gelu_tanh: po.append_eltwise(1.f, alg::eltwise_gelu_tanh, 0.f, 0.f); return true;
    case activation::swish: po.append_eltwise(1.f, alg::eltwise_swish, 1.f, 0.f); return true;
    case activation::elu: po.append_eltwise(1.f, alg::eltwise_elu, a.alpha, 0.f); return true;
  }
  return false;
}

const dnnl::engine& cpu_engine() {
  static const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

using dims = dnnl::memory::dims;

// One primitive per input shape, with the weights in the layout that primitive chose.
struct shape_entry {
  dnnl::primitive primitive;
  dnnl::memory weights;  // packed, shared with other entries of the same layout
  dnnl::memory::desc dst_desc;
  std::size_t scratchpad_bytes = 0;
  std::vector<std::int64_t> out_sizes;    // NCHW, what the primitive writes
  std::vector<std::int64_t> final_sizes;  // NCHW, the node's result (differs after a shuffle)
};

struct conv_state {
  std::mutex mutex;
  std::map<std::vector<std::int64_t>, std::shared_ptr<const shape_entry>> by_shape;
  std::vector<std::pair<dnnl::memory::desc, dnnl::memory>> packed;  // weights per layout
};

struct conv_config {
  bool transpose = false;
  std::int64_t group = 1;
  std::array<std::int64_t, 2> strides{1, 1}, dilations{1, 1}, pad_begin{0, 0}, pad_end{0, 0};
  std::string auto_pad = "NOTSET";
  at::Tensor weight;  // as in the model: Conv [OC, IC/g, KH, KW], ConvTranspose [IC, OC/g, KH, KW]
  at::Tensor bias;    // [OC], zeros when the model has none
  activation_spec act;
  bool residual = false;
  bool add_after_activation = false;  // Conv -> activation -> Add instead of Conv -> Add -> activation
  // A ConvTranspose with stride s and a kernel k that s divides (one group, dilation 1, any pads)
  // runs as a convolution with kernel k/s to OC*s*s channels, one per output phase (a, b, o),
  // followed by a depth-to-space copy that also crops the transposed convolution's pads: output
  // pixel (Y, X) with Y + pad = q*s + a reads input rows q-k/s+1 .. q only, through kernel rows
  // a, a+s, .. (see shuffled_weights). oneDNN 2.6's deconvolution kernels were 15-50x slower than
  // its 1x1 convolution when k == s (Real-CUGAN's 2x upsampling layers) and ran at about
  // 9 GFLOP/s for its 64->3 4x4 stride-2 output layer (NHWC, AVX-512).
  std::array<std::int64_t, 2> shuffle{0, 0};    // s per axis; 0 when not rewritten
  std::array<std::int64_t, 2> crop{0, 0};       // rows/columns of the shuffled result before the output
  std::array<std::int64_t, 2> t_kernel{0, 0};   // the transposed convolution's kernel and total pads,
  std::array<std::int64_t, 2> t_pads{0, 0};     // which size its output
  bool post_ops_in_primitive = true;  // false when the add and activation follow the shuffle
  // A stride-1 convolution to very few channels (Real-CUGAN's 64->3 3x3 output layer) vectorises
  // badly in oneDNN (about 20 GFLOP/s against 130 for 64->64). It runs as a 1x1 convolution to
  // OC*KH*KW channels, one per tap (ky, kx, o), followed by a gather that sums for each output
  // pixel the taps of its KHxKW neighbourhood (zero padding: taps outside the input are skipped).
  std::array<std::int64_t, 2> taps{0, 0};  // the kernel's KH, KW; 0 when not rewritten
  std::array<std::int64_t, 2> tap_pad_begin{0, 0}, tap_pad_end{0, 0};
  at::Tensor tap_bias;  // [OC], added by the gather
};

std::int64_t out_channels(const conv_config& c) {
  return c.transpose ? c.weight.size(1) * c.group : c.weight.size(0);
}

// Pads for an input of height/width hw; SAME_* depend on the input size.
void resolve_pads(const conv_config& c, const std::array<std::int64_t, 2>& hw, std::array<std::int64_t, 2>& lo,
                  std::array<std::int64_t, 2>& hi) {
  lo = c.pad_begin;
  hi = c.pad_end;
  if (c.auto_pad == "VALID") lo = hi = {0, 0};
  if (c.auto_pad != "SAME_UPPER" && c.auto_pad != "SAME_LOWER") return;
  for (std::size_t i = 0; i < 2; ++i) {
    const std::int64_t k = c.weight.size(static_cast<std::int64_t>(i) + 2);
    const std::int64_t out = (hw[i] + c.strides[i] - 1) / c.strides[i];
    const std::int64_t total =
        std::max<std::int64_t>((out - 1) * c.strides[i] + (k - 1) * c.dilations[i] + 1 - hw[i], 0);
    const std::int64_t small = total / 2;
    lo[i] = c.auto_pad == "SAME_UPPER" ? small : total - small;
    hi[i] = total - lo[i];
  }
}

// Creates the primitive for input sizes x (NCHW), or returns nullptr when oneDNN cannot take
// this shape (the caller then runs the plain kernels).
std::shared_ptr<const shape_entry> make_entry(const conv_config& c, conv_state& state,
                                              const std::vector<std::int64_t>& x) {
  using tag = dnnl::memory::format_tag;
  using dt = dnnl::memory::data_type;
  const std::int64_t oc = out_channels(c), g = c.group;
  const std::int64_t kh = c.weight.size(2), kw = c.weight.size(3);
  std::array<std::int64_t, 2> lo{}, hi{};
  resolve_pads(c, {x[2], x[3]}, lo, hi);
  std::vector<std::int64_t> out{x[0], oc, 0, 0};
  const std::array<std::int64_t, 2> k{kh, kw};
  for (std::size_t i = 0; i < 2; ++i) {
    const std::int64_t span = (k[i] - 1) * c.dilations[i] + 1;
    out[i + 2] = c.transpose ? (x[i + 2] - 1) * c.strides[i] + span - lo[i] - hi[i]
                             : (x[i + 2] + lo[i] + hi[i] - span) / c.strides[i] + 1;
    if (out[i + 2] <= 0) return nullptr;
  }
  const std::int64_t ic = x[1];
  if ((c.transpose ? c.weight.size(0) : c.weight.size(1) * g) != ic) return nullptr;
  dims wdims = g == 1 ? dims{oc, ic, kh, kw} : dims{g, oc / g, ic / g, kh, kw};
  const dnnl::memory::desc src_md({x[0], x[1], x[2], x[3]}, dt::f32, tag::nhwc);
  const dnnl::memory::desc dst_md(dims(out.begin(), out.end()), dt::f32, tag::nhwc);
  const dnnl::memory::desc any_w(wdims, dt::f32, tag::any);
  const dnnl::memory::desc bias_md({oc}, dt::f32, tag::a);
  const dims strides{c.strides[0], c.strides[1]};
  const dims dilates{c.dilations[0] - 1, c.dilations[1] - 1};  // oneDNN counts the gaps
  const dims pad_l{lo[0], lo[1]}, pad_r{hi[0], hi[1]};
  dnnl::post_ops po;
  if (c.post_ops_in_primitive) {
    if (c.residual && !c.add_after_activation) po.append_sum(1.f);
    if (!append_eltwise(po, c.act)) return nullptr;
  }
  dnnl::primitive_attr attr;
  attr.set_post_ops(po);
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  auto entry = std::make_shared<shape_entry>();
  dnnl::memory::desc w_desc;
  const dnnl::engine& engine = cpu_engine();
  // Convolution and deconvolution take the same descriptors; only the primitive type differs.
  auto make = [&](auto primitive_tag, dnnl::algorithm algorithm) {
    using primitive = decltype(primitive_tag);
    typename primitive::desc d(dnnl::prop_kind::forward_inference, algorithm, src_md, any_w, bias_md, dst_md, strides,
                               dilates, pad_l, pad_r);
    typename primitive::primitive_desc pd(d, attr, engine);
    entry->primitive = primitive(pd);
    w_desc = pd.weights_desc();
    entry->scratchpad_bytes = pd.scratchpad_desc().get_size();
  };
  if (c.transpose) {
    make(dnnl::deconvolution_forward{}, dnnl::algorithm::deconvolution_direct);
  } else {
    make(dnnl::convolution_forward{}, dnnl::algorithm::convolution_direct);
  }
  entry->dst_desc = dst_md;
  entry->out_sizes = out;
  entry->final_sizes = out;
  if (c.shuffle[0] != 0) {
    const std::int64_t phases = c.shuffle[0] * c.shuffle[1];
    entry->final_sizes[1] = oc / phases;
    for (std::size_t i = 0; i < 2; ++i) {
      const std::int64_t s = c.shuffle[i];
      const std::int64_t final = (x[i + 2] - 1) * s + c.t_kernel[i] - c.t_pads[i];
      // Every output row must come from a computed row of the shuffled result.
      if (final <= 0 || out[i + 2] * s - c.crop[i] < final) return nullptr;
      entry->final_sizes[i + 2] = final;
    }
  }
  if (c.taps[0] != 0) {
    entry->final_sizes[1] = oc / (c.taps[0] * c.taps[1]);
    for (std::size_t i = 0; i < 2; ++i) {
      const std::int64_t final = x[i + 2] + c.tap_pad_begin[i] + c.tap_pad_end[i] - c.taps[i] + 1;
      if (final <= 0) return nullptr;
      entry->final_sizes[i + 2] = final;
    }
  }
  // The weights as stored by the model: ConvTranspose's [IC, OC/g, KH, KW] is oneDNN's
  // (g)iohw order over the same dimensions.
  const tag user_tag = c.transpose ? (g == 1 ? tag::iohw : tag::giohw) : (g == 1 ? tag::oihw : tag::goihw);
  for (const auto& [desc, mem] : state.packed)
    if (desc == w_desc) entry->weights = mem;
  if (!entry->weights) {
    const dnnl::memory::desc user_md(wdims, dt::f32, user_tag);
    dnnl::memory user(user_md, engine, c.weight.data_ptr());
    dnnl::memory packed(w_desc, engine);
    dnnl::stream stream(engine);
    dnnl::reorder(user, packed).execute(stream, user, packed);
    stream.wait();
    state.packed.emplace_back(w_desc, packed);
    entry->weights = packed;
  }
  return entry;
}

// The rows of phase a (of s) that land in an output of `out` rows: shuffled row i*s + a is
// output row i*s + a - crop, for i in [0, in).
struct phase_span {
  std::int64_t in_first = 0, out_first = 0, count = 0;
};

phase_span span_of(std::int64_t a, std::int64_t s, std::int64_t crop, std::int64_t in, std::int64_t out) {
  phase_span p;
  p.in_first = crop > a ? (crop - a + s - 1) / s : 0;
  p.out_first = p.in_first * s + a - crop;
  if (p.out_first >= out) return p;
  p.count = std::min(in - p.in_first, (out - p.out_first + s - 1) / s);
  return p;
}

class conv_kernel {
 public:
  conv_kernel(conv_config config, kernel plain, std::string op)
      : c_(std::move(config)), plain_(std::move(plain)), op_(std::move(op)), state_(std::make_shared<conv_state>()) {}

  tensor_list operator()(const tensor_list& in) const {
    const at::Tensor& x0 = need(in, 0, op_);
    const bool direct = c_.weight.defined() && x0.dim() == 4 && x0.scalar_type() == at::kFloat && x0.numel() > 0 &&
                        (!c_.residual || (present(in, 3) && in[3].scalar_type() == at::kFloat));
    if (direct) {
      std::shared_ptr<const shape_entry> e = entry(x0.sizes().vec());
      if (e && (!c_.residual || in[3].sizes().vec() == final_sizes(*e))) return run_direct(in, *e);
    }
    return run_plain(in);
  }

 private:
  std::shared_ptr<const shape_entry> entry(const std::vector<std::int64_t>& shape) const {
    std::lock_guard lock(state_->mutex);
    auto it = state_->by_shape.find(shape);
    if (it != state_->by_shape.end()) return it->second;
    std::shared_ptr<const shape_entry> e;
    try {
      e = make_entry(c_, *state_, shape);
    } catch (const dnnl::error&) {
      e = nullptr;  // no oneDNN implementation for this configuration: the plain path runs it
    }
    state_->by_shape.emplace(shape, e);
    return e;
  }

  static const std::vector<std::int64_t>& final_sizes(const shape_entry& e) { return e.final_sizes; }

  tensor_list run_direct(const tensor_list& in, const shape_entry& e) const {
    const at::Tensor x = in[0].contiguous(at::MemoryFormat::ChannelsLast);
    at::Tensor y;
    if (c_.residual && c_.post_ops_in_primitive && !c_.add_after_activation) {
      // The sum post-op adds the convolution to what dst holds: a residual this call owns is
      // written over, anything else is copied once.
      const at::Tensor& r = in[3];
      if (reusable(in, 3) && r.is_contiguous(at::MemoryFormat::ChannelsLast)) {
        y = r;
      } else {
        y = at::empty(e.out_sizes, x.options().memory_format(at::MemoryFormat::ChannelsLast));
        y.copy_(r);
      }
    } else {
      y = at::empty(e.out_sizes, x.options().memory_format(at::MemoryFormat::ChannelsLast));
    }
    const dnnl::engine& engine = cpu_engine();
    const dnnl::memory::desc src_md({x.size(0), x.size(1), x.size(2), x.size(3)}, dnnl::memory::data_type::f32,
                                    dnnl::memory::format_tag::nhwc);
    dnnl::memory src(src_md, engine, x.data_ptr());
    dnnl::memory dst(e.dst_desc, engine, y.data_ptr());
    dnnl::memory bias(dnnl::memory::desc({c_.bias.size(0)}, dnnl::memory::data_type::f32, dnnl::memory::format_tag::a),
                      engine, c_.bias.data_ptr());
    at::Tensor scratch = at::empty({static_cast<std::int64_t>(e.scratchpad_bytes)}, x.options().dtype(at::kByte));
    dnnl::memory scratchpad(dnnl::memory::desc({static_cast<std::int64_t>(e.scratchpad_bytes)},
                                               dnnl::memory::data_type::u8, dnnl::memory::format_tag::a),
                            engine, scratch.data_ptr());
    dnnl::stream stream(engine);
    e.primitive.execute(stream, {{DNNL_ARG_SRC, src},
                                 {DNNL_ARG_WEIGHTS, e.weights},
                                 {DNNL_ARG_BIAS, bias},
                                 {DNNL_ARG_DST, dst},
                                 {DNNL_ARG_SCRATCHPAD, scratchpad}});
    stream.wait();
    if (c_.taps[0] != 0) return tensor_list{finish(gather_taps(y, e), in)};
    if (c_.shuffle[0] == 0) {
      if (c_.residual && c_.add_after_activation) y.add_(in[3]);  // the activation ran in the primitive
      return tensor_list{y};
    }
    // Depth to space: channel (a, b, o) of pixel (i, j) goes to output pixel
    // (i*SH + a - crop_h, j*SW + b - crop_w).
    const std::int64_t n = e.out_sizes[0], h = e.out_sizes[2], w = e.out_sizes[3];
    const std::int64_t sh = c_.shuffle[0], sw = c_.shuffle[1], oc = e.out_sizes[1] / (sh * sw);
    at::Tensor out = at::empty(final_sizes(e), x.options().memory_format(at::MemoryFormat::ChannelsLast));
    const std::int64_t oh = out.size(2), ow = out.size(3);
    // A residual is added in the same pass as the copy: the activation either ran in the
    // primitive already (Conv -> activation -> Add) or follows in finish (Conv -> Add -> activation).
    const at::Tensor* r = c_.residual ? &in[3] : nullptr;
    auto place = [&](at::Tensor dst, const at::Tensor& src, const at::Tensor& res) {
      if (r) at::add_out(dst, src, res);
      else dst.copy_(src);
    };
    if (c_.crop == std::array<std::int64_t, 2>{0, 0} && oh == h * sh && ow == w * sw) {
      // Splitting a dimension in two is a view whatever the residual's strides are.
      place(out.permute({0, 2, 3, 1}).view({n, h, sh, w, sw, oc}),
            y.permute({0, 2, 3, 1}).view({n, h, w, sh, sw, oc}).permute({0, 1, 3, 2, 4, 5}),
            r ? r->permute({0, 2, 3, 1}).view({n, h, sh, w, sw, oc}) : at::Tensor());
    } else {
      // One strided copy per phase; rows and columns outside the output are the crop.
      for (std::int64_t a = 0; a < sh; ++a) {
        const phase_span rows = span_of(a, sh, c_.crop[0], h, oh);
        if (rows.count <= 0) continue;
        for (std::int64_t b = 0; b < sw; ++b) {
          const phase_span cols = span_of(b, sw, c_.crop[1], w, ow);
          if (cols.count <= 0) continue;
          const std::int64_t c0 = (a * sw + b) * oc;
          auto out_phase = [&](const at::Tensor& t) {
            return t.slice(2, rows.out_first, rows.out_first + (rows.count - 1) * sh + 1, sh)
                .slice(3, cols.out_first, cols.out_first + (cols.count - 1) * sw + 1, sw);
          };
          place(out_phase(out),
                y.slice(1, c0, c0 + oc)
                    .slice(2, rows.in_first, rows.in_first + rows.count)
                    .slice(3, cols.in_first, cols.in_first + cols.count),
                r ? out_phase(*r) : at::Tensor());
        }
      }
    }
    return tensor_list{finish(std::move(out), in, true)};
  }

  // The add and the activation of a step whose primitive could not apply them, in the node's
  // order; residual_done when the add happened already (in the depth-to-space copy).
  at::Tensor finish(at::Tensor out, const tensor_list& in, bool residual_done = false) const {
    const bool add = c_.residual && !residual_done;
    if (add && !c_.add_after_activation) out.add_(in[3]);
    if (!c_.post_ops_in_primitive) apply_in_place(out, c_.act);
    if (add && c_.add_after_activation) out.add_(in[3]);
    return out;
  }

  // out[n, y, x, o] = bias[o] + sum over taps (ky, kx) inside the input of
  // z[n, y + ky - pad_top, x + kx - pad_left, (ky*KW + kx)*OC + o]; z and out are NHWC.
  at::Tensor gather_taps(const at::Tensor& y, const shape_entry& e) const {
    const std::int64_t n = e.out_sizes[0], h = e.out_sizes[2], w = e.out_sizes[3], channels = e.out_sizes[1];
    const std::int64_t kh = c_.taps[0], kw = c_.taps[1], oc = e.final_sizes[1];
    const std::int64_t oh = e.final_sizes[2], ow = e.final_sizes[3];
    const std::int64_t top = c_.tap_pad_begin[0], left = c_.tap_pad_begin[1];
    at::Tensor out = at::empty(e.final_sizes, y.options().memory_format(at::MemoryFormat::ChannelsLast));
    const float* z = y.data_ptr<float>();
    const float* bias = c_.tap_bias.data_ptr<float>();
    float* o = out.data_ptr<float>();
    at::parallel_for(0, n * oh, 1, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t r = begin; r < end; ++r) {
        const std::int64_t b = r / oh, row = r % oh;
        float* dst = o + r * ow * oc;
        for (std::int64_t x = 0; x < ow; ++x)
          for (std::int64_t k = 0; k < oc; ++k) dst[x * oc + k] = bias[k];
        for (std::int64_t ky = 0; ky < kh; ++ky) {
          const std::int64_t iy = row + ky - top;
          if (iy < 0 || iy >= h) continue;
          const float* src_row = z + (b * h + iy) * w * channels;
          for (std::int64_t kx = 0; kx < kw; ++kx) {
            const std::int64_t first = std::max<std::int64_t>(0, left - kx);
            const std::int64_t last = std::min<std::int64_t>(ow, w - kx + left);
            const float* src = src_row + (ky * kw + kx) * oc;
            for (std::int64_t x = first; x < last; ++x) {
              const float* s = src + (x + kx - left) * channels;
              float* d = dst + x * oc;
              for (std::int64_t k = 0; k < oc; ++k) d[k] += s[k];
            }
          }
        }
      }
    });
    return out;
  }

  tensor_list run_plain(const tensor_list& in) const {
    tensor_list args(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(std::min<std::size_t>(in.size(), 3)));
    at::Tensor y = plain_(args).at(0);
    if (c_.residual && c_.add_after_activation) {
      y = y.clone();  // the plain kernel may return a view
      apply_in_place(y, c_.act);
      return tensor_list{at::add(y, need(in, 3, op_))};
    }
    if (c_.residual) y = at::add(y, need(in, 3, op_));
    else if (c_.act.kind != activation::none) y = y.clone();  // the plain kernel may return a view
    apply_in_place(y, c_.act);
    return tensor_list{y};
  }

  conv_config c_;
  kernel plain_;
  std::string op_;
  std::shared_ptr<conv_state> state_;
};

std::array<std::int64_t, 2> pair_attr(const node& n, std::string_view name, std::int64_t fallback, bool& ok) {
  auto v = attr_ints(n, name, {fallback, fallback});
  if (v.size() != 2) {
    ok = false;
    return {fallback, fallback};
  }
  return {v[0], v[1]};
}

// ConvTranspose weights [IC, OC, KH, KW] (stride s dividing the kernel, m = K/s) as Conv weights
// [SH*SW*OC, IC, MH, MW] with output channels ordered (a, b, o): phase a's tap u reads kernel row
// a + (m-1-u)*s, flipped because a correlation walks the input the other way round.
at::Tensor shuffled_weights(const at::Tensor& w, std::int64_t sh, std::int64_t sw) {
  const std::int64_t ic = w.size(0), oc = w.size(1), mh = w.size(2) / sh, mw = w.size(3) / sw;
  return w.contiguous()
      .view({ic, oc, mh, sh, mw, sw})
      .flip({2, 4})
      .permute({3, 5, 1, 0, 2, 4})
      .reshape({sh * sw * oc, ic, mh, mw})
      .contiguous();
}

kernel build(const build_context& ctx, bool transpose) {
  const node& n = ctx.n;
  const std::string op = transpose ? "ConvTranspose" : "Conv";
  const std::string where = fmt::format("node '{}' ({})", n.name, op);
  // The plain kernel sees the node as the model wrote it (three inputs, its own attributes).
  node plain_node{n.name, op, "", {}, n.outputs, {}};
  for (std::size_t i = 0; i < n.inputs.size() && i < 3; ++i) plain_node.inputs.push_back(n.inputs[i]);
  for (const auto& [name, value] : n.attributes)
    if (name.rfind("fused_", 0) != 0) plain_node.attributes[name] = value;
  build_context plain_ctx{plain_node, ctx.opset, {}};
  for (std::size_t i = 0; i < plain_node.inputs.size(); ++i) plain_ctx.constants.push_back(ctx.constant(i));
  kernel plain = kernels().at(op)(plain_ctx);

  conv_config c;
  c.transpose = transpose;
  c.group = attr_int(n, "group", 1);
  c.act.kind = parse_activation(attr_string(n, "fused_activation", ""), where);
  c.act.alpha = static_cast<float>(attr_float(n, "fused_alpha", 0.0));
  c.act.beta = static_cast<float>(attr_float(n, "fused_beta", 0.0));
  c.residual = ctx.has_input(3);
  c.add_after_activation = c.residual && attr_int(n, "fused_add_after_activation", 0) != 0;
  c.auto_pad = attr_string(n, "auto_pad", "NOTSET");
  bool ok = true;
  c.strides = pair_attr(n, "strides", 1, ok);
  c.dilations = pair_attr(n, "dilations", 1, ok);
  auto pads = attr_ints(n, "pads", {0, 0, 0, 0});
  if (pads.size() == 4) {
    c.pad_begin = {pads[0], pads[1]};
    c.pad_end = {pads[2], pads[3]};
  } else {
    ok = false;
  }
  const at::Tensor* w = ctx.constant(1);
  const at::Tensor* b = ctx.has_input(2) ? ctx.constant(2) : nullptr;
  ok = ok && w && w->dim() == 4 && w->scalar_type() == at::kFloat && c.group > 0 && (!ctx.has_input(2) || b);
  if (ok && transpose) {
    // output_shape and SAME padding size the output from the input; output_padding adds rows
    // at the end, which oneDNN expresses as less padding there.
    const auto output_padding = attr_ints(n, "output_padding", {0, 0});
    ok = !has_attr(n, "output_shape") && (c.auto_pad == "NOTSET" || c.auto_pad == "VALID") && output_padding.size() == 2;
    for (std::size_t i = 0; ok && i < 2; ++i) {
      ok = output_padding[i] >= 0 && output_padding[i] < c.strides[i] && c.pad_end[i] >= output_padding[i];
      if (ok) c.pad_end[i] -= output_padding[i];
    }
    if (ok && c.auto_pad == "VALID") c.pad_begin = c.pad_end = {0, 0};
  }
  if (ok) {
    for (std::size_t i = 0; i < 2; ++i)
      ok = ok && c.strides[i] > 0 && c.dilations[i] > 0 && c.pad_begin[i] >= 0 && c.pad_end[i] >= 0;
    if (transpose) ok = ok && w->size(0) % c.group == 0;
    else ok = ok && w->size(0) % c.group == 0;
  }
  if (ok) {
    const std::int64_t oc = transpose ? w->size(1) * c.group : w->size(0);
    if (b && (b->numel() != oc || b->scalar_type() != at::kFloat)) ok = false;
    if (ok) {
      c.weight = w->contiguous();
      c.bias = b ? b->reshape({oc}).contiguous() : at::zeros({oc}, at::kFloat);
    }
  }
  if (ok && transpose && c.group == 1 && c.dilations == std::array<std::int64_t, 2>{1, 1} &&
      w->size(2) % c.strides[0] == 0 && w->size(3) % c.strides[1] == 0) {
    // Pads here are final: VALID is zeros and output_padding was taken off pad_end above.
    const std::int64_t sh = c.strides[0], sw = c.strides[1];
    c.weight = shuffled_weights(*w, sh, sw);
    c.bias = c.bias.repeat({sh * sw}).contiguous();
    for (std::size_t i = 0; i < 2; ++i) {
      const std::int64_t s = c.strides[i], k = w->size(static_cast<std::int64_t>(i) + 2), m = k / s;
      const std::int64_t lo = c.pad_begin[i], hi = c.pad_end[i];
      // Shuffled row q covers transposed rows q*s .. q*s+s-1 before the pads come off; with
      // convolution pads (m-1, m-1) row q = 0 .. IH+m-2 is computed. Rows wholly inside the
      // pads are skipped where a non-negative convolution pad allows it; the copy crops the rest.
      const std::int64_t pad_l = std::max<std::int64_t>(0, m - 1 - lo / s);
      const std::int64_t pad_r = std::max<std::int64_t>(0, m - (hi + s) / s);
      const std::int64_t first_q = m - 1 - pad_l;
      c.crop[i] = lo - first_q * s;
      c.t_kernel[i] = k;
      c.t_pads[i] = lo + hi;
      c.pad_begin[i] = pad_l;
      c.pad_end[i] = pad_r;
    }
    c.auto_pad = "NOTSET";
    c.transpose = false;
    c.strides = {1, 1};
    c.shuffle = {sh, sw};
    // An activation commutes with the copy and the crop; an add before it does not.
    c.post_ops_in_primitive = !c.residual || c.add_after_activation;
  }
  if (ok && !c.transpose && c.group == 1 && c.dilations == std::array<std::int64_t, 2>{1, 1} &&
      c.strides == std::array<std::int64_t, 2>{1, 1} && (c.auto_pad == "NOTSET" || c.auto_pad == "VALID")) {
    const std::int64_t oc = w->size(0), ic = w->size(1), kh = w->size(2), kw = w->size(3);
    // Few output channels, a kernel larger than 1x1 and enough input channels that the 1x1
    // convolution is the work; the gather reads OC*KH*KW values per output pixel.
    if (oc <= 4 && kh * kw > 1 && oc * kh * kw <= 64 && ic >= 16) {
      if (c.auto_pad == "VALID") c.pad_begin = c.pad_end = {0, 0};
      c.weight = w->permute({2, 3, 0, 1}).reshape({kh * kw * oc, ic, 1, 1}).contiguous();
      c.tap_bias = c.bias;
      c.bias = at::zeros({kh * kw * oc}, at::kFloat);
      c.taps = {kh, kw};
      c.tap_pad_begin = c.pad_begin;
      c.tap_pad_end = c.pad_end;
      c.pad_begin = c.pad_end = {0, 0};
      c.auto_pad = "NOTSET";
      c.post_ops_in_primitive = false;
    }
  }
  return conv_kernel(std::move(c), std::move(plain), op);
}

}  // namespace

const kernel_registry& fused_conv_kernels() {
  static const kernel_registry table = [] {
    kernel_registry r;
    r["Conv"] = [](const build_context& ctx) { return build(ctx, false); };
    r["ConvTranspose"] = [](const build_context& ctx) { return build(ctx, true); };
    return r;
  }();
  return table;
}

bool fusable_activation(std::string_view op_type) {
  return op_type == "Relu" || op_type == "LeakyRelu" || op_type == "Clip" || op_type == "HardSwish" ||
         op_type == "Sigmoid" || op_type == "Tanh" || op_type == "Gelu" || op_type == "Elu";
}

}  // namespace acg2vec::runtime
