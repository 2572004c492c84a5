// Load-time graph rewrites (see rewrites.h).
#include "runtime/rewrites.h"

#include "runtime/fused_conv.h"
#include "runtime/ops.h"
#include "runtime/rewrite_links.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <optional>
#include <unordered_map>
#include <vector>

namespace acg2vec::runtime {

using rewrite::known_constants;
using rewrite::drop_removed;
using rewrite::link_values;

// Element-wise patterns that exporters spell out op by op are run as one kernel:
//  - x * 0.5 * (1 + erf(x / sqrt(2)))  (torch's GELU before opset 20)  -> Gelu
//  - MatMul(x, W) + b with constant W [K, N] and b [N]               -> MatMulAdd (one GEMM)
// Intermediate values must have a single reader and must not be requested outputs.
void fuse_patterns(graph& g, const std::set<std::string>& keep) {
  auto [readers, producer] = link_values(g);
  const known_constants constant(g);
  auto scalar_is = [&](const std::string& name, double value) {
    const at::Tensor* t = constant(name);
    return t && t->numel() == 1 && at::isFloatingType(t->scalar_type()) &&
           std::abs(t->to(at::kDouble).item<double>() - value) <= 1e-6 * std::abs(value);
  };
  auto private_value = [&](const std::string& v) { return readers[v] == 1 && !keep.count(v); };
  auto single_reader = [&](const std::string& v, const char* op) -> node* {
    if (!private_value(v)) return nullptr;
    for (auto& n : g.nodes)
      if (n.op_type == op && is_default_domain(n.domain) && std::find(n.inputs.begin(), n.inputs.end(), v) != n.inputs.end())
        return &n;
    return nullptr;
  };
  auto other_input = [](const node& n, const std::string& v) -> std::string {
    if (n.inputs.size() != 2) return {};
    return n.inputs[0] == v ? n.inputs[1] : n.inputs[1] == v ? n.inputs[0] : std::string();
  };
  std::set<const node*> removed;
  int gelus = 0, gemms = 0;
  for (auto& erf : g.nodes) {
    if (erf.op_type != "Erf" || !is_default_domain(erf.domain) || erf.inputs.size() != 1) continue;
    auto pd = producer.find(erf.inputs[0]);
    if (pd == producer.end()) continue;
    node& div = g.nodes[pd->second];
    if (div.op_type != "Div" || div.inputs.size() != 2 || !scalar_is(div.inputs[1], std::sqrt(2.0)) ||
        !private_value(div.outputs[0]))
      continue;
    const std::string x = div.inputs[0];
    node* add = single_reader(erf.outputs[0], "Add");
    if (!add || !scalar_is(other_input(*add, erf.outputs[0]), 1.0)) continue;
    node* mul = single_reader(add->outputs[0], "Mul");
    if (!mul || other_input(*mul, add->outputs[0]) != x) continue;
    node* half = single_reader(mul->outputs[0], "Mul");
    if (!half || !scalar_is(other_input(*half, mul->outputs[0]), 0.5)) continue;
    if (removed.count(&div) || removed.count(add) || removed.count(mul) || removed.count(half)) continue;
    for (node* n : {&div, &erf, add, mul}) removed.insert(n);
    half->op_type = "Gelu";
    half->inputs = {x};
    half->attributes.clear();
    ++gelus;
  }
  for (auto& mm : g.nodes) {
    if (mm.op_type != "MatMul" || !is_default_domain(mm.domain) || mm.inputs.size() != 2 || removed.count(&mm)) continue;
    const at::Tensor* w = constant(mm.inputs[1]);
    if (!w || w->dim() != 2 || w->scalar_type() != at::kFloat) continue;
    node* add = single_reader(mm.outputs[0], "Add");
    if (!add || removed.count(add)) continue;
    const std::string bias = other_input(*add, mm.outputs[0]);
    const at::Tensor* b = bias.empty() ? nullptr : constant(bias);
    if (!b || b->dim() != 1 || b->size(0) != w->size(1) || b->scalar_type() != at::kFloat) continue;
    removed.insert(&mm);
    const std::string weight = mm.inputs[1];
    // Constant nodes become initializers so that the fused kernel sees them at build time.
    for (const std::string& name : {weight, bias})
      if (!g.initializers.count(name)) g.initializers[name] = *constant(name);
    add->op_type = "MatMulAdd";
    add->domain = std::string(fused_domain);
    add->inputs = {mm.inputs[0], weight, bias};
    add->attributes.clear();
    ++gemms;
  }
  if (removed.empty()) return;
  std::vector<node> kept;
  for (auto& n : g.nodes)
    if (!removed.count(&n)) kept.push_back(std::move(n));
  g.nodes = std::move(kept);
  spdlog::debug("runtime: fused {} GELU patterns and {} MatMul+bias pairs", gelus, gemms);
}


namespace {

// The parameters of an activation node for the fused convolution, or nullopt when they are
// not load-time constants (Clip with runtime bounds) or not supported.
struct fused_activation_params {
  std::string kind;
  double alpha = 0, beta = 0;
};

std::optional<fused_activation_params> activation_params(const node& act, std::int64_t opset,
                                                         const std::function<const at::Tensor*(const std::string&)>& constant) {
  if (!is_default_domain(act.domain) || act.outputs.size() != 1 || act.inputs.empty() || !fusable_activation(act.op_type))
    return std::nullopt;
  fused_activation_params p{act.op_type};
  if (act.op_type == "LeakyRelu") p.alpha = attr_float(act, "alpha", 0.01);
  if (act.op_type == "Elu") p.alpha = attr_float(act, "alpha", 1.0);
  if (act.op_type == "Gelu") {
    const std::string approximate = attr_string(act, "approximate", "none");
    if (approximate == "tanh") p.kind = "GeluTanh";
    else if (approximate != "none") return std::nullopt;
  }
  if (act.op_type == "Clip") {
    p.alpha = -std::numeric_limits<float>::max();
    p.beta = std::numeric_limits<float>::max();
    if (opset < 11) {
      p.alpha = attr_float(act, "min", p.alpha);
      p.beta = attr_float(act, "max", p.beta);
    } else {
      for (std::size_t i : {1, 2}) {
        if (i >= act.inputs.size() || act.inputs[i].empty()) continue;
        const at::Tensor* t = constant(act.inputs[i]);
        if (!t || t->numel() != 1 || !at::isFloatingType(t->scalar_type())) return std::nullopt;
        (i == 1 ? p.alpha : p.beta) = t->to(at::kDouble).item<double>();
      }
    }
  } else if (act.inputs.size() != 1) {
    return std::nullopt;
  }
  return p;
}

}  // namespace

// Conv / ConvTranspose run on oneDNN directly (fused_conv.h), absorbing what follows them when
// the value in between has one reader and is not a requested output:
//   Conv -> Add(other) -> activation,  Conv -> activation,  Conv -> Add(other),
//   Conv -> activation -> Add(other),
//   Conv -> x * Sigmoid(x)  (SiLU / swish as exporters spell it).
// Every Conv and ConvTranspose is rewritten into the fused domain, fused or not.
void fuse_convolutions(graph& g, const std::set<std::string>& keep) {
  auto [reader_counts, producer] = link_values(g);
  std::unordered_map<std::string, std::vector<std::size_t>> readers;
  for (std::size_t i = 0; i < g.nodes.size(); ++i)
    for (const auto& in : g.nodes[i].inputs)
      if (!in.empty()) readers[in].push_back(i);
  const std::function<const at::Tensor*(const std::string&)> constant = known_constants(g);
  std::vector<bool> removed(g.nodes.size(), false);
  // The single reader of v, when v is private to it (one read, not requested).
  auto sole_reader = [&](const std::string& v) -> std::optional<std::size_t> {
    if (keep.count(v)) return std::nullopt;
    auto it = readers.find(v);
    if (it == readers.end() || it->second.size() != 1 || removed[it->second[0]]) return std::nullopt;
    return it->second[0];
  };
  int fused = 0, converted = 0;
  for (std::size_t ci = 0; ci < g.nodes.size(); ++ci) {
    node& conv = g.nodes[ci];
    if ((conv.op_type != "Conv" && conv.op_type != "ConvTranspose") || !is_default_domain(conv.domain) ||
        conv.outputs.size() != 1 || conv.inputs.size() < 2 || conv.inputs.size() > 3 || removed[ci])
      continue;
    std::string label = conv.op_type;
    std::string out = conv.outputs[0];
    std::string residual;
    std::optional<fused_activation_params> act;
    if (auto r = sole_reader(out)) {
      node& add = g.nodes[*r];
      if (add.op_type == "Add" && is_default_domain(add.domain) && add.inputs.size() == 2 && add.outputs.size() == 1 &&
          add.inputs[0] != add.inputs[1]) {
        residual = add.inputs[0] == out ? add.inputs[1] : add.inputs[0];
        removed[*r] = true;
        out = add.outputs[0];
        label += "+Add";
      }
    }
    if (auto r = sole_reader(out)) {
      const node& a = g.nodes[*r];
      if ((act = activation_params(a, g.opset, constant))) {
        removed[*r] = true;
        out = a.outputs[0];
        label += "+" + a.op_type;
      }
    } else if (!act && !keep.count(out)) {
      // x * Sigmoid(x): out has exactly two readers, a Sigmoid whose result only the Mul reads.
      auto it = readers.find(out);
      if (it != readers.end() && it->second.size() == 2) {
        std::size_t a = it->second[0], b = it->second[1];
        if (g.nodes[a].op_type != "Sigmoid") std::swap(a, b);
        const node& sig = g.nodes[a];
        const node& mul = g.nodes[b];
        if (!removed[a] && !removed[b] && sig.op_type == "Sigmoid" && is_default_domain(sig.domain) &&
            sig.outputs.size() == 1 && mul.op_type == "Mul" && is_default_domain(mul.domain) && mul.inputs.size() == 2 &&
            mul.outputs.size() == 1 && sole_reader(sig.outputs[0]) == b &&
            ((mul.inputs[0] == out && mul.inputs[1] == sig.outputs[0]) ||
             (mul.inputs[1] == out && mul.inputs[0] == sig.outputs[0]))) {
          removed[a] = removed[b] = true;
          act = fused_activation_params{"Swish"};
          out = mul.outputs[0];
          label += "+Swish";
        }
      }
    }
    // Conv -> activation -> Add(other): the add comes after the activation (Real-CUGAN's
    // upsampling ConvTranspose + LeakyReLU, then the skip connection).
    bool add_after_activation = false;
    if (act && residual.empty()) {
      if (auto r = sole_reader(out)) {
        node& add = g.nodes[*r];
        if (add.op_type == "Add" && is_default_domain(add.domain) && add.inputs.size() == 2 &&
            add.outputs.size() == 1 && add.inputs[0] != add.inputs[1]) {
          residual = add.inputs[0] == out ? add.inputs[1] : add.inputs[0];
          removed[*r] = true;
          out = add.outputs[0];
          label += "+Add";
          add_after_activation = true;
        }
      }
    }
    conv.domain = std::string(fused_domain);
    if (add_after_activation) conv.attributes["fused_add_after_activation"] = std::int64_t{1};
    if (!residual.empty()) {
      conv.inputs.resize(3);
      conv.inputs.push_back(residual);
    }
    if (act) {
      conv.attributes["fused_activation"] = act->kind;
      conv.attributes["fused_alpha"] = act->alpha;
      conv.attributes["fused_beta"] = act->beta;
    }
    conv.attributes["fused_label"] = label;
    conv.outputs[0] = out;
    ++converted;
    if (label != conv.op_type) ++fused;
  }
  drop_removed(g, removed);
  spdlog::debug("runtime: {} convolutions run on oneDNN directly, {} with fused element-wise work", converted, fused);
}


}  // namespace acg2vec::runtime

