// Load-time folds of constant or zero work into the convolutions that follow or precede it (see
// rewrites.h): BatchNormalization into the weights, zero Pads into the padding.
#include "runtime/rewrite_links.h"
#include "runtime/rewrites.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <unordered_map>
#include <vector>

namespace acg2vec::runtime {

using rewrite::known_constants;
using rewrite::drop_removed;
using rewrite::link_values;

// Folds y = BN(Conv(x)) into Conv(x) with rescaled weights when every parameter is a constant
// and the Conv result feeds nothing else: one fewer pass over the activations.
void fold_batch_norms(graph& g, const std::set<std::string>& keep) {
  auto [readers, producer] = link_values(g);
  auto init = [&](const std::string& name) -> const at::Tensor* {
    auto it = g.initializers.find(name);
    return it == g.initializers.end() ? nullptr : &it->second;
  };
  std::vector<bool> removed(g.nodes.size(), false);
  int folded = 0;
  for (std::size_t bi = 0; bi < g.nodes.size(); ++bi) {
    node& bn = g.nodes[bi];
    if (bn.op_type != "BatchNormalization" || !is_default_domain(bn.domain) || bn.inputs.size() < 5 ||
        bn.outputs.size() != 1 || attr_int(bn, "training_mode", 0) != 0)
      continue;
    auto pit = producer.find(bn.inputs[0]);
    if (pit == producer.end() || removed[pit->second]) continue;
    node& conv = g.nodes[pit->second];
    if (conv.op_type != "Conv" || !is_default_domain(conv.domain) || conv.outputs.size() != 1 ||
        readers[conv.outputs[0]] != 1 || keep.count(conv.outputs[0]) || conv.inputs.size() < 2)
      continue;
    const at::Tensor* w = init(conv.inputs[1]);
    const at::Tensor* b = conv.inputs.size() > 2 && !conv.inputs[2].empty() ? init(conv.inputs[2]) : nullptr;
    if (conv.inputs.size() > 2 && !conv.inputs[2].empty() && !b) continue;
    const at::Tensor *scale = init(bn.inputs[1]), *shift = init(bn.inputs[2]), *mean = init(bn.inputs[3]),
                     *var = init(bn.inputs[4]);
    if (!w || !scale || !shift || !mean || !var || w->scalar_type() != at::kFloat) continue;
    const std::int64_t channels = w->size(0);
    if (scale->numel() != channels || shift->numel() != channels || mean->numel() != channels ||
        var->numel() != channels)
      continue;
    const double eps = attr_float(bn, "epsilon", 1e-5);
    // Fold in double precision so that the folded weights round only once.
    at::Tensor s = scale->to(at::kDouble).reshape({-1}) / at::sqrt(var->to(at::kDouble).reshape({-1}) + eps);
    std::vector<std::int64_t> shape(static_cast<std::size_t>(w->dim()), 1);
    shape[0] = channels;
    at::Tensor new_w = (w->to(at::kDouble) * s.reshape(shape)).to(at::kFloat).contiguous();
    at::Tensor old_b = b ? b->to(at::kDouble).reshape({-1}) : at::zeros({channels}, at::kDouble);
    at::Tensor new_b = ((old_b - mean->to(at::kDouble).reshape({-1})) * s + shift->to(at::kDouble).reshape({-1}))
                           .to(at::kFloat)
                           .contiguous();
    const std::string wn = conv.outputs[0] + "::folded_weight", bname = conv.outputs[0] + "::folded_bias";
    g.initializers[wn] = new_w;
    g.initializers[bname] = new_b;
    conv.inputs.resize(3);
    conv.inputs[1] = wn;
    conv.inputs[2] = bname;
    conv.outputs[0] = bn.outputs[0];
    removed[bi] = true;
    ++folded;
  }
  if (folded == 0) return;
  drop_removed(g, removed);
  spdlog::debug("runtime: folded {} BatchNormalization nodes into convolutions", folded);
}

// Pad(constant 0, spatial axes only) -> Conv becomes the Conv with larger pads: Keras and TF
// converters spell SAME padding of strided convolutions (ZeroPadding2D) as a separate Pad, which
// writes a whole padded copy of the activations (10-13 % of MobileNetV2's time) for zeros the
// convolution can add itself. Pools are left alone: their padding is not zero (-inf for max).
void fold_pads(graph& g, const std::set<std::string>& keep) {
  auto [readers, producer] = link_values(g);
  const known_constants constant(g);
  std::unordered_map<std::string, std::size_t> reader_of;  // value -> its reading node, when one
  for (std::size_t i = 0; i < g.nodes.size(); ++i)
    for (const auto& in : g.nodes[i].inputs) reader_of[in] = i;
  std::vector<bool> removed(g.nodes.size(), false);
  int folded = 0;
  for (std::size_t pi = 0; pi < g.nodes.size(); ++pi) {
    const node& pad = g.nodes[pi];
    if (pad.op_type != "Pad" || !is_default_domain(pad.domain) || pad.outputs.size() != 1 || pad.inputs.empty() ||
        attr_string(pad, "mode", "constant") != "constant" || keep.count(pad.outputs[0]) ||
        readers[pad.outputs[0]] != 1)
      continue;
    std::vector<std::int64_t> pads;
    if (g.opset >= 11) {
      if (pad.inputs.size() < 2 || pad.inputs.size() > 3) continue;  // an axes input (opset 18) is left alone
      const at::Tensor* p = constant(pad.inputs[1]);
      if (!p || at::isFloatingType(p->scalar_type())) continue;
      pads = to_ints(*p);
      if (pad.inputs.size() == 3 && !pad.inputs[2].empty()) {
        const at::Tensor* v = constant(pad.inputs[2]);
        if (!v || v->numel() > 1 || (v->numel() == 1 && v->reshape({}).item<double>() != 0.0)) continue;
      }
    } else {
      pads = attr_ints(pad, g.opset < 2 ? "paddings" : "pads");
      if (attr_float(pad, "value", 0.0) != 0.0) continue;
    }
    const std::size_t rank = pads.size() / 2;
    if (rank < 3 || pads.size() != 2 * rank || pads[0] || pads[1] || pads[rank] || pads[rank + 1] ||
        std::any_of(pads.begin(), pads.end(), [](std::int64_t v) { return v < 0; }))
      continue;
    node& conv = g.nodes[reader_of.at(pad.outputs[0])];
    const std::size_t spatial = rank - 2;
    if (conv.op_type != "Conv" || !is_default_domain(conv.domain) || conv.inputs.size() < 2 ||
        conv.inputs[0] != pad.outputs[0])
      continue;
    const std::string auto_pad = attr_string(conv, "auto_pad", "NOTSET");
    if (auto_pad != "NOTSET" && auto_pad != "VALID") continue;
    std::vector<std::int64_t> conv_pads =
        auto_pad == "VALID" ? std::vector<std::int64_t>{} : attr_ints(conv, "pads", {});
    if (conv_pads.empty()) conv_pads.assign(2 * spatial, 0);
    if (conv_pads.size() != 2 * spatial) continue;
    for (std::size_t i = 0; i < spatial; ++i) {
      conv_pads[i] += pads[2 + i];
      conv_pads[spatial + i] += pads[rank + 2 + i];
    }
    conv.attributes["pads"] = conv_pads;
    conv.attributes.erase("auto_pad");
    conv.inputs[0] = pad.inputs[0];
    removed[pi] = true;
    ++folded;
  }
  if (folded == 0) return;
  drop_removed(g, removed);
  spdlog::debug("runtime: folded {} zero Pad nodes into the convolutions that read them", folded);
}

}  // namespace acg2vec::runtime
