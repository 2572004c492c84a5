#pragma once
// The kernel registry: for each supported ONNX op type, a builder that turns a node (its
// attributes, its opset and whichever inputs are load-time constants) into a kernel. Builders run
// once at load, so attribute parsing and weight preparation happen there; kernels are const
// closures that may run concurrently and never modify their inputs.

#include "runtime/graph.h"

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace acg2vec::runtime {

using tensor_list = std::vector<at::Tensor>;

/// Runs one node: inputs in node order (undefined tensors for omitted optional inputs);
/// returns at least as many outputs as the node declares that are used.
using kernel = std::function<tensor_list(const tensor_list& inputs)>;

struct build_context {
  const node& n;
  std::int64_t opset = 17;
  /// Per node input: the load-time constant value, or nullptr when it is only known at run time.
  std::vector<const at::Tensor*> constants;

  /// @brief The constant value of input i, or nullptr (also for an omitted input).
  [[nodiscard]] const at::Tensor* constant(std::size_t i) const {
    return i < constants.size() ? constants[i] : nullptr;
  }
  /// @brief True when input i is present in the node (not omitted with "").
  [[nodiscard]] bool has_input(std::size_t i) const { return i < n.inputs.size() && !n.inputs[i].empty(); }
};

using kernel_builder = std::function<kernel(const build_context&)>;
using kernel_registry = std::map<std::string, kernel_builder, std::less<>>;

/// @brief The immutable registry of every supported op type (default ONNX domain).
const kernel_registry& kernels();
/// @brief Sorted names of every supported op type.
std::vector<std::string> supported_ops();
/// Domain of the executor's own fused operators (never accepted from model files).
inline constexpr std::string_view fused_domain = "acg2vec.fused";
/// @brief Kernels for operators that only the executor's graph rewrites create:
/// MatMulAdd(A, B, bias) = MatMul(A, B) + bias with a constant 2-D B and 1-D bias.
const kernel_registry& fused_kernels();
void register_fused_ops(kernel_registry& r);
/// Attention(Q, K^T, V; scale) = Softmax(scale * Q K^T, last axis) V (ops_fused.cpp).
void register_fused_attention(kernel_registry& r);

// Registration hooks, one per ops_*.cpp file.
void register_math_ops(kernel_registry& r);
void register_nn_ops(kernel_registry& r);
void register_tensor_ops(kernel_registry& r);

// Attribute access with ONNX defaults. Wrong attribute types are load errors naming the node.
bool has_attr(const node& n, std::string_view name);
std::int64_t attr_int(const node& n, std::string_view name, std::int64_t fallback);
double attr_float(const node& n, std::string_view name, double fallback);
std::string attr_string(const node& n, std::string_view name, std::string fallback);
std::vector<std::int64_t> attr_ints(const node& n, std::string_view name, std::vector<std::int64_t> fallback = {});
std::vector<double> attr_floats(const node& n, std::string_view name, std::vector<double> fallback = {});
std::optional<at::Tensor> attr_tensor(const node& n, std::string_view name);

/// @brief The defined input i, or a bad_parameter error naming the op.
const at::Tensor& need(const tensor_list& in, std::size_t i, std::string_view op);
/// @brief True when input i is a floating-point tensor handed over by the executor (its last
/// read) and no other tensor, view or constant shares its memory, so the kernel may overwrite
/// it with its result.
bool reusable(const tensor_list& in, std::size_t i);
/// @brief True when input i was supplied (defined tensor).
inline bool present(const tensor_list& in, std::size_t i) { return i < in.size() && in[i].defined(); }
/// @brief The elements of an integer (or float) tensor of rank 0 or 1 as int64 values.
std::vector<std::int64_t> to_ints(const at::Tensor& t);
/// @brief The single value of a one-element tensor as double.
double to_double(const at::Tensor& t);
/// @brief Resolves a possibly negative axis against rank, failing when out of range.
std::int64_t normalize_axis(std::int64_t axis, std::int64_t rank, std::string_view op);
/// @brief at::softmax(x, axis); through our row kernel (softmax.h) when axis is the last one of a
/// contiguous float CPU tensor (ops_softmax.cpp).
at::Tensor softmax_along(const at::Tensor& x, std::int64_t axis);
/// @brief Fails when a tensor that an op is about to create would exceed the element limit.
void check_numel(const std::vector<std::int64_t>& shape, std::string_view op);
/// @brief ONNX TensorProto data type code to ATen dtype (fails on types libtorch lacks).
at::ScalarType dtype_from_onnx(std::int64_t code);

}  // namespace acg2vec::runtime