namespace acg2vec::runtime {

// MatMulAdd -> Relu / Gelu: the activation runs in place on the GEMM's fresh result, saving a
// pass over the activations and an allocation (what ONNX Runtime calls BiasGelu / FusedGemm).
void fuse_gemm_activations(graph& g, const std::set<std::string>& keep) {
  std::unordered_map<std::string, std::vector<std::size_t>> readers;
  for (std::size_t i = 0; i < g.nodes.size(); ++i)
    for (const auto& in : g.nodes[i].inputs)
      if (!in.empty()) readers[in].push_back(i);
  std::vector<bool> removed(g.nodes.size(), false);
  int fused = 0;
  for (auto& mm : g.nodes) {
    if (mm.op_type != "MatMulAdd" || mm.domain != fused_domain || mm.outputs.size() != 1 || keep.count(mm.outputs[0]) ||
        has_attr(mm, "activation"))
      continue;
    auto it = readers.find(mm.outputs[0]);
    if (it == readers.end() || it->second.size() != 1 || removed[it->second[0]]) continue;
    const node& act = g.nodes[it->second[0]];
    if (!is_default_domain(act.domain) || act.inputs.size() != 1 || act.outputs.size() != 1) continue;
    std::string kind;
    if (act.op_type == "Relu") {
      kind = "Relu";
    } else if (act.op_type == "Gelu") {
      const std::string approximate = attr_string(act, "approximate", "none");
      if (approximate == "none") kind = "Gelu";
      else if (approximate == "tanh") kind = "GeluTanh";
    }
    if (kind.empty()) continue;
    removed[it->second[0]] = true;
    mm.attributes["activation"] = kind;
    mm.attributes["fused_label"] = std::string("MatMulAdd+") + act.op_type;
    mm.outputs[0] = act.outputs[0];
    ++fused;
  }
  if (fused == 0) return;
  drop_removed(g, removed);
  spdlog::debug("runtime: fused {} MatMul+bias+activation chains", fused);
}

// Scaled dot-product attention as exporters spell it:
//   MatMul([Mul(Q, c) |] Q, K^T) -> [Mul(., c) | Div(., c)] -> Softmax(last axis) -> MatMul(., V)
// becomes one Attention(Q, K^T, V) node with the product of the scalar constants as "scale". The
// kernel (ops_fused.cpp) computes the probabilities block by block in cache and never writes the
// [.., m, n] score tensor out. K^T is taken as it is (whatever produced it stays in the graph).
void fuse_attention(graph& g, const std::set<std::string>& keep) {
  auto [reader_counts, producer] = link_values(g);
  const known_constants constant(g);
  // A floating-point scalar constant (rank 0 or 1, one element), as double.
  auto scalar = [&](const std::string& name) -> std::optional<double> {
    const at::Tensor* t = constant(name);
    if (!t || t->numel() != 1 || t->dim() > 1 || !at::isFloatingType(t->scalar_type())) return std::nullopt;
    return t->to(at::kDouble).item<double>();
  };
  auto private_value = [&](const std::string& v) { return reader_counts[v] == 1 && !keep.count(v); };
  auto made_by = [&](const std::string& v, const char* op) -> std::optional<std::size_t> {
    auto it = producer.find(v);
    if (it == producer.end()) return std::nullopt;
    const node& n = g.nodes[it->second];
    if (n.op_type != op || !is_default_domain(n.domain) || n.outputs.size() != 1 || n.inputs.size() != 2)
      return std::nullopt;
    return it->second;
  };
  std::vector<bool> removed(g.nodes.size(), false);
  std::unordered_map<std::string, std::size_t> reader_of;  // value -> its node, for private values
  for (std::size_t i = 0; i < g.nodes.size(); ++i)
    for (const auto& in : g.nodes[i].inputs) reader_of[in] = i;
  int fused = 0;
  for (std::size_t si = 0; si < g.nodes.size(); ++si) {
    const node& sm = g.nodes[si];
    if (sm.op_type != "Softmax" || !is_default_domain(sm.domain) || sm.inputs.size() != 1 || sm.outputs.size() != 1 ||
        removed[si])
      continue;
    // The last axis only: -1 (opset 13's default); before opset 13 axis -1 flattens to the same rows.
    if (attr_int(sm, "axis", g.opset >= 13 ? -1 : 1) != -1) continue;
    if (!private_value(sm.inputs[0]) || !private_value(sm.outputs[0])) continue;
    double scale = 1.0;
    std::vector<std::size_t> chain;
    std::string scores = sm.inputs[0];
    // Optional scaling of the scores.
    for (const char* op : {"Mul", "Div"}) {
      auto p = made_by(scores, op);
      if (!p) continue;
      const node& s = g.nodes[*p];
      std::optional<double> c = scalar(s.inputs[1]);
      std::string other = s.inputs[0];
      if (!c && std::string(op) == "Mul") {
        c = scalar(s.inputs[0]);
        other = s.inputs[1];
      }
      if (!c || *c == 0.0 || !private_value(other)) break;
      scale = std::string(op) == "Mul" ? *c : 1.0 / *c;
      chain.push_back(*p);
      scores = other;
      break;
    }
    auto qk = made_by(scores, "MatMul");
    if (!qk) continue;
    std::string q = g.nodes[*qk].inputs[0];
    const std::string kt = g.nodes[*qk].inputs[1];
    chain.push_back(*qk);
    // Optional scaling of Q.
    if (auto p = made_by(q, "Mul"); p && private_value(q)) {
      const node& s = g.nodes[*p];
      if (auto c = scalar(s.inputs[1])) {
        scale *= *c;
        q = s.inputs[0];
        chain.push_back(*p);
      } else if (auto c0 = scalar(s.inputs[0])) {
        scale *= *c0;
        q = s.inputs[1];
        chain.push_back(*p);
      }
    }
    auto rd = reader_of.find(sm.outputs[0]);
    if (rd == reader_of.end()) continue;
    node& pv = g.nodes[rd->second];
    if (pv.op_type != "MatMul" || !is_default_domain(pv.domain) || pv.inputs.size() != 2 || pv.outputs.size() != 1 ||
        pv.inputs[0] != sm.outputs[0] || pv.inputs[1] == sm.outputs[0] || removed[rd->second])
      continue;
    if (std::any_of(chain.begin(), chain.end(), [&](std::size_t i) { return removed[i]; })) continue;
    for (std::size_t i : chain) removed[i] = true;
    removed[si] = true;
    const std::string v = pv.inputs[1];
    pv.op_type = "Attention";
    pv.domain = std::string(fused_domain);
    pv.inputs = {q, kt, v};
    pv.attributes.clear();
    pv.attributes["scale"] = scale;
    pv.attributes["fused_label"] = std::string("Attention");
    ++fused;
  }
  if (fused == 0) return;
  drop_removed(g, removed);
  spdlog::debug("runtime: fused {} MatMul-Softmax-MatMul attention chains", fused);
}

}  // namespace acg2vec::runtime

