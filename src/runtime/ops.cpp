#include "runtime/ops.h"

#include "core/error.h"

#include <limits>

namespace acg2vec::runtime {

const kernel_registry& kernels() {
  static const kernel_registry registry = [] {
    kernel_registry r;
    register_math_ops(r);
    register_nn_ops(r);
    register_tensor_ops(r);
    return r;
  }();
  return registry;
}

const kernel_registry& fused_kernels() {
  static const kernel_registry registry = [] {
    kernel_registry r;
    register_fused_ops(r);
    register_fused_attention(r);
    return r;
  }();
  return registry;
}

std::vector<std::string> supported_ops() {
  std::vector<std::string> names;
  for (const auto& [name, builder] : kernels()) names.push_back(name);
  return names;
}

namespace {

const attribute* find_attr(const node& n, std::string_view name) {
  auto it = n.attributes.find(std::string(name));
  return it == n.attributes.end() ? nullptr : &it->second;
}

[[noreturn]] void wrong_type(const node& n, std::string_view name, std::string_view expected) {
  fail(errc::bad_parameter, "node '{}' ({}): attribute '{}' is not {}", n.name, n.op_type, name, expected);
}

}  // namespace

bool has_attr(const node& n, std::string_view name) { return find_attr(n, name) != nullptr; }

std::int64_t attr_int(const node& n, std::string_view name, std::int64_t fallback) {
  const attribute* a = find_attr(n, name);
  if (!a) return fallback;
  if (auto* v = std::get_if<std::int64_t>(a)) return *v;
  wrong_type(n, name, "an integer");
}

double attr_float(const node& n, std::string_view name, double fallback) {
  const attribute* a = find_attr(n, name);
  if (!a) return fallback;
  if (auto* v = std::get_if<double>(a)) return *v;
  if (auto* v = std::get_if<std::int64_t>(a)) return static_cast<double>(*v);
  wrong_type(n, name, "a float");
}

std::string attr_string(const node& n, std::string_view name, std::string fallback) {
  const attribute* a = find_attr(n, name);
  if (!a) return fallback;
  if (auto* v = std::get_if<std::string>(a)) return *v;
  wrong_type(n, name, "a string");
}

std::vector<std::int64_t> attr_ints(const node& n, std::string_view name, std::vector<std::int64_t> fallback) {
  const attribute* a = find_attr(n, name);
  if (!a) return fallback;
  if (auto* v = std::get_if<std::vector<std::int64_t>>(a)) return *v;
  if (auto* v = std::get_if<std::int64_t>(a)) return {*v};
  wrong_type(n, name, "a list of integers");
}

std::vector<double> attr_floats(const node& n, std::string_view name, std::vector<double> fallback) {
  const attribute* a = find_attr(n, name);
  if (!a) return fallback;
  if (auto* v = std::get_if<std::vector<double>>(a)) return *v;
  if (auto* v = std::get_if<double>(a)) return {*v};
  if (auto* v = std::get_if<std::vector<std::int64_t>>(a)) return {v->begin(), v->end()};
  wrong_type(n, name, "a list of floats");
}

std::optional<at::Tensor> attr_tensor(const node& n, std::string_view name) {
  const attribute* a = find_attr(n, name);
  if (!a) return std::nullopt;
  if (auto* v = std::get_if<at::Tensor>(a)) return *v;
  wrong_type(n, name, "a tensor");
}

const at::Tensor& need(const tensor_list& in, std::size_t i, std::string_view op) {
  if (!present(in, i)) fail(errc::bad_parameter, "{}: required input {} is missing", op, i);
  return in[i];
}

bool reusable(const tensor_list& in, std::size_t i) {
  if (!present(in, i)) return false;
  const at::Tensor& t = in[i];
  // One handle (the call's argument list) and one tensor on the storage: not a graph input the
  // caller holds, not a constant, not a view of a value that is still live. Floating point only,
  // the type every in-place kernel keeps its result in.
  return t.use_count() == 1 && t.storage().use_count() == 1 && t.is_non_overlapping_and_dense() &&
         t.layout() == at::kStrided && at::isFloatingType(t.scalar_type());
}

std::vector<std::int64_t> to_ints(const at::Tensor& t) {
  if (t.dim() > 1) fail(errc::bad_parameter, "expected a 1-D integer tensor, got rank {}", t.dim());
  at::Tensor c = t.to(at::kCPU, at::kLong).contiguous();
  const std::int64_t* p = c.data_ptr<std::int64_t>();
  return {p, p + c.numel()};
}

double to_double(const at::Tensor& t) {
  if (t.numel() != 1) fail(errc::bad_parameter, "expected a single value, got {} elements", t.numel());
  return t.to(at::kCPU, at::kDouble).item<double>();
}

std::int64_t normalize_axis(std::int64_t axis, std::int64_t rank, std::string_view op) {
  if (axis < -rank || axis >= rank) fail(errc::bad_parameter, "{}: axis {} out of range for rank {}", op, axis, rank);
  return axis < 0 ? axis + rank : axis;
}

void check_numel(const std::vector<std::int64_t>& shape, std::string_view op) {
  // Shapes can come from model data; refuse absurd ones before the allocator sees them.
  constexpr std::int64_t limit = std::int64_t{1} << 31;
  std::int64_t total = 1;
  for (std::int64_t d : shape) {
    if (d < 0) fail(errc::bad_parameter, "{}: negative dimension {}", op, d);
    if (d != 0 && total > limit / d) fail(errc::bad_parameter, "{}: output of more than {} elements", op, limit);
    total *= d;
  }
}

at::ScalarType dtype_from_onnx(std::int64_t code) {
  switch (code) {
    case 1: return at::kFloat;
    case 2: return at::kByte;
    case 3: return at::kChar;
    case 4: return at::kInt;  // uint16 widened
    case 5: return at::kShort;
    case 6: return at::kInt;
    case 7: return at::kLong;
    case 9: return at::kBool;
    case 10: return at::kHalf;
    case 11: return at::kDouble;
    case 12: return at::kLong;  // uint32 widened
    case 13: return at::kLong;  // uint64 stored as int64
    case 16: return at::kBFloat16;
    default: fail(errc::bad_parameter, "ONNX tensor data type {} is not supported", code);
  }
}

}  // namespace acg2vec::runtime
