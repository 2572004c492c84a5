// Shape and data-movement kernels.
#include "core/error.h"
#include "runtime/ops.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace acg2vec::runtime {
namespace {

at::Tensor wrap_indices(const at::Tensor& idx, std::int64_t size) {
  at::Tensor i = idx.to(at::kLong);
  return at::where(i < 0, i + size, i);
}

at::Tensor constant_from_attributes(const node& n) {
  if (auto t = attr_tensor(n, "value")) return *t;
  if (has_attr(n, "value_float")) return at::scalar_tensor(attr_float(n, "value_float", 0), at::kFloat);
  if (has_attr(n, "value_int")) return at::scalar_tensor(attr_int(n, "value_int", 0), at::kLong);
  if (has_attr(n, "value_floats")) {
    auto v = attr_floats(n, "value_floats");
    return at::tensor(v, at::kDouble).to(at::kFloat);
  }
  if (has_attr(n, "value_ints")) return at::tensor(attr_ints(n, "value_ints"), at::kLong);
  fail(errc::bad_parameter, "node '{}' (Constant): no supported value attribute", n.name);
}

std::vector<std::int64_t> broadcast_shapes(at::IntArrayRef a, const std::vector<std::int64_t>& b) {
  const std::size_t rank = std::max(a.size(), b.size());
  std::vector<std::int64_t> out(rank);
  for (std::size_t i = 0; i < rank; ++i) {
    const std::int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    const std::int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (da != db && da != 1 && db != 1) fail(errc::bad_parameter, "Expand: shapes are not broadcastable");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

// Pads one axis by index selection, which serves the reflect and edge modes for any rank.
at::Tensor pad_axis_indexed(const at::Tensor& x, std::int64_t axis, std::int64_t before, std::int64_t after,
                            bool reflect) {
  const std::int64_t n = x.size(axis);
  if (n == 0) fail(errc::bad_parameter, "Pad: cannot {}-pad an empty axis", reflect ? "reflect" : "edge");
  std::vector<std::int64_t> idx;
  for (std::int64_t j = -before; j < n + after; ++j) {
    std::int64_t i = j;
    if (reflect && n > 1) {
      const std::int64_t period = 2 * (n - 1);
      i = ((i % period) + period) % period;
      if (i >= n) i = period - i;
    } else {
      i = std::clamp<std::int64_t>(i, 0, n - 1);
    }
    idx.push_back(i);
  }
  return x.index_select(axis, at::tensor(idx, at::kLong));
}

at::Tensor onnx_pad(const at::Tensor& x, std::vector<std::int64_t> pads, const std::string& mode, double value,
                    const at::Tensor& value_tensor) {
  const std::int64_t rank = x.dim();
  if (static_cast<std::int64_t>(pads.size()) != 2 * rank)
    fail(errc::bad_parameter, "Pad: {} pads for rank {}", pads.size(), rank);
  std::vector<std::int64_t> out_shape;
  for (std::int64_t i = 0; i < rank; ++i) out_shape.push_back(x.size(i) + pads[i] + pads[i + rank]);
  check_numel(out_shape, "Pad");
  if (mode == "constant") {
    std::vector<std::int64_t> order;
    for (std::int64_t i = rank; i-- > 0;) {
      order.push_back(pads[i]);
      order.push_back(pads[i + rank]);
    }
    if (value_tensor.defined() && at::isIntegralType(x.scalar_type(), true))
      return at::constant_pad_nd(x, order, value_tensor.item());
    return at::constant_pad_nd(x, order, value);
  }
  if (mode != "reflect" && mode != "edge" && mode != "wrap") fail(errc::bad_parameter, "Pad: unknown mode '{}'", mode);
  at::Tensor y = x;
  for (std::int64_t i = 0; i < rank; ++i) {
    std::int64_t b = pads[i], e = pads[i + rank];
    if (b < 0) y = y.narrow(i, -b, y.size(i) + b), b = 0;
    if (e < 0) y = y.narrow(i, 0, y.size(i) + e), e = 0;
    if (b == 0 && e == 0) continue;
    if (mode == "wrap") {
      const std::int64_t n = y.size(i);
      std::vector<std::int64_t> idx;
      for (std::int64_t j = -b; j < n + e; ++j) idx.push_back(((j % n) + n) % n);
      y = y.index_select(i, at::tensor(idx, at::kLong));
    } else {
      y = pad_axis_indexed(y, i, b, e, mode == "reflect");
    }
  }
  return y;
}

void register_shape_ops(kernel_registry& r) {
  r["Identity"] = [](const build_context&) -> kernel {
    return [](const tensor_list& in) { return tensor_list{need(in, 0, "Identity")}; };
  };
  r["Constant"] = [](const build_context& ctx) -> kernel {
    at::Tensor value = constant_from_attributes(ctx.n);
    return [value](const tensor_list&) { return tensor_list{value}; };
  };
  r["ConstantOfShape"] = [](const build_context& ctx) -> kernel {
    at::Tensor value = attr_tensor(ctx.n, "value").value_or(at::zeros({1}, at::kFloat));
    if (value.numel() != 1) fail(errc::bad_parameter, "node '{}' (ConstantOfShape): value must have one element", ctx.n.name);
    value = value.reshape({});
    return [value](const tensor_list& in) {
      std::vector<std::int64_t> shape = to_ints(need(in, 0, "ConstantOfShape"));
      check_numel(shape, "ConstantOfShape");
      return tensor_list{value.expand(shape).contiguous()};
    };
  };
  r["Shape"] = [](const build_context& ctx) -> kernel {
    const std::int64_t start = attr_int(ctx.n, "start", 0);
    const bool has_end = has_attr(ctx.n, "end");
    const std::int64_t end = attr_int(ctx.n, "end", 0);
    return [=](const tensor_list& in) {
      const at::Tensor& x = need(in, 0, "Shape");
      const std::int64_t rank = x.dim();
      auto clip = [rank](std::int64_t v) { return std::clamp<std::int64_t>(v < 0 ? v + rank : v, 0, rank); };
      const std::int64_t s = clip(start), e = has_end ? clip(end) : rank;
      std::vector<std::int64_t> dims;
      for (std::int64_t i = s; i < e; ++i) dims.push_back(x.size(i));
      return tensor_list{at::tensor(dims, at::kLong)};
    };
  };
  r["Size"] = [](const build_context&) -> kernel {
    return [](const tensor_list& in) { return tensor_list{at::scalar_tensor(need(in, 0, "Size").numel(), at::kLong)}; };
  };
  r["Reshape"] = [](const build_context& ctx) -> kernel {
    const bool allowzero = attr_int(ctx.n, "allowzero", 0) != 0;
    const bool from_attr = ctx.opset < 5;
    const std::vector<std::int64_t> attr_shape = attr_ints(ctx.n, "shape");
    return [=](const tensor_list& in) {
      const at::Tensor& x = need(in, 0, "Reshape");
      std::vector<std::int64_t> shape = from_attr ? attr_shape : to_ints(need(in, 1, "Reshape"));
      for (std::size_t i = 0; i < shape.size(); ++i) {
        if (shape[i] == 0 && !allowzero) {
          if (static_cast<std::int64_t>(i) >= x.dim()) fail(errc::bad_parameter, "Reshape: 0 refers past the input rank");
          shape[i] = x.size(static_cast<std::int64_t>(i));
        }
      }
      return tensor_list{x.reshape(shape)};
    };
  };
  r["Flatten"] = [](const build_context& ctx) -> kernel {
    const std::int64_t axis = attr_int(ctx.n, "axis", 1);
    return [axis](const tensor_list& in) {
      const at::Tensor& x = need(in, 0, "Flatten");
      const std::int64_t rank = x.dim();
      const std::int64_t a = axis < 0 ? axis + rank : axis;
      if (a < 0 || a > rank) fail(errc::bad_parameter, "Flatten: axis {} out of range for rank {}", axis, rank);
      std::int64_t outer = 1;
      for (std::int64_t i = 0; i < a; ++i) outer *= x.size(i);
      std::int64_t inner = 1;
      for (std::int64_t i = a; i < rank; ++i) inner *= x.size(i);
      return tensor_list{x.reshape({outer, inner})};
    };
  };
  r["Transpose"] = [](const build_context& ctx) -> kernel {
    const std::vector<std::int64_t> perm = attr_ints(ctx.n, "perm");
    return [perm](const tensor_list& in) {
      const at::Tensor& x = need(in, 0, "Transpose");
      std::vector<std::int64_t> p = perm;
      if (p.empty())
        for (std::int64_t i = x.dim(); i-- > 0;) p.push_back(i);
      if (static_cast<std::int64_t>(p.size()) != x.dim())
        fail(errc::bad_parameter, "Transpose: perm has {} entries for rank {}", p.size(), x.dim());
      return tensor_list{x.permute(p)};
    };
  };
  r["Concat"] = [](const build_context& ctx) -> kernel {
    const std::int64_t axis = attr_int(ctx.n, "axis", 0);
    return [axis](const tensor_list& in) {
      std::vector<at::Tensor> parts;
      for (const auto& t : in)
        if (t.defined()) parts.push_back(t);
      if (parts.empty()) fail(errc::bad_parameter, "Concat: no inputs");
      const std::int64_t a = normalize_axis(axis, parts[0].dim(), "Concat");
      return tensor_list{at::cat(parts, a)};
    };
  };
  r["Split"] = [](const build_context& ctx) -> kernel {
    const std::int64_t axis = attr_int(ctx.n, "axis", 0);
    const std::vector<std::int64_t> split_attr = attr_ints(ctx.n, "split");
    const bool from_input = ctx.opset >= 13;
    const std::int64_t outputs = static_cast<std::int64_t>(ctx.n.outputs.size());
    const std::int64_t num_outputs = attr_int(ctx.n, "num_outputs", outputs);
    return [=](const tensor_list& in) {
      const at::Tensor& x = need(in, 0, "Split");
      const std::int64_t a = normalize_axis(axis, x.dim(), "Split");
      std::vector<std::int64_t> sizes = from_input ? (present(in, 1) ? to_ints(in[1]) : std::vector<std::int64_t>{})
                                                   : split_attr;
      if (sizes.empty()) {
        const std::int64_t n = x.size(a);
        const std::int64_t chunk = (n + num_outputs - 1) / std::max<std::int64_t>(num_outputs, 1);
        for (std::int64_t i = 0, left = n; i < num_outputs; ++i, left -= chunk) sizes.push_back(std::min(chunk, left));
      }
      if (std::accumulate(sizes.begin(), sizes.end(), std::int64_t{0}) != x.size(a))
        fail(errc::bad_parameter, "Split: sizes do not add up to the axis length {}", x.size(a));
      auto parts = at::split_with_sizes(x, sizes, a);
      return tensor_list(parts.begin(), parts.end());
    };
  };
  for (const char* name : {"Squeeze", "Unsqueeze"}) {
    const bool un = std::string_view(name) == "Unsqueeze";
    r[name] = [un, name](const build_context& ctx) -> kernel {
      const bool from_input = ctx.opset >= 13;
      const std::vector<std::int64_t> attr_axes = attr_ints(ctx.n, "axes");
      return [=](const tensor_list& in) {
        const at::Tensor& x = need(in, 0, name);
        std::vector<std::int64_t> axes = from_input ? (present(in, 1) ? to_ints(in[1]) : std::vector<std::int64_t>{})
                                                    : attr_axes;
        if (un) {
          const std::int64_t out_rank = x.dim() + static_cast<std::int64_t>(axes.size());
          for (auto& a : axes) a = normalize_axis(a, out_rank, name);
          std::sort(axes.begin(), axes.end());
          if (std::adjacent_find(axes.begin(), axes.end()) != axes.end()) fail(errc::bad_parameter, "Unsqueeze: repeated axis");
          std::vector<std::int64_t> shape;
          std::size_t src = 0, k = 0;
          for (std::int64_t i = 0; i < out_rank; ++i) {
            if (k < axes.size() && axes[k] == i) {
              shape.push_back(1);
              ++k;
            } else {
              shape.push_back(x.size(static_cast<std::int64_t>(src++)));
            }
          }
          return tensor_list{x.reshape(shape)};
        }
        std::vector<std::int64_t> shape;
        if (axes.empty()) {
          for (std::int64_t i = 0; i < x.dim(); ++i)
            if (x.size(i) != 1) shape.push_back(x.size(i));
        } else {
          for (auto& a : axes) a = normalize_axis(a, x.dim(), name);
          for (std::int64_t i = 0; i < x.dim(); ++i) {
            if (std::find(axes.begin(), axes.end(), i) != axes.end()) {
              if (x.size(i) != 1) fail(errc::bad_parameter, "Squeeze: axis {} has size {}", i, x.size(i));
            } else {
              shape.push_back(x.size(i));
            }
          }
        }
        return tensor_list{x.reshape(shape)};
      };
    };
  }
  r["Expand"] = [](const build_context&) -> kernel {
    return [](const tensor_list& in) {
      const at::Tensor& x = need(in, 0, "Expand");
      std::vector<std::int64_t> shape = broadcast_shapes(x.sizes(), to_ints(need(in, 1, "Expand")));
      check_numel(shape, "Expand");
      return tensor_list{x.expand(shape)};
    };
  };
  r["Tile"] = [](const build_context&) -> kernel {
    return [](const tensor_list& in) {
      const at::Tensor& x = need(in, 0, "Tile");
      std::vector<std::int64_t> reps = to_ints(need(in, 1, "Tile"));
      if (static_cast<std::int64_t>(reps.size()) != x.dim())
        fail(errc::bad_parameter, "Tile: {} repeats for rank {}", reps.size(), x.dim());
      std::vector<std::int64_t> shape;
      for (std::int64_t i = 0; i < x.dim(); ++i) shape.push_back(x.size(i) * reps[static_cast<std::size_t>(i)]);
      check_numel(shape, "Tile");
      return tensor_list{x.repeat(reps)};
    };
  };
  r["Range"] = [](const build_context&) -> kernel {
    return [](const tensor_list& in) {
      const at::Tensor& start = need(in, 0, "Range");
      const double s = to_double(start), l = to_double(need(in, 1, "Range")), d = to_double(need(in, 2, "Range"));
      if (d == 0) fail(errc::bad_parameter, "Range: delta is zero");
      const double count = std::max(std::ceil((l - s) / d), 0.0);
      if (count > static_cast<double>(std::int64_t{1} << 31)) fail(errc::bad_parameter, "Range: too many elements");
      const auto n = static_cast<std::int64_t>(count);
      if (at::isIntegralType(start.scalar_type(), false)) {
        const std::int64_t si = to_ints(start.reshape({1}))[0], di = to_ints(in[2].reshape({1}))[0];
        return tensor_list{(at::arange(n, at::kLong) * di + si).to(start.scalar_type())};
      }
      return tensor_list{(at::arange(n, at::kDouble) * d + s).to(start.scalar_type())};
    };
  };
  r["Pad"] = [](const build_context& ctx) -> kernel {
    const std::string mode = attr_string(ctx.n, "mode", "constant");
    const bool from_input = ctx.opset >= 11;
    const std::vector<std::int64_t> attr_pads = attr_ints(ctx.n, ctx.opset < 2 ? "paddings" : "pads");
    const double attr_value = attr_float(ctx.n, "value", 0.0);
    return [=](const tensor_list& in) {
      const at::Tensor& x = need(in, 0, "Pad");
      std::vector<std::int64_t> pads = from_input ? to_ints(need(in, 1, "Pad")) : attr_pads;
      double value = attr_value;
      at::Tensor value_tensor;
      if (from_input && present(in, 2) && in[2].numel() > 0) {
        value_tensor = in[2].reshape({});
        value = to_double(value_tensor);
      }
      if (from_input && present(in, 3)) {
        // opset 18: pads only for the listed axes.
        std::vector<std::int64_t> axes = to_ints(in[3]);
        std::vector<std::int64_t> full(2 * static_cast<std::size_t>(x.dim()), 0);
        if (pads.size() != 2 * axes.size()) fail(errc::bad_parameter, "Pad: pads do not match axes");
        for (std::size_t i = 0; i < axes.size(); ++i) {
          const auto a = static_cast<std::size_t>(normalize_axis(axes[i], x.dim(), "Pad"));
          full[a] = pads[i];
          full[a + static_cast<std::size_t>(x.dim())] = pads[i + axes.size()];
        }
        pads = full;
      }
      return tensor_list{onnx_pad(x, pads, mode, value, value_tensor)};
    };
  };
}

void register_indexing_ops(kernel_registry& r) {
  r["Slice"] = [](const build_context& ctx) -> kernel {
    const bool from_input = ctx.opset >= 10;
    const std::vector<std::int64_t> a_starts = attr_ints(ctx.n, "starts"), a_ends = attr_ints(ctx.n, "ends"),
                                    a_axes = attr_ints(ctx.n, "axes");
    return [=](const tensor_list& in) {
      at::Tensor x = need(in, 0, "Slice");
      std::vector<std::int64_t> starts = from_input ? to_ints(need(in, 1, "Slice")) : a_starts;
      std::vector<std::int64_t> ends = from_input ? to_ints(need(in, 2, "Slice")) : a_ends;
      std::vector<std::int64_t> axes = from_input ? (present(in, 3) ? to_ints(in[3]) : std::vector<std::int64_t>{}) : a_axes;
      std::vector<std::int64_t> steps = from_input && present(in, 4) ? to_ints(in[4]) : std::vector<std::int64_t>{};
      if (starts.size() != ends.size()) fail(errc::bad_parameter, "Slice: starts and ends differ in length");
      if (axes.empty())
        for (std::size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<std::int64_t>(i));
      if (steps.empty()) steps.assign(starts.size(), 1);
      if (axes.size() != starts.size() || steps.size() != starts.size())
        fail(errc::bad_parameter, "Slice: axes/steps do not match starts");
      for (std::size_t i = 0; i < starts.size(); ++i) {
        const std::int64_t a = normalize_axis(axes[i], x.dim(), "Slice");
        const std::int64_t dim = x.size(a);
        const std::int64_t step = steps[i];
        if (step == 0) fail(errc::bad_parameter, "Slice: step is zero");
        std::int64_t s = starts[i], e = ends[i];
        if (s < 0) s = s < -dim ? 0 : s + dim;
        if (e < 0) e = e < -dim ? -1 : e + dim;
        if (step > 0) {
          s = std::clamp<std::int64_t>(s, 0, dim);
          e = std::clamp<std::int64_t>(e, 0, dim);
          x = x.slice(a, s, std::max(s, e), step);
        } else {
          s = std::clamp<std::int64_t>(s, -1, dim - 1);
          e = std::clamp<std::int64_t>(e, -1, dim - 1);
          const std::int64_t count = s > e ? (s - e + (-step) - 1) / (-step) : 0;
          at::Tensor idx = at::arange(count, at::kLong) * step + s;
          x = x.index_select(a, idx);
        }
      }
      return tensor_list{x};
    };
  };
  r["Gather"] = [](const build_context& ctx) -> kernel {
    const std::int64_t axis = attr_int(ctx.n, "axis", 0);
    return [axis](const tensor_list& in) {
      const at::Tensor& x = need(in, 0, "Gather");
      const at::Tensor& idx = need(in, 1, "Gather");
      const std::int64_t a = normalize_axis(axis, x.dim(), "Gather");
      if (idx.dim() == 0) {
        // One index (e.g. q, k, v = qkv[0], qkv[1], qkv[2]): a view instead of a copy.
        std::int64_t i = idx.item<std::int64_t>();
        if (i < -x.size(a) || i >= x.size(a))
          fail(errc::bad_parameter, "Gather: index {} out of range for axis size {}", i, x.size(a));
        return tensor_list{x.select(a, i < 0 ? i + x.size(a) : i)};
      }
      at::Tensor flat = wrap_indices(idx, x.size(a)).reshape({-1});
      at::Tensor y = x.index_select(a, flat);
      std::vector<std::int64_t> shape(x.sizes().begin(), x.sizes().begin() + a);
      shape.insert(shape.end(), idx.sizes().begin(), idx.sizes().end());
      shape.insert(shape.end(), x.sizes().begin() + a + 1, x.sizes().end());
      return tensor_list{y.reshape(shape)};
    };
  };
  r["GatherElements"] = [](const build_context& ctx) -> kernel {
    const std::int64_t axis = attr_int(ctx.n, "axis", 0);
    return [axis](const tensor_list& in) {
      const at::Tensor& x = need(in, 0, "GatherElements");
      const std::int64_t a = normalize_axis(axis, x.dim(), "GatherElements");
      return tensor_list{at::gather(x, a, wrap_indices(need(in, 1, "GatherElements"), x.size(a)))};
    };
  };
  r["GatherND"] = [](const build_context& ctx) -> kernel {
    const std::int64_t batch_dims = attr_int(ctx.n, "batch_dims", 0);
    return [batch_dims](const tensor_list& in) {
      const at::Tensor& x = need(in, 0, "GatherND");
      const at::Tensor& idx = need(in, 1, "GatherND");
      const std::int64_t b = batch_dims;
      if (idx.dim() < 1 || b < 0 || b >= std::min(x.dim(), idx.dim()))
        fail(errc::bad_parameter, "GatherND: invalid ranks or batch_dims");
      const std::int64_t k = idx.size(-1);
      if (b + k > x.dim()) fail(errc::bad_parameter, "GatherND: index depth {} too large", k);
      std::int64_t batch = 1;
      for (std::int64_t i = 0; i < b; ++i) batch *= x.size(i);
      // View data as [batch, prod(indexed dims), rest...] and indices as [batch, M, k].
      std::vector<std::int64_t> rest(x.sizes().begin() + b + k, x.sizes().end());
      std::int64_t indexed = 1;
      for (std::int64_t i = b; i < b + k; ++i) indexed *= x.size(i);
      std::vector<std::int64_t> xv{batch, indexed};
      xv.insert(xv.end(), rest.begin(), rest.end());
      at::Tensor data = x.reshape(xv);
      at::Tensor ind = idx.to(at::kLong).reshape({batch, -1, k});
      at::Tensor lin = at::zeros({batch, ind.size(1)}, at::kLong);
      for (std::int64_t j = 0; j < k; ++j) {
        at::Tensor c = ind.select(2, j);
        c = at::where(c < 0, c + x.size(b + j), c);
        lin = lin * x.size(b + j) + c;
      }
      at::Tensor bidx = at::arange(batch, at::kLong).unsqueeze(1).expand_as(lin);
      at::Tensor y = data.index({bidx, lin});
      std::vector<std::int64_t> shape(idx.sizes().begin(), idx.sizes().end() - 1);
      shape.insert(shape.end(), rest.begin(), rest.end());
      return tensor_list{y.reshape(shape)};
    };
  };
  r["ScatterND"] = [](const build_context& ctx) -> kernel {
    const std::string reduction = attr_string(ctx.n, "reduction", "none");
    if (reduction != "none" && reduction != "add" && reduction != "mul")
      fail(errc::bad_parameter, "node '{}' (ScatterND): reduction '{}' is not supported", ctx.n.name, reduction);
    return [reduction](const tensor_list& in) {
      const at::Tensor& x = need(in, 0, "ScatterND");
      const at::Tensor& idx = need(in, 1, "ScatterND");
      const at::Tensor& upd = need(in, 2, "ScatterND");
      const std::int64_t k = idx.size(-1);
      if (k > x.dim()) fail(errc::bad_parameter, "ScatterND: index depth {} exceeds rank {}", k, x.dim());
      std::int64_t indexed = 1;
      for (std::int64_t i = 0; i < k; ++i) indexed *= x.size(i);
      std::vector<std::int64_t> rest(x.sizes().begin() + k, x.sizes().end());
      std::vector<std::int64_t> xv{indexed};
      xv.insert(xv.end(), rest.begin(), rest.end());
      at::Tensor out = x.clone().reshape(xv);
      at::Tensor ind = idx.to(at::kLong).reshape({-1, k});
      at::Tensor lin = at::zeros({ind.size(0)}, at::kLong);
      for (std::int64_t j = 0; j < k; ++j) {
        at::Tensor c = ind.select(1, j);
        c = at::where(c < 0, c + x.size(j), c);
        lin = lin * x.size(j) + c;
      }
      std::vector<std::int64_t> uv{ind.size(0)};
      uv.insert(uv.end(), rest.begin(), rest.end());
      at::Tensor u = upd.reshape(uv).to(x.scalar_type());
      if (reduction == "mul") {
        for (std::int64_t i = 0; i < lin.size(0); ++i) {
          const std::int64_t t = lin[i].item<std::int64_t>();
          out[t] = out[t] * u[i];
        }
      } else {
        out.index_put_({lin}, u, reduction == "add");
      }
      return tensor_list{out.reshape(x.sizes())};
    };
  };
  r["ScatterElements"] = [](const build_context& ctx) -> kernel {
    const std::int64_t axis = attr_int(ctx.n, "axis", 0);
    const std::string reduction = attr_string(ctx.n, "reduction", "none");
    if (reduction != "none" && reduction != "add" && reduction != "mul")
      fail(errc::bad_parameter, "node '{}' (ScatterElements): reduction '{}' is not supported", ctx.n.name, reduction);
    return [axis, reduction](const tensor_list& in) {
      const at::Tensor& x = need(in, 0, "ScatterElements");
      const std::int64_t a = normalize_axis(axis, x.dim(), "ScatterElements");
      at::Tensor idx = wrap_indices(need(in, 1, "ScatterElements"), x.size(a));
      const at::Tensor& upd = need(in, 2, "ScatterElements");
      if (reduction == "none") return tensor_list{at::scatter(x, a, idx, upd)};
      return tensor_list{at::scatter(x, a, idx, upd, reduction == "add" ? "add" : "multiply")};
    };
  };
  r["NonZero"] = [](const build_context&) -> kernel {
    return [](const tensor_list& in) {
      const at::Tensor& x = need(in, 0, "NonZero");
      if (x.dim() == 0) return tensor_list{at::nonzero(x.reshape({1})).t().narrow(0, 0, 0)};
      return tensor_list{at::nonzero(x).t().contiguous()};
    };
  };
  r["OneHot"] = [](const build_context& ctx) -> kernel {
    const std::int64_t axis = attr_int(ctx.n, "axis", -1);
    return [axis](const tensor_list& in) {
      const at::Tensor& idx = need(in, 0, "OneHot");
      const auto depth = static_cast<std::int64_t>(to_double(need(in, 1, "OneHot")));
      const at::Tensor& values = need(in, 2, "OneHot");
      if (values.numel() != 2) fail(errc::bad_parameter, "OneHot: values must have two elements");
      std::vector<std::int64_t> out_shape(idx.sizes().begin(), idx.sizes().end());
      out_shape.push_back(depth);
      check_numel(out_shape, "OneHot");
      const std::int64_t a = normalize_axis(axis, idx.dim() + 1, "OneHot");
      at::Tensor i = idx.to(at::kDouble).floor().to(at::kLong);
      i = at::where(i < 0, i + depth, i).unsqueeze(a);
      std::vector<std::int64_t> rshape(static_cast<std::size_t>(idx.dim() + 1), 1);
      rshape[static_cast<std::size_t>(a)] = depth;
      at::Tensor hot = at::arange(depth, at::kLong).reshape(rshape) == i;
      at::Tensor v = values.reshape({2});
      return tensor_list{at::where(hot, v[1], v[0])};
    };
  };
  r["Trilu"] = [](const build_context& ctx) -> kernel {
    const bool upper = attr_int(ctx.n, "upper", 1) != 0;
    return [upper](const tensor_list& in) {
      const at::Tensor& x = need(in, 0, "Trilu");
      const std::int64_t k = present(in, 1) ? to_ints(in[1].reshape({-1})).at(0) : 0;
      return tensor_list{upper ? at::triu(x, k) : at::tril(x, k)};
    };
  };
  for (const char* name : {"DepthToSpace", "SpaceToDepth"}) {
    const bool to_space = std::string_view(name) == "DepthToSpace";
    r[name] = [to_space, name](const build_context& ctx) -> kernel {
      const std::int64_t bs = attr_int(ctx.n, "blocksize", 0);
      const bool crd = attr_string(ctx.n, "mode", "DCR") == "CRD";
      if (bs <= 0) fail(errc::bad_parameter, "node '{}' ({}): blocksize must be positive", ctx.n.name, name);
      return [=](const tensor_list& in) {
        const at::Tensor& x = need(in, 0, name);
        if (x.dim() != 4) fail(errc::bad_parameter, "{}: expected rank 4", name);
        const std::int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
        if (to_space) {
          if (c % (bs * bs) != 0) fail(errc::bad_parameter, "DepthToSpace: channels not divisible");
          at::Tensor t = crd ? x.reshape({n, c / (bs * bs), bs, bs, h, w}).permute({0, 1, 4, 2, 5, 3})
                             : x.reshape({n, bs, bs, c / (bs * bs), h, w}).permute({0, 3, 4, 1, 5, 2});
          return tensor_list{t.reshape({n, c / (bs * bs), h * bs, w * bs})};
        }
        if (h % bs != 0 || w % bs != 0) fail(errc::bad_parameter, "SpaceToDepth: size not divisible");
        at::Tensor t = x.reshape({n, c, h / bs, bs, w / bs, bs}).permute({0, 3, 5, 1, 2, 4});
        return tensor_list{t.reshape({n, c * bs * bs, h / bs, w / bs})};
      };
    };
  }
}

}  // namespace

void register_tensor_ops(kernel_registry& r) {
  register_shape_ops(r);
  register_indexing_ops(r);
}

}  // namespace acg2vec::runtime
