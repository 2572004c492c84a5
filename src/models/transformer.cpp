#include "models/transformer.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

#include "core/error.h"

namespace acg2vec::models {

activation parse_activation(const std::string& name) {
  if (name == "gelu") return activation::gelu;
  if (name == "quick_gelu") return activation::quick_gelu;
  if (name == "gelu_new" || name == "gelu_pytorch_tanh" || name == "gelu_fast") return activation::gelu_tanh;
  if (name == "relu") return activation::relu;
  fail(errc::not_implemented, "activation {} is not supported", name);
}

at::Tensor activate(const at::Tensor& x, activation act) {
  switch (act) {
    case activation::gelu: return at::gelu(x);
    case activation::quick_gelu: return x * at::sigmoid(1.702 * x);
    case activation::gelu_tanh: return at::gelu(x, "tanh");
    case activation::relu: return at::relu(x);
  }
  return x;
}

namespace {

std::string shape_string(at::IntArrayRef shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ',';
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

}  // namespace

at::Tensor weight_reader::get(const std::string& name, const std::vector<std::int64_t>& shape) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) fail(errc::bad_parameter, "{}: checkpoint has no tensor {}", origin_, name);
  const at::Tensor& t = it->second;
  bool ok = t.dim() == static_cast<std::int64_t>(shape.size());
  for (std::size_t i = 0; ok && i < shape.size(); ++i) ok = shape[i] < 0 || t.size(static_cast<std::int64_t>(i)) == shape[i];
  if (!ok) fail(errc::bad_parameter, "{}: tensor {} has shape {}, expected {}", origin_, name, shape_string(t.sizes()),
                shape_string(shape));
  return t.to(at::kFloat).contiguous();
}

at::Tensor linear::operator()(const at::Tensor& x) const { return at::linear(x, weight, bias); }

linear linear::read(const weight_reader& w, const std::string& name, std::int64_t in, std::int64_t out, bool bias) {
  linear l;
  l.weight = w.get(name + ".weight", {out, in});
  if (bias) l.bias = w.get(name + ".bias", {out});
  return l;
}

at::Tensor layer_norm::operator()(const at::Tensor& x) const {
  return at::layer_norm(x, {weight.size(0)}, weight, bias, eps);
}

layer_norm layer_norm::read(const weight_reader& w, const std::string& name, std::int64_t dim, double eps) {
  return {w.get(name + ".weight", {dim}), w.get(name + ".bias", {dim}), eps};
}

at::Tensor encoder_layer::attention(const at::Tensor& x, const at::Tensor& mask) const {
  const auto b = x.size(0);
  const auto s = x.size(1);
  const auto d = x.size(2);
  const auto dh = d / heads;
  auto split = [&](const at::Tensor& t) { return t.view({b, s, heads, dh}).transpose(1, 2); };  // [B,H,S,dh]
  const at::Tensor qh = split(q(x)) * (1.0 / std::sqrt(static_cast<double>(dh)));
  const at::Tensor kh = split(k(x));
  const at::Tensor vh = split(v(x));
  at::Tensor scores = at::matmul(qh, kh.transpose(-1, -2));
  if (mask.defined()) scores = scores + mask;
  const at::Tensor ctx = at::matmul(at::softmax(scores, -1), vh);
  return out(ctx.transpose(1, 2).reshape({b, s, d}));
}

at::Tensor encoder_layer::forward_pre_ln(const at::Tensor& x, const at::Tensor& mask) const {
  at::Tensor h = x + attention(norm1(x), mask);
  return h + fc2(activate(fc1(norm2(h)), act));
}

at::Tensor encoder_layer::forward_post_ln(const at::Tensor& x, const at::Tensor& mask) const {
  const at::Tensor h = norm1(x + attention(x, mask));
  return norm2(h + fc2(activate(fc1(h), act)));
}

at::Tensor padding_mask(const at::Tensor& attention_mask) {
  // The lowest finite float rather than -inf keeps an all-padding row finite (uniform weights), as HF does.
  const at::Tensor m = attention_mask.to(at::kFloat);
  return ((1.0 - m) * std::numeric_limits<float>::lowest()).view({m.size(0), 1, 1, m.size(1)});
}

at::Tensor causal_mask(std::int64_t length) {
  return at::full({length, length}, -std::numeric_limits<float>::infinity()).triu(1);
}

}  // namespace acg2vec::models