namespace acg2vec::runtime {

// LayerNorm over the last axis as torch.onnx spells it before opset 17:
//   mean = ReduceMean(x, [-1]); d = x - mean; var = ReduceMean(Pow(d, 2), [-1])
//   y = d / Sqrt(var + eps) * gamma + beta        (gamma, beta constant, rank <= 1)
// becomes LayerNormalization(x, gamma, beta; axis -1, epsilon eps): one pass instead of nine.
void fuse_layer_norms(graph& g, const std::set<std::string>& keep) {
  auto [reader_counts, producer] = link_values(g);
  const known_constants constant(g);
  auto scalar = [&](const std::string& name) -> std::optional<double> {
    const at::Tensor* t = constant(name);
    if (!t || t->numel() != 1 || t->dim() > 1 || !at::isFloatingType(t->scalar_type())) return std::nullopt;
    return t->to(at::kDouble).item<double>();
  };
  auto private_value = [&](const std::string& v) { return reader_counts[v] == 1 && !keep.count(v); };
  // The node producing v when it is `op` in the default domain with one output.
  auto made_by = [&](const std::string& v, const char* op) -> node* {
    auto it = producer.find(v);
    if (it == producer.end()) return nullptr;
    node& n = g.nodes[it->second];
    return n.op_type == op && is_default_domain(n.domain) && n.outputs.size() == 1 ? &n : nullptr;
  };
  // ReduceMean over the last axis only, keeping it.
  auto last_axis_mean = [&](const node* n) {
    if (!n || n->inputs.empty() || attr_int(*n, "keepdims", 1) != 1) return false;
    if (n->inputs.size() == 1) return has_attr(*n, "axes") && attr_ints(*n, "axes") == std::vector<std::int64_t>{-1};
    const at::Tensor* axes = n->inputs.size() == 2 ? constant(n->inputs[1]) : nullptr;
    return !has_attr(*n, "axes") && axes && axes->numel() == 1 && !at::isFloatingType(axes->scalar_type()) &&
           axes->to(at::kLong).item<std::int64_t>() == -1;
  };
  // The non-`v` input of a two-input node when it is a constant of rank <= 1.
  auto affine_constant = [&](const node& n, const std::string& v) -> std::string {
    if (n.inputs.size() != 2) return {};
    const std::string& other = n.inputs[0] == v ? n.inputs[1] : n.inputs[1] == v ? n.inputs[0] : std::string();
    const at::Tensor* t = other.empty() ? nullptr : constant(other);
    return t && t->dim() <= 1 && t->scalar_type() == at::kFloat ? other : std::string();
  };
  std::set<const node*> removed;
  int fused = 0;
  for (auto& add : g.nodes) {
    if (add.op_type != "Add" || !is_default_domain(add.domain) || add.inputs.size() != 2 || add.outputs.size() != 1 ||
        removed.count(&add))
      continue;
    node* mul = made_by(add.inputs[0], "Mul");
    if (!mul) mul = made_by(add.inputs[1], "Mul");
    if (!mul || !private_value(mul->outputs[0])) continue;
    const std::string beta = affine_constant(add, mul->outputs[0]);
    if (beta.empty()) continue;
    node* div = made_by(mul->inputs[0], "Div");
    if (!div && mul->inputs.size() == 2) div = made_by(mul->inputs[1], "Div");
    if (!div || div->inputs.size() != 2 || !private_value(div->outputs[0])) continue;
    const std::string gamma = affine_constant(*mul, div->outputs[0]);
    if (gamma.empty()) continue;
    node* sqrt = made_by(div->inputs[1], "Sqrt");
    node* sub = made_by(div->inputs[0], "Sub");
    if (!sqrt || !sub || sqrt->inputs.size() != 1 || sub->inputs.size() != 2 || !private_value(sqrt->outputs[0]) ||
        reader_counts[sub->outputs[0]] != 2 || keep.count(sub->outputs[0]))
      continue;
    node* eps_add = made_by(sqrt->inputs[0], "Add");
    if (!eps_add || eps_add->inputs.size() != 2 || !private_value(eps_add->outputs[0])) continue;
    std::optional<double> eps = scalar(eps_add->inputs[1]);
    std::string var_value = eps_add->inputs[0];
    if (!eps) {
      eps = scalar(eps_add->inputs[0]);
      var_value = eps_add->inputs[1];
    }
    node* var = made_by(var_value, "ReduceMean");
    if (!eps || *eps < 0 || !last_axis_mean(var) || !private_value(var->outputs[0])) continue;
    node* pow = made_by(var->inputs[0], "Pow");
    if (!pow || pow->inputs.size() != 2 || pow->inputs[0] != sub->outputs[0] || scalar(pow->inputs[1]) != 2.0 ||
        !private_value(pow->outputs[0]))
      continue;
    node* mean = made_by(sub->inputs[1], "ReduceMean");
    const std::string x = sub->inputs[0];
    if (!last_axis_mean(mean) || mean->inputs[0] != x || !private_value(mean->outputs[0])) continue;
    const std::vector<node*> chain{mean, sub, pow, var, eps_add, sqrt, div, mul};
    if (std::any_of(chain.begin(), chain.end(), [&](node* n) { return removed.count(n) > 0; })) continue;
    for (node* n : chain) removed.insert(n);
    add.op_type = "LayerNormalization";
    add.inputs = {x, gamma, beta};
    add.attributes.clear();
    add.attributes["axis"] = std::int64_t{-1};
    add.attributes["epsilon"] = *eps;
    ++fused;
  }
  if (fused == 0) return;
  std::vector<node> kept;
  for (auto& n : g.nodes)
    if (!removed.count(&n)) kept.push_back(std::move(n));
  g.nodes = std::move(kept);
  spdlog::debug("runtime: fused {} decomposed LayerNorm chains", fused);
}

}  // namespace acg2vec::runtime